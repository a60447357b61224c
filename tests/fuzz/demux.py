"""The first-byte demux of a WebRTC transport (RFC 7983), workers/transport/webrtc.py.

Real WebRtcTransports of a real in-process Worker (room.py's: alice's send transport with a
VP8 producer, bob's recv transport with an enabled consumer of it), fed datagrams the way
their UDP endpoint hands them over (written into the forwarder's buffer, then
`_on_datagram_from` for a datagram from anyone but the selected tuple, `_on_selected` for one
from it, then `after_drain`). Each step picks a transport, a loopback source address and a
datagram: raw input bytes, a valid ICE check (USE-CANDIDATE or not), RTP or RTCP protected
with the transport's remote SRTP key (which the step may install), or raw bytes after a
valid first byte of each RFC 7983 range. Properties:
- nothing raises;
- every datagram lands in exactly one counter of its RFC 7983 range: STUN (0..3) in stun_in;
  DTLS (20..63) in dtls_in from a valid tuple, else with the strangers; SRTP/SRTCP (128..191)
  from the selected tuple in exactly one of media_before_srtp, srtp_errors, srtcp_in or the
  forwarder's input counters, from anyone else with the strangers; the rest in not_demuxed
  (selected tuple) or with the strangers;
- a datagram from a stranger (not a valid tuple) that is not STUN changes neither the ICE
  state, the selected tuple, nor the DTLS state.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from aioice import stun
from tureen.supervisor.room import Room
from tureen.workers.transport.srtp import AES128_CM_SHA1_80, SrtpContext
from tureen.workers.transport.webrtc import WebRtcTransport

from . import shapes
from .harness import Draw
from .room import _LOOP, _SERVICES, _setup


def _remote(ip: str) -> tuple[str, int]:
    """The address of a UDP socket of our own, held open: the transports answer STUN and send
    DTLS to the tuples they see, and those answers must reach no one else's socket (another
    test's RTP port, a fanout sink). What arrives there is never read: the kernel drops it
    once the small receive buffer is full."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((ip, 0))
    _REMOTES.append(sock)
    return ip, sock.getsockname()[1]


_REMOTES: list[socket.socket] = []
# Two addresses of the "browser", a third party, and an IPv6 one (the transports have no IPv6
# socket: what they would send there fails, as on a host without IPv6).
ADDRS = (_remote("127.0.0.1"), _remote("127.0.0.1"), _remote("127.0.0.2"), ("::1", _remote("127.0.0.1")[1]))
LOCAL_KEY = bytes(range(30))
REMOTE_KEY = bytes(range(100, 130))
PRODUCER_SSRCS = (1111111111, 2222222222)  # shapes.VIDEO_PRODUCER: media, RTX
_TRANSPORT_COUNTERS = (
    "stun_in",
    "dtls_in",
    "media_before_srtp",
    "srtp_errors",
    "srtcp_in",
    "not_demuxed",
    "strangers",
)


def _counts(t: WebRtcTransport) -> dict[str, int]:
    out = {name: getattr(t, name) for name in _TRANSPORT_COUNTERS}
    out["forwarded"] = t._forwarder.packets_in() - t._forwarder.drop_stranger
    return out


def _ice_check(t: WebRtcTransport, draw: Draw) -> bytes:
    attributes: dict[str, Any] = {
        "USERNAME": f"{t.ice.usernameFragment}:bRoW",
        "PRIORITY": 1853817087,
        "ICE-CONTROLLING": 1,
    }
    if draw.flag():
        attributes["USE-CANDIDATE"] = None
    msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes=attributes)
    msg.add_message_integrity(t.ice.password.encode())
    return bytes(msg)


def _rtp(draw: Draw, peer: SrtpContext) -> bytes:
    ssrc = draw.choice((*PRODUCER_SSRCS, draw.u32()))
    pt = draw.choice((96, 97, draw.u8() & 0x7F))
    b0 = 0x80 | (draw.u8() & 0x3F if draw.u8() < 64 else 0)
    header = struct.pack("!BBHII", b0, pt | (draw.u8() & 0x80), draw.u16(), draw.u32(), ssrc)
    packet = header + draw.take(draw.below(300))
    try:
        return peer.protect_rtp(packet)
    except ValueError:  # a header libsrtp will not parse (CSRC/extension bits, no room)
        return packet


def _rtcp(draw: Draw, peer: SrtpContext) -> bytes:
    body = draw.take(4 + draw.below(120)).ljust(4, b"\0")  # at least the sender SSRC
    words = (len(body) + 3) // 4
    packet = struct.pack("!BBH", 0x80 | (draw.u8() & 0x1F), draw.choice((200, 201, 205, 206)), words)
    packet += body.ljust(words * 4, b"\0")
    return peer.protect_rtcp(packet)


def _datagram(t: WebRtcTransport, draw: Draw, peer: SrtpContext) -> bytes:
    mode = draw.u8() % 6
    if mode == 0:
        return _ice_check(t, draw)
    if mode == 1:
        return _rtp(draw, peer)
    if mode == 2:
        return _rtcp(draw, peer)
    if mode == 3:  # a valid first byte of one range, then anything
        first = draw.choice((0, 1, 20, 22, 23, 63, 128, 191, 64, 127, 192, 255))
        return bytes((first,)) + draw.take(draw.below(200))
    return draw.take(draw.below(1600))


def _expected(t: WebRtcTransport, data: bytes, selected: bool, valid: bool) -> set[str]:
    """The counters one of which must move (by exactly one)."""
    b0 = data[0]
    if b0 < 4:
        return {"stun_in"}
    if selected:
        if 128 <= b0 <= 191:
            return {"media_before_srtp", "srtp_errors", "srtcp_in", "forwarded"}
        return {"dtls_in"} if 20 <= b0 <= 63 else {"not_demuxed"}
    if 20 <= b0 <= 63 and valid:
        return {"dtls_in"}
    return {"strangers"}


def _deliver(t: WebRtcTransport, data: bytes, addr: tuple) -> None:
    before = _counts(t)
    selected = addr == t.ice.selected_tuple
    valid = t.ice.is_valid_tuple(addr)
    state = (t.ice.state, t.ice.selected_tuple, t.dtls.state)
    n = len(data)
    t._buf[:n] = data
    if selected:
        t._on_selected(n)
    else:
        t._on_datagram_from(n, addr)
    t._forwarder.after_drain()
    after = _counts(t)
    moved = {k for k in after if after[k] != before[k]}
    expected = _expected(t, data, selected, valid)
    if "srtcp_in" in moved:  # SRTCP also counts as the forwarder's RTCP input
        moved.discard("forwarded")
    assert len(moved) == 1 and moved <= expected, (moved, expected, data[:16].hex())
    (name,) = moved
    assert after[name] == before[name] + 1
    if not valid and not selected and data[0] >= 4:
        assert (t.ice.state, t.ice.selected_tuple, t.dtls.state) == state


async def _run(data: bytes) -> None:
    draw = Draw(data)
    room = Room("fuzz-demux", shapes.MEDIA_CODECS, _SERVICES)
    room.start()
    try:
        await room.submit(lambda: _setup(room))
        bob = room.peers["bob"]
        (cid,) = bob.consumers
        await room.submit(
            lambda: room.handle_client_message(
                "bob", {"method": "enableConsumer", "target": "peer", "id": cid, "transportId": 3}, notification=False
            )
        )
        worker = _SERVICES.worker
        transports = [
            worker.router.transports[room.peers[name].transports[tid].gid]
            for name, tid in (("alice", 1), ("bob", 3))
        ]
        peer = SrtpContext(AES128_CM_SHA1_80, REMOTE_KEY, LOCAL_KEY)
        for _ in range(draw.below(16) + 1):
            if not draw.remaining:
                break
            t = draw.choice(transports)
            if t.closed:
                continue
            if t.srtp is None and draw.u8() < 64:
                t.srtp = SrtpContext(AES128_CM_SHA1_80, LOCAL_KEY, REMOTE_KEY)
            addr = draw.choice(ADDRS)
            datagram = _datagram(t, draw, peer)
            if datagram:
                _deliver(t, datagram, addr)
    finally:
        await room.submit(room.close)
        for tid in list(_SERVICES.worker.router.transports):
            _SERVICES.worker._drop_transport(_SERVICES.worker.router.transports[tid])


def fuzz_one(data: bytes) -> None:
    _LOOP.run_until_complete(_run(data))
