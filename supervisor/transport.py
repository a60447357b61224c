"""Transport state as the supervisor keeps it: which worker hosts it and what was negotiated."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tureen.supervisor.states import Stateful


class TransportState(enum.Enum):
    NEW = "new"  # on its worker, no remote parameters yet
    CONNECTED = "connected"  # remote DTLS parameters applied (WebRTC) / remote address set (plain)
    CLOSED = "closed"


@dataclass(eq=False)
class Transport(Stateful):
    """A peer's WebRtcTransport or PlainRtpTransport.

    `id` is the client's protocol id; `gid` is the worker-global id the worker knows it by.
    `state` is the supervisor's view (TransportState); `ice_state` and `dtls_state` are what
    its worker last reported.
    """

    # v2 refuses remote DTLS parameters twice, so a WebRTC transport connects once; a plain
    # one may be given a new remote address (`connect` keeps it CONNECTED).
    TRANSITIONS: ClassVar = {
        TransportState.NEW: frozenset({TransportState.CONNECTED, TransportState.CLOSED}),
        TransportState.CONNECTED: frozenset({TransportState.CLOSED}),
        TransportState.CLOSED: frozenset(),
    }

    id: int
    gid: int
    peer_name: str
    direction: str  # 'send' | 'recv' (from the client; producers need send, consumers recv)
    plain: bool
    worker: int
    app_data: Any = None
    # Plain: where the server sends (remote) and the server's own socket (local).
    remote: dict[str, Any] | None = None
    local: dict[str, Any] | None = None
    # Last answer of the worker at creation (iceParameters, iceCandidates, dtlsParameters).
    created: dict[str, Any] = field(default_factory=dict)
    stats_interval: int | None = None  # ms, when enableTransportStats is on
    ice_state: str = "new"
    dtls_state: str = "new"
    state: TransportState = TransportState.NEW

    @property
    def remote_dtls_set(self) -> bool:
        """WebRTC: the remote DTLS parameters were applied (v2 refuses them twice)."""
        return not self.plain and self.state is TransportState.CONNECTED

    @property
    def kind_name(self) -> str:
        return "PlainRtpTransport" if self.plain else "WebRtcTransport"

    def connect(self, remote: tuple[str, int] | None = None) -> None:
        """The remote side is known: DTLS parameters applied, or (plain) its address."""
        if self.plain and remote is not None:
            self.remote = {"ip": remote[0], "port": remote[1]}
        if not (self.plain and self.state is TransportState.CONNECTED):
            self.set_state(TransportState.CONNECTED)

    def worker_state(self, *, ice: str | None = None, dtls: str | None = None) -> None:
        """Record an ICE or DTLS state its worker reported."""
        if ice is not None:
            self.ice_state = ice
        if dtls is not None:
            self.dtls_state = dtls

    def describe(self) -> str:
        return f"transport {self.id} of peer {self.peer_name!r}"

    def dump(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workerId": self.gid,
            "worker": self.worker,
            "type": self.kind_name,
            "direction": self.direction,
            "iceState": self.ice_state,
            "dtlsState": self.dtls_state,
            "remote": self.remote,
            "local": self.local,
            "statsInterval": self.stats_interval,
            "appData": self.app_data,
        }
