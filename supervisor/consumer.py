"""Consumer state: one peer's reception of another peer's producer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tureen.supervisor.states import Stateful
from tureen.supervisor.stats import new_stats_id

if TYPE_CHECKING:
    from tureen.supervisor.producer import Producer
    from tureen.supervisor.transport import Transport


class ConsumerState(enum.Enum):
    NEW = "new"  # made for its peer (join, newConsumer), not on a transport (yet, or any more)
    ENABLED = "enabled"  # enableConsumer put it on a recv transport of its peer's worker
    CLOSED = "closed"


@dataclass(eq=False)
class Consumer(Stateful):
    """Created for every other peer when a producer appears; enabled later on a transport.

    Three independent pauses decide whether it forwards: the receiving client's
    (pauseConsumer), the server app's (control API) and the producer's. They are flags
    beside the state, not states: each is set and cleared on its own.
    """

    # ENABLED -> NEW: its transport closed (the consumer stays, and may be enabled again).
    TRANSITIONS: ClassVar = {
        ConsumerState.NEW: frozenset({ConsumerState.ENABLED, ConsumerState.CLOSED}),
        ConsumerState.ENABLED: frozenset({ConsumerState.NEW, ConsumerState.CLOSED}),
        ConsumerState.CLOSED: frozenset(),
    }

    id: int
    gid: int
    peer_name: str  # the RECEIVING peer
    producer: Producer
    rtp_parameters: dict[str, Any]
    supported: bool
    transport: Transport | None = None
    paused_by_client: bool = False
    paused_by_app: bool = False
    preferred_profile: str = "default"
    effective_profile: str | None = None
    stats_interval: int | None = None
    stats_id: str = field(default_factory=new_stats_id)  # its outbound-rtp entry's id
    state: ConsumerState = ConsumerState.NEW

    @property
    def enabled(self) -> bool:
        return self.transport is not None

    @property
    def kind(self) -> str:
        return self.producer.kind

    @property
    def paused(self) -> bool:
        """Paused by anyone: the client, the server app or its producer (no stats then)."""
        return self.paused_by_client or self.paused_by_app or self.producer.paused

    @property
    def mime_type(self) -> str:
        codecs = self.rtp_parameters.get("codecs") or []
        return str(codecs[0]["mimeType"]) if codecs and "mimeType" in codecs[0] else self.producer.mime_type

    @property
    def paused_for_worker(self) -> bool:
        """What the hosting worker is told: the producer's pause is applied at the source."""
        return self.paused_by_client or self.paused_by_app

    def enable(self, transport: Transport, *, paused: bool, profile: str) -> None:
        """On `transport` (its worker created it), paused by its client or not."""
        self.set_state(ConsumerState.ENABLED)
        self.transport = transport
        self.paused_by_client = paused
        self.preferred_profile = profile

    def detach(self) -> Transport | None:
        """Off its transport (closing, or the transport went); returns the one it was on."""
        transport, self.transport = self.transport, None
        self.effective_profile = None
        if self.state is ConsumerState.ENABLED:
            self.set_state(ConsumerState.NEW)
        return transport

    def set_pauses(self, *, client: bool, app: bool) -> None:
        self.paused_by_client = client
        self.paused_by_app = app

    def effective_changed(self, profile: str) -> bool:
        """Record the profile its worker now forwards; whether that is news to tell."""
        if not self.enabled or profile == self.effective_profile:
            return False
        self.effective_profile = profile
        return True

    def describe(self) -> str:
        return f"consumer {self.id} of peer {self.peer_name!r}"

    def new_consumer_data(self) -> dict[str, Any]:
        """The newConsumer / join-response shape (peerName = the PRODUCER's peer)."""
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "peerName": self.producer.peer_name,
            "rtpParameters": self.rtp_parameters,
            "paused": False,
            "preferredProfile": "default",
            "effectiveProfile": None,
        }
        if self.producer.app_data is not None:  # absent when the producer has none (v2)
            data["appData"] = self.producer.app_data
        return data

    def dump(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workerId": self.gid,
            "producerId": self.producer.id,
            "producerPeerName": self.producer.peer_name,
            "kind": self.kind,
            "supported": self.supported,
            "enabled": self.enabled,
            "transportId": self.transport.id if self.transport else None,
            "pausedByClient": self.paused_by_client,
            "pausedByApp": self.paused_by_app,
            "producerPaused": self.producer.paused,
            "preferredProfile": self.preferred_profile,
            "effectiveProfile": self.effective_profile,
            "rtpParameters": self.rtp_parameters,
            "statsInterval": self.stats_interval,
        }
