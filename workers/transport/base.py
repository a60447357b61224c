"""What every transport of a worker is, seen from the router, the forwarder and the worker.

A transport owns one UdpEndpoint (transport/udp.py) and turns its datagrams into calls of
`Forwarder.receive(transport, n)` (the packet is in the forwarder's shared buffer), and gives
the router a `sender()`: a callable that puts one finished RTP packet on the wire.

    PlainRtpTransport   datagram -> forwarder.receive; sender = connected socket's send
    WebRtcTransport     datagram -> demux (RFC 7983): STUN -> ice_lite core, DTLS -> dtls
                        core, RTP/RTCP -> SRTP unprotect into the buffer -> forwarder.receive;
                        sender = protect + connected socket's send (once DTLS is up);
                        with ICE-TCP (tcp.py) the same demux per RFC 4571 frame, and a
                        sender that frames on the selected TCP connection

The forwarder reads two tables from a transport, which only the router writes:
`ssrc_table` (SSRC -> producer Stream of producers on this transport) and `rtx_ssrcs`.
When `sender()` changes (plain: remote learnt or changed; WebRTC: ICE selected a tuple and
DTLS connected, or a disconnect), the transport calls `listener.transport_ready(self)` so the
router re-derives the fan-out tables of the consumers on it. Events for the supervisor
(iceState, dtlsState, closed) go through `listener.transport_event`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from tureen.shared.logs import Subject

if TYPE_CHECKING:
    from tureen.shared.contract import Event
    from tureen.workers.router import Consumer, Producer, Stream
    from tureen.workers.transport.srtp import SrtpContext

# Sends one RTP packet (a bytes-like view into the forwarder's buffer). Raises OSError on
# failure, which the forwarder counts; it must not keep the view after returning.
Sender = Callable[[Any], Any]


class TransportListener(Protocol):
    def transport_ready(self, transport: Transport) -> None:
        """transport.sender() changed (became available, changed or went away)."""

    def transport_event(self, transport: Transport, event: Event) -> None:
        """A state change the supervisor hears about (shared/contract.py), e.g.
        TransportIceState."""

    def transport_rtcp(self, transport: Transport, packet: bytes) -> None:
        """A (decrypted) compound RTCP packet arrived from the transport's remote."""

    def transport_failed(self, transport: Transport, reason: str) -> None:
        """The transport cannot go on (DTLS failed, ICE consent lost): close it, tell all."""


class Transport:
    """Base of PlainRtpTransport and WebRtcTransport."""

    kind: ClassVar[str] = "?"

    def __init__(self, transport_id: int, listener: TransportListener) -> None:
        self.id = transport_id
        # Its name in log lines, in the protocol's id space once the worker sets it from
        # the create command (room, peer, the peer's id for it).
        self.subject = Subject("transport", transport_id)
        self.listener = listener
        # Data-path tables: written by the router only, read by the forwarder.
        self.ssrc_table: dict[int, Stream] = {}
        self.rtx_table: dict[int, Stream] = {}  # RTX SSRC -> the stream it repairs
        self.rtx_ssrcs: set[int] = set()
        # Control-path bookkeeping (router).
        self.producers: dict[int, Producer] = {}
        self.consumers: dict[int, Consumer] = {}
        self.closed = False
        # Stats: wire bytes of consumers removed from this transport, and of our RTCP.
        self.octets_out_closed = 0
        self.rtcp_octets_out = 0
        # The REMB last sent to this transport's sender: (bit/s, media SSRCs).
        self.last_remb: tuple[int, list[int]] = (0, [])
        # The app's cap on that REMB (transport.setMaxBitrate, bit/s; 0 = none).
        self.max_bitrate = 0
        # The remote's last REMB (a receiver's estimate of what it can take), for stats.
        self.remote_remb: tuple[int, list[int]] = (0, [])

    def srtp_overhead(self) -> int:
        """Bytes protection adds to each RTP packet sent (0: plain RTP)."""
        return 0

    def sender(self) -> Sender | None:
        """How to send one RTP packet to the remote now, or None while that is not possible."""
        raise NotImplementedError

    def batch_target(self) -> tuple[int, SrtpContext | None]:
        """(fd, srtp) for the batched fan-outs (workers/sendbatch.py, workers/_native.c): the
        connected UDP socket the sender() sends on, and for SRTP the transport's context
        (copies are protected in place with its outbound session). fd -1: not batchable,
        the forwarder calls sender() per copy."""
        return -1, None

    def send_rtcp(self, packet: bytes) -> None:
        """Send one compound RTCP packet to the remote; silently nothing while not possible."""
        raise NotImplementedError

    def handle_rtcp(self, n: int, buf: bytearray) -> None:
        """The forwarder found an RTCP packet in buf[:n] from this transport's remote."""
        self.listener.transport_rtcp(self, bytes(buf[:n]))

    def dump(self) -> dict[str, Any]:
        return {
            "transportId": self.id,
            "kind": self.kind,
            "producerIds": sorted(self.producers),
            "consumerIds": sorted(self.consumers),
        }

    def close(self) -> None:
        self.closed = True
