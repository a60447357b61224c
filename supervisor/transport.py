"""Transport state as the supervisor keeps it: which worker hosts it and what was negotiated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Transport:
    """A peer's WebRtcTransport or PlainRtpTransport.

    `id` is the client's protocol id; `gid` is the worker-global id the worker knows it by.
    """

    id: int
    gid: int
    peer_name: str
    direction: str  # 'send' | 'recv' (from the client; producers need send, consumers recv)
    plain: bool
    worker: int
    app_data: Any = None
    # WebRTC: remote dtlsParameters were applied (v2 refuses to set them twice).
    remote_dtls_set: bool = False
    # Plain: where the server sends (remote) and the server's own socket (local).
    remote: dict[str, Any] | None = None
    local: dict[str, Any] | None = None
    # Last answer of the worker at creation (iceParameters, iceCandidates, dtlsParameters).
    created: dict[str, Any] = field(default_factory=dict)
    stats_interval: int | None = None  # ms, when enableTransportStats is on
    ice_state: str = "new"
    dtls_state: str = "new"
    closed: bool = False

    @property
    def kind_name(self) -> str:
        return "PlainRtpTransport" if self.plain else "WebRtcTransport"

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
