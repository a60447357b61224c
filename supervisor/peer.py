"""Peer state: one participant of a room and what it owns."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tureen.supervisor.states import Stateful

if TYPE_CHECKING:
    from tureen.supervisor.consumer import Consumer
    from tureen.supervisor.producer import Producer
    from tureen.supervisor.transport import Transport


class PeerState(enum.Enum):
    JOINED = "joined"
    CLOSED = "closed"  # left, closed by the app, or its room closed


@dataclass(eq=False)
class Peer(Stateful):
    TRANSITIONS: ClassVar = {
        PeerState.JOINED: frozenset({PeerState.CLOSED}),
        PeerState.CLOSED: frozenset(),
    }

    name: str
    rtp_capabilities: dict[str, Any]
    spy: bool = False
    app_data: Any = None
    # Worker hosting this peer's transports, chosen at its first createTransport.
    worker: int | None = None
    transports: dict[int, Transport] = field(default_factory=dict)
    producers: dict[int, Producer] = field(default_factory=dict)
    # Consumers this peer RECEIVES, by consumer id.
    consumers: dict[int, Consumer] = field(default_factory=dict)
    state: PeerState = PeerState.JOINED

    def describe(self) -> str:
        return f"peer {self.name!r}"

    def public_data(self) -> dict[str, Any]:
        """newPeer's and the join response's entry; appData absent when none was given (v2)."""
        data: dict[str, Any] = {"name": self.name}
        if self.app_data is not None:
            data["appData"] = self.app_data
        return data

    def dump(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spy": self.spy,
            "worker": self.worker,
            "appData": self.app_data,
            "transports": [t.dump() for t in self.transports.values()],
            "producers": [p.dump() for p in self.producers.values()],
            "consumers": [c.dump() for c in self.consumers.values()],
        }
