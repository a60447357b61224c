"""WebRtcTransport: ICE-lite, DTLS-SRTP and SRTP on one UDP port and/or one ICE-TCP passive
port (mediasoup v2 semantics).

The transport glues three sans-I/O cores to one UdpEndpoint (options.udp), one TcpServer
(options.tcp, tcp.py) and the worker's clock:

    datagram --demux (RFC 7983, first byte)--+-- 0..3    STUN -> IceLiteServer.handle_stun
                                             +-- 20..63  DTLS -> DtlsEndpoint.handle_datagram
                                             +-- 128..191 SRTP/SRTCP -> SrtpContext -> forwarder
                                             +-- else    dropped, counted

- STUN is answered from anyone (a wrong USERNAME or MESSAGE-INTEGRITY gets 400/401 and
  changes nothing). A valid check makes its source a valid tuple; the selected tuple (ICE
  nomination) becomes the endpoint's connected remote: media then goes only there, and
  arrives on the connected socket.
- DTLS is accepted from valid tuples only, and starts once ICE selected a tuple and the
  remote dtlsParameters are known (either order). Its flights go to the selected tuple.
- SRTP/SRTCP is accepted from the selected tuple only: RTP from anyone else, valid tuple or
  not, is dropped and counted as a stranger's (the issue's rule; v2 took any valid tuple).
  RTP is decrypted in place in the forwarder's buffer and forwarded; SRTCP goes to the
  listener (key-frame requests).
- Sending: `sender()` exists once DTLS is connected and a tuple is selected; it copies the
  rewritten packet into a scratch buffer, protects it there in place and sends it on the
  connected socket (the forwarder's buffer must keep the plaintext for the next consumer).
- Failure: DTLS failing or closed by the remote, and ICE losing consent (no valid check for
  30 s on any tuple), end the transport: `listener.transport_failed(self, reason)` (called
  soon, never from inside a socket drain), which closes it and tells the supervisor.

ICE-TCP (RFC 6544, passive): each RFC 4571 frame of a TCP connection is copied into the
forwarder's buffer and goes through the same demux; the connection's ICE tuple is
(ip, port, 'tcp'). A valid STUN check validates the connection (else tcp.py closes it after
10 s). When ICE selects a TCP tuple, the UDP endpoint is disconnected and everything we send
(DTLS, SRTP, SRTCP) is framed on that connection; when it closes, its tuple is removed (if it
was selected: another valid tuple takes over, else ICE is disconnected and the transport
fails). The UDP hot path does not change: TCP frames are dispatched by `_on_tcp_frame`.

Time is `loop.time()` everywhere (one monotonic clock for ICE consent and DTLS timers).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tureen.shared.contract import TransportDtlsState, TransportIceState
from tureen.workers.transport.base import Sender, Transport, TransportListener
from tureen.workers.transport.dtls import (
    DtlsClosed,
    DtlsConnected,
    DtlsEndpoint,
    DtlsEvent,
    DtlsFailed,
)
from tureen.workers.transport.ice_lite import (
    IceEvent,
    IceLiteServer,
    IceStateChanged,
    IceTupleSelected,
    ice_candidates,
)
from tureen.workers.transport.srtp import MAX_PACKET_SIZE, SrtpContext
from tureen.workers.transport.tcp import TcpConnection, TcpServer
from tureen.workers.transport.udp import UdpEndpoint

if TYPE_CHECKING:
    import asyncio

    from tureen.workers.forward import Forwarder

log = logging.getLogger("tureen.workers.webrtc")

# Room for the largest packet we protect plus the longest SRTP trailer (GCM's 16-byte tag).
_SCRATCH = MAX_PACKET_SIZE + 32


class WebRtcTransport(Transport):
    kind = "webrtc"

    def __init__(
        self,
        transport_id: int,
        listener: TransportListener,
        loop: asyncio.AbstractEventLoop,
        forwarder: Forwarder,
        addresses: list[tuple[str, str | None]],
        min_port: int,
        max_port: int,
        options: dict[str, Any],
    ) -> None:
        super().__init__(transport_id, listener)
        self._loop = loop
        self._forwarder = forwarder
        self._buf = forwarder.buf
        self.ice = IceLiteServer()
        self.dtls = DtlsEndpoint()
        self.srtp: SrtpContext | None = None
        # One UDP socket and one TCP listener per address family (addresses: [(bind IP,
        # announced IP or None)], IPv4 first); `endpoint` / `tcp` are the first of each.
        self.endpoints: list[UdpEndpoint] = []
        self.tcp_servers: list[TcpServer] = []
        sockets: list[tuple[str, str, int]] = []
        try:
            for ip, announced_ip in addresses:
                udp_port = None
                if options.get("udp", True):
                    endpoint = UdpEndpoint(
                        loop,
                        forwarder.buf,
                        ip,
                        min_port,
                        max_port,
                        on_datagram=self._on_selected,
                        on_datagram_from=self._on_datagram_from,
                        after_drain=forwarder.after_drain,
                        name=f"transport {transport_id}",
                        recv_batch=forwarder.recv_batch,
                        # SRTP unprotected in C, then the native receive; else _on_selected
                        native_drain=forwarder.native_drain(self, secure=True),
                    )
                    self.endpoints.append(endpoint)
                    local_ip, udp_port = endpoint.local
                    sockets.append(("udp", announced_ip or local_ip, udp_port))
                if options.get("tcp", True):
                    # As mediasoup v2: the TCP port is the UDP one when that is free.
                    server = TcpServer(
                        loop,
                        ip,
                        min_port,
                        max_port,
                        on_frame=self._on_tcp_frame,
                        on_closed=self._on_tcp_closed,
                        after_frames=forwarder.after_drain,
                        preferred_port=udp_port,
                        name=f"transport {transport_id}",
                    )
                    self.tcp_servers.append(server)
                    local_ip, port = server.local
                    sockets.append(("tcp", announced_ip or local_ip, port))
        except OSError:
            self._close_sockets()
            raise
        self.endpoint: UdpEndpoint | None = self.endpoints[0] if self.endpoints else None
        self.tcp: TcpServer | None = self.tcp_servers[0] if self.tcp_servers else None
        if not sockets:
            raise ValueError("a WebRTC transport needs udp or tcp")
        self.candidates = ice_candidates(sockets, options)
        # The per-copy send's buffer (`_send_srtp`: ICE-TCP, the per-copy core), made on its
        # first use: the batched cores protect in their own slots, so most transports never
        # need these 1.5 KiB (docs/benchmarks.md, "Memory per transport").
        self._scratch: bytearray | None = None
        self._scratch_mv: memoryview | None = None
        self._send: Sender | None = None  # the connected socket's send, once a tuple is selected
        self._timer: asyncio.TimerHandle | None = None
        self._failing = False
        # Counters (dump): what was dropped and why.
        self.strangers = 0
        self.stun_in = 0
        self.dtls_in = 0
        self.srtp_errors = 0
        self.srtcp_in = 0
        self.rtcp_out = 0
        self.media_before_srtp = 0
        self.not_demuxed = 0
        self.tcp_strangers = 0

    # -- parameters (createTransport / updateTransport / restartTransport) -------------

    def local_parameters(self) -> dict[str, Any]:
        return {
            "iceParameters": self.ice.ice_parameters(),
            "iceCandidates": self.candidates,
            "dtlsParameters": self.dtls.local_parameters(),
        }

    def set_remote_dtls(self, dtls_parameters: Any) -> dict[str, Any]:
        """Apply the client's dtlsParameters (ProtocolError, changing nothing, when bad)."""
        role = self.dtls.set_remote(dtls_parameters)
        log.info("%s: remote DTLS parameters set, local role %s", self.subject, role, extra=self.subject.extra)
        self._maybe_start_dtls()
        return self.dtls.local_parameters()

    def restart_ice(self) -> dict[str, Any]:
        params = self.ice.restart()
        log.info("%s: ICE restarted (new ufrag %s)", self.subject, params["usernameFragment"], extra=self.subject.extra)
        return params

    # -- data path ----------------------------------------------------------------------

    def sender(self) -> Sender | None:
        if self.srtp is None or self._send is None:
            return None
        return self._send_srtp

    def batch_target(self) -> tuple[int, Any]:
        """Batchable when the selected tuple is UDP (the endpoint's connected socket);
        ICE-TCP frames each packet on its connection, per copy."""
        if self.srtp is None or self._send is None or self.endpoint is None:
            return -1, None
        if self._send != self.endpoint.send:  # a TCP connection's send
            return -1, None
        return self.endpoint.send_fd, self.srtp

    def _send_srtp(self, view: Any) -> None:
        n = len(view)
        scratch = self._scratch
        if scratch is None:
            scratch = self._scratch = bytearray(_SCRATCH)
            self._scratch_mv = memoryview(scratch)
        scratch[:n] = view  # same length: no resize (the cffi view of it stays valid)
        try:
            m = self._protect(scratch, n)
        except ValueError as exc:  # too long for libsrtp: lost, counted as a send error
            raise OSError(str(exc)) from None
        self._send(self._scratch_mv[:m])  # type: ignore[misc]

    def send_rtcp(self, packet: bytes) -> None:
        """Send one compound RTCP packet of ours to the remote (dropped until connected)."""
        if self.srtp is None or self._send is None:
            return
        try:
            protected = self.srtp.protect_rtcp(packet)
            self._send(protected)
            self.rtcp_out += 1
            self.rtcp_octets_out += len(protected)
        except (ValueError, OSError) as exc:
            log.debug("%s: RTCP not sent: %s", self.subject, exc, extra=self.subject.extra)

    def srtp_overhead(self) -> int:
        return self.srtp.profile.rtp_trailer if self.srtp is not None else 0

    # -- stats (workers/stats.py) ---------------------------------------------------------

    def octets_in(self) -> int:
        """Every byte received on the transport's sockets (UDP datagrams, TCP streams)."""
        total = self.endpoint.octets_in if self.endpoint is not None else 0
        if self.tcp is not None:
            total += self.tcp.octets_in_closed + sum(c.octets_in for c in self.tcp.connections.values())
        return total

    def octets_out(self) -> int:
        """SRTP and SRTCP bytes sent (STUN, DTLS and TCP framing not included)."""
        return self.rtcp_octets_out + self.octets_out_closed + sum(c.wire_octets() for c in self.consumers.values())

    def selected_tuple(self) -> dict[str, Any] | None:
        """The ICE-selected tuple in mediasoup v2's TransportTuple shape, or None."""
        addr = self.ice.selected_tuple
        if addr is None:
            return None
        tcp = len(addr) == 3 and addr[2] == "tcp"
        local = self.tcp.local if tcp and self.tcp is not None else self.endpoint.local if self.endpoint else ("", 0)
        return {
            "localIP": local[0],
            "localPort": local[1],
            "remoteIP": addr[0],
            "remotePort": addr[1],
            "protocol": "tcp" if tcp else "udp",
        }

    def _on_selected(self, n: int) -> None:
        """A datagram from the selected tuple (the connected socket)."""
        buf = self._buf
        b0 = buf[0]
        if 128 <= b0 <= 191:
            srtp = self.srtp
            if srtp is None:
                self.media_before_srtp += 1
                return
            if n >= 8 and 192 <= buf[1] <= 223:
                self._on_srtcp(n)
                return
            try:
                n = srtp.unprotect_rtp_into(buf, n)
            except ValueError:
                self.srtp_errors += 1
                return
            self._forwarder.receive(self, n)
        elif b0 < 4:
            addr = self.ice.selected_tuple  # the connected socket's remote (only UDP gets here)
            if addr is not None:
                self._on_stun(n, addr)
        elif 20 <= b0 <= 63:
            self._on_dtls(n)
        else:
            self.not_demuxed += 1

    def _on_datagram_from(self, n: int, addr: tuple) -> None:
        """A datagram from anyone but the selected tuple (the open socket)."""
        b0 = self._buf[0]
        if b0 < 4:
            self._on_stun(n, (addr[0], addr[1]))
        elif 20 <= b0 <= 63 and self.ice.is_valid_tuple((addr[0], addr[1])):
            self._on_dtls(n)
        else:
            self.strangers += 1
            self._forwarder.drop_stranger += 1
            if self.strangers == 1 or self.strangers % 1000 == 0:
                log.warning(
                    "%s: dropped datagram from %s:%d, not the ICE-selected tuple (%d so far)",
                    self.subject,
                    addr[0],
                    addr[1],
                    self.strangers,
                    extra=self.subject.extra,
                )

    # -- ICE-TCP ------------------------------------------------------------------------

    def _on_tcp_frame(self, conn: TcpConnection, packet: bytes) -> None:
        """One RFC 4571 frame from a TCP connection: the same demux as a datagram.

        The frame is copied into the forwarder's buffer, where the UDP path's handlers (and
        the in-place SRTP unprotect) expect a packet.
        """
        n = len(packet)
        self._buf[:n] = packet  # n <= tcp.MAX_FRAME, far below the buffer's size: no resize
        addr = conn.addr
        b0 = packet[0]
        if b0 < 4:
            self._on_stun(n, addr, conn)
        elif addr == self.ice.selected_tuple:
            self._on_selected(n)
        elif 20 <= b0 <= 63 and self.ice.is_valid_tuple(addr):
            self._on_dtls(n)
        else:
            self.tcp_strangers += 1
            self.strangers += 1
            self._forwarder.drop_stranger += 1

    def _on_tcp_closed(self, conn: TcpConnection) -> None:
        """A TCP connection went away (remote close, bad framing, STUN timeout): its tuple too."""
        if self.closed:
            return
        events = self.ice.remove_tuple(conn.addr)
        if events:
            log.info("%s: ICE tuple %s:%d/tcp closed", self.subject, conn.addr[0], conn.addr[1], extra=self.subject.extra)
            self._on_ice_events(events, "the selected TCP connection closed")
        self._arm_timer()

    def _close_stale_tcp(self) -> None:
        """Close validated TCP connections whose tuple ICE dropped (consent lost, capped)."""
        for server in self.tcp_servers:
            for conn in list(server.connections.values()):
                if conn.validated and not self.ice.is_valid_tuple(conn.addr):
                    conn.close("ICE tuple expired")

    def _udp_for(self, addr: tuple) -> UdpEndpoint:
        """The UDP endpoint of `addr`'s address family (a tuple came in on it)."""
        v6 = ":" in addr[0]
        for endpoint in self.endpoints:
            if endpoint.ipv6 == v6:
                return endpoint
        raise OSError(f"no UDP socket of the family of {addr[0]}")

    def _on_srtcp(self, n: int) -> None:
        try:
            packet = self.srtp.unprotect_rtcp(bytes(self._buf[:n]))  # type: ignore[union-attr]
        except ValueError:
            self.srtp_errors += 1
            return
        self.srtcp_in += 1
        self._forwarder.rtcp_in += 1
        self.listener.transport_rtcp(self, packet)

    # -- ICE ----------------------------------------------------------------------------

    def _on_stun(self, n: int, addr: tuple, conn: TcpConnection | None = None) -> None:
        """A STUN packet from `addr` (UDP), or from the TCP connection `conn`."""
        self.stun_in += 1
        response, events = self.ice.handle_stun(bytes(self._buf[:n]), addr, self._loop.time())
        if response is not None:
            try:
                if conn is not None:
                    conn.send(response)
                else:
                    self._udp_for(addr).sendto(response, addr)
            except OSError as exc:
                log.debug("%s: STUN answer to %s:%d lost: %s", self.subject, addr[0], addr[1], exc, extra=self.subject.extra)
        if conn is not None and not conn.validated and self.ice.is_valid_tuple(addr):
            conn.validate()
        if events:
            self._on_ice_events(events)
        self._arm_timer()

    def _on_ice_events(
        self, events: list[IceEvent], why: str = "no connectivity check for 30 s (consent lost)"
    ) -> None:
        for ev in events:
            if isinstance(ev, IceTupleSelected):
                self._select(ev.addr)
            elif isinstance(ev, IceStateChanged):
                log.info("%s: ICE %s", self.subject, ev.state, extra=self.subject.extra)
                self.listener.transport_event(self, TransportIceState(transportId=self.id, state=ev.state))
                if ev.state == "disconnected":
                    self._fail(f"ICE disconnected: {why}")

    def _select(self, addr: tuple | None) -> None:
        if addr is None:
            for endpoint in self.endpoints:
                endpoint.disconnect()
            self._send = None
        elif len(addr) == 3 and addr[2] == "tcp":
            conn = next((s.connections[addr] for s in self.tcp_servers if addr in s.connections), None)
            if conn is None:  # pragma: no cover - a TCP tuple is removed when its connection closes
                self._fail(f"the ICE-selected tuple {addr[0]}:{addr[1]}/tcp has no connection")
                return
            for endpoint in self.endpoints:
                # UDP from the old remote now lands on the open socket: STUN and DTLS are
                # still answered, media from there is a stranger's.
                endpoint.disconnect()
            self._send = conn.send  # frames each packet
            log.info("%s: ICE selected %s:%d/tcp", self.subject, addr[0], addr[1], extra=self.subject.extra)
            self._maybe_start_dtls()
        else:
            try:
                chosen = self._udp_for(addr)
                for endpoint in self.endpoints:
                    if endpoint is not chosen:
                        endpoint.disconnect()
                chosen.connect(addr)
            except OSError as exc:
                self._fail(f"cannot use the ICE-selected tuple {addr[0]}:{addr[1]}: {exc}")
                return
            self._send = chosen.send
            log.info("%s: ICE selected %s:%d", self.subject, addr[0], addr[1], extra=self.subject.extra)
            self._maybe_start_dtls()
        self.listener.transport_ready(self)

    # -- DTLS ---------------------------------------------------------------------------

    def _maybe_start_dtls(self) -> None:
        # As mediasoup's MayRunDtlsTransport: the role is known and ICE has a tuple.
        dtls = self.dtls
        if dtls.state != "new" or dtls.remote_fingerprint is None or self._send is None:
            return
        self.listener.transport_event(self, TransportDtlsState(transportId=self.id, state="connecting"))
        self._send_dtls(dtls.start(self._loop.time()))
        # Early datagrams replayed by start() may have produced events already.
        out, events = dtls.handle_timer(self._loop.time())
        self._send_dtls(out)
        self._on_dtls_events(events)
        self._arm_timer()

    def _on_dtls(self, n: int) -> None:
        self.dtls_in += 1
        out, events = self.dtls.handle_datagram(bytes(self._buf[:n]), self._loop.time())
        self._send_dtls(out)
        self._on_dtls_events(events)
        self._arm_timer()

    def _send_dtls(self, datagrams: list[bytes]) -> None:
        send = self._send
        if send is None:
            return
        for data in datagrams:
            try:
                send(data)
            except OSError as exc:
                log.debug("%s: DTLS datagram lost: %s", self.subject, exc, extra=self.subject.extra)

    def _on_dtls_events(self, events: list[DtlsEvent]) -> None:
        for ev in events:
            if isinstance(ev, DtlsConnected):
                try:
                    self.srtp = SrtpContext(ev.profile, ev.local_key_salt, ev.remote_key_salt)
                except ValueError as exc:
                    self._fail(f"DTLS connected but SRTP cannot start: {exc}")
                    return
                self._protect = self.srtp.protect_rtp_into
                log.info("%s: DTLS connected (%s, %s)", self.subject, self.dtls.role, ev.profile, extra=self.subject.extra)
                self.listener.transport_event(self, TransportDtlsState(transportId=self.id, state="connected"))
                self.listener.transport_ready(self)
            elif isinstance(ev, DtlsFailed):
                self.listener.transport_event(self, TransportDtlsState(transportId=self.id, state="failed"))
                self._fail(f"DTLS failed: {ev.reason}")
            elif isinstance(ev, DtlsClosed):
                self.listener.transport_event(self, TransportDtlsState(transportId=self.id, state="closed"))
                self._fail(f"DTLS closed by the remote ({ev.reason})")

    # -- timers -------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self.closed:
            return
        timers = [t for t in (self.ice.get_timer(), self.dtls.get_timer()) if t is not None]
        when = min(timers) if timers else None
        if self._timer is not None:
            if when is not None and self._timer.when() == when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        out, dtls_events = self.dtls.handle_timer(now)
        self._send_dtls(out)
        self._on_dtls_events(dtls_events)
        ice_events = self.ice.check_timeout(now)
        if ice_events:
            self._on_ice_events(ice_events)
        self._close_stale_tcp()
        self._arm_timer()

    # -- end ----------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        if self._failing or self.closed:
            return
        self._failing = True
        log.warning("%s: %s; closing it", self.subject, reason, extra=self.subject.extra)
        # Not from inside a drain of our own socket: the listener closes it.
        self._loop.call_soon(self.listener.transport_failed, self, reason)

    def dump(self) -> dict[str, Any]:
        info = super().dump()
        if self.endpoint is not None:
            info.update(self.endpoint.dump())
        if self.tcp is not None:
            info.update(self.tcp.dump())
        if len(self.endpoints) > 1 or len(self.tcp_servers) > 1:
            # The IPv6 sockets, when there are both families (the first ones are above).
            info["ipv6"] = {
                **(self.endpoints[1].dump() if len(self.endpoints) > 1 else {}),
                **(self.tcp_servers[1].dump() if len(self.tcp_servers) > 1 else {}),
            }
        info.update(
            {
                "iceState": self.ice.state,
                "iceSelectedTuple": list(self.ice.selected_tuple) if self.ice.selected_tuple else None,
                "iceTuples": [list(t) for t in self.ice.tuples],
                "dtlsState": self.dtls.state,
                "dtlsRole": self.dtls.role,
                "srtpProfile": self.srtp.profile.name if self.srtp else None,
                "strangers": self.strangers,
                "stunIn": self.stun_in,
                "dtlsIn": self.dtls_in,
                "srtcpIn": self.srtcp_in,
                "rtcpOut": self.rtcp_out,
                "srtpErrors": self.srtp_errors,
                "mediaBeforeSrtp": self.media_before_srtp,
                "notDemuxed": self.not_demuxed,
                "tcpStrangers": self.tcp_strangers,
            }
        )
        return info

    def close(self) -> None:
        if not self.closed:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._send_dtls(self.dtls.close())
            self._close_sockets()
        super().close()

    def _close_sockets(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
        for server in self.tcp_servers:
            server.close()  # every connection with it
