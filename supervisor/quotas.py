"""What one app connection, room or peer may take: the `max_*` keys of the configuration.

Quotas are checked before anything is created, so a refused request (code `limit`) changes
nothing; each message names the configuration key to raise (docs/configuration.md, "Limits").
"""

from __future__ import annotations

from dataclasses import dataclass

from tureen.shared.config import Config


@dataclass(frozen=True)
class Quotas:
    """The per-room and per-peer quotas a Room enforces (defaults: Config's)."""

    peers_per_room: int = Config.max_peers_per_room
    transports_per_peer: int = Config.max_transports_per_peer
    producers_per_peer: int = Config.max_producers_per_peer
    consumers_per_peer: int = Config.max_consumers_per_peer

    @classmethod
    def from_config(cls, config: Config) -> Quotas:
        return cls(
            peers_per_room=config.max_peers_per_room,
            transports_per_peer=config.max_transports_per_peer,
            producers_per_peer=config.max_producers_per_peer,
            consumers_per_peer=config.max_consumers_per_peer,
        )


class RateLimiter:
    """A token bucket per key (a ZeroMQ identity): `rate` tokens a second, at most `burst`.

    Buckets of idle keys are forgotten once there are many (a full bucket is the same as
    none), so connections that come and go leave nothing behind.
    """

    PRUNE_ABOVE = 1024

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[bytes, tuple[float, float]] = {}  # key -> (tokens, at time)
        self._prune_at = self.PRUNE_ABOVE

    def allow(self, key: bytes, now: float) -> bool:
        """Take one token for `key` at time `now` (seconds, monotonic); False if none is left."""
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._prune_at:
            self._prune(now)
        return allowed

    def _prune(self, now: float) -> None:
        self._buckets = {
            key: (tokens, then)
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate < self.burst
        }
        # Many busy connections: prune again only when their number has doubled.
        self._prune_at = max(self.PRUNE_ABOVE, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)
