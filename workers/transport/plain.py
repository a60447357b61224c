"""PlainRtpTransport: RTP and RTCP muxed on one UDP port, no ICE, DTLS or SRTP.

For ffmpeg, GStreamer and recorders. The remote address comes from the supervisor
(`transport.createPlain` / `transport.connectPlain`), or with `comedia` from the first
RTP/RTCP datagram received (for senders that cannot choose their port). Datagrams from any
other source are dropped and counted (`strangers`); v2 took any source, Tureen filters as
mediasoup v3 does (docs/control-api.md, "Where Tureen differs from mediasoup v2").
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from tureen.workers.transport.base import Sender, Transport, TransportListener
from tureen.workers.transport.udp import UdpEndpoint

if TYPE_CHECKING:
    import asyncio

    from tureen.workers.forward import Forwarder

log = logging.getLogger("tureen.workers.plain")


class PlainRtpTransport(Transport):
    kind = "plain"

    def __init__(
        self,
        transport_id: int,
        listener: TransportListener,
        loop: asyncio.AbstractEventLoop,
        forwarder: Forwarder,
        ip: str,
        min_port: int,
        max_port: int,
        comedia: bool = False,
    ) -> None:
        super().__init__(transport_id, listener)
        self.comedia = comedia
        self.strangers = 0
        self._forwarder = forwarder
        self.endpoint = UdpEndpoint(
            loop,
            forwarder.buf,
            ip,
            min_port,
            max_port,
            on_datagram=partial(forwarder.receive, self),
            on_datagram_from=self._on_datagram_from,
            after_drain=forwarder.after_drain,
            name=f"transport {transport_id}",
            recv_batch=forwarder.recv_batch,
            native_drain=forwarder.native_drain(self, secure=False),
        )

    @property
    def local(self) -> tuple[str, int]:
        return self.endpoint.local

    def connect(self, ip: str, port: int) -> None:
        remote = (ip, port)
        if remote == self.endpoint.remote:
            return
        self.endpoint.connect(remote)
        log.info("%s: plain %s:%d -> %s:%d", self.subject, *self.local, ip, port, extra=self.subject.extra)
        self.listener.transport_ready(self)

    def octets_in(self) -> int:
        """Every byte received on the transport's socket (RTP and RTCP)."""
        return self.endpoint.octets_in

    def octets_out(self) -> int:
        """RTP and RTCP bytes sent."""
        return self.rtcp_octets_out + self.octets_out_closed + sum(c.wire_octets() for c in self.consumers.values())

    def sender(self) -> Sender | None:
        return self.endpoint.send

    def batch_target(self) -> tuple[int, None]:
        return self.endpoint.send_fd, None

    def send_rtcp(self, packet: bytes) -> None:
        send = self.endpoint.send
        if send is None:
            return
        try:
            send(packet)
        except OSError as exc:
            log.debug("%s: RTCP not sent: %s", self.subject, exc, extra=self.subject.extra)

    def _on_datagram_from(self, n: int, addr: tuple) -> None:
        fwd = self._forwarder
        if self.comedia and self.endpoint.remote is None and n >= 8 and 128 <= fwd.buf[0] <= 191:
            # comedia: the first RTP/RTCP source becomes the remote.
            log.info("%s: comedia latched remote %s:%d", self.subject, addr[0], addr[1], extra=self.subject.extra)
            self.endpoint.connect((addr[0], addr[1]))
            self.listener.transport_ready(self)
            fwd.receive(self, n)
            return
        self.strangers += 1
        fwd.drop_stranger += 1
        if self.strangers == 1 or self.strangers % 1000 == 0:
            log.warning(
                "%s: dropped datagram from stranger %s:%d (%d so far)",
                self.subject,
                addr[0],
                addr[1],
                self.strangers,
                extra=self.subject.extra,
            )

    def dump(self) -> dict[str, Any]:
        info = super().dump()
        info.update(self.endpoint.dump())
        info["comedia"] = self.comedia
        info["strangers"] = self.strangers
        return info

    def close(self) -> None:
        if not self.closed:
            self.endpoint.close()
        super().close()
