"""STUN: the ICE-lite agent (workers/transport/ice_lite.py) fed arbitrary datagrams.

An input is a run of steps; each step is a datagram (raw input bytes, a well-formed check
built from input numbers, or such a check with input-chosen bytes changed) from one of a few
addresses (UDP v4/v6, ICE-TCP), at an input-chosen time, or a consent check. Properties:
handle_stun never raises; an answer is a STUN message with the request's transaction id and
either a Binding success (XOR-MAPPED-ADDRESS = the sender, MESSAGE-INTEGRITY with the local
password) or a 400/401 error; a tuple becomes valid only through a request whose
MESSAGE-INTEGRITY is right under the local password and whose USERNAME starts with the local
ufrag; the selected tuple is always a valid one; at most MAX_TUPLES tuples are kept.
"""

from __future__ import annotations

import struct

from aioice import stun
from tureen.workers.transport.ice_lite import MAX_TUPLES, IceLiteServer

from .harness import Draw

ADDRS = (
    ("192.0.2.2", 50000),
    ("192.0.2.2", 50001),
    ("2001:db8::7", 40000),
    ("192.0.2.3", 50000, "tcp"),
)
UFRAG = "f" * 16
PASSWORD = "p" * 32
ATTRS = ("USERNAME", "PRIORITY", "ICE-CONTROLLING", "ICE-CONTROLLED", "USE-CANDIDATE")


def _server() -> IceLiteServer:
    server = IceLiteServer()
    # Fixed credentials: an input replays the same way every time.
    server.usernameFragment, server.password, server._key = UFRAG, PASSWORD, PASSWORD.encode()
    return server


def _check(draw: Draw) -> bytes:
    """A check as a browser would send it, with input-chosen omissions and wrong values."""
    flags = draw.u8()
    attributes: dict = {}
    if not flags & 1:
        ufrag = UFRAG if not flags & 2 else draw.take(draw.below(20)).decode("ascii", "replace")
        attributes["USERNAME"] = f"{ufrag}:{'bRoW' if not flags & 4 else ''}"
    if not flags & 8:
        attributes["PRIORITY"] = draw.u32()
    attributes["ICE-CONTROLLING"] = draw.uint(8)
    if flags & 16:
        attributes["USE-CANDIDATE"] = None
    method = stun.Method.BINDING if draw.u8() < 230 else stun.Method.ALLOCATE
    cls = (stun.Class.REQUEST, stun.Class.REQUEST, stun.Class.INDICATION, stun.Class.RESPONSE)[
        draw.u8() % 4
    ]
    msg = stun.Message(method, cls, transaction_id=draw.take(12).ljust(12, b"\0"), attributes=attributes)
    if not flags & 32:
        msg.add_message_integrity((PASSWORD if not flags & 64 else "wrong").encode())
    elif not flags & 128:
        msg.add_fingerprint()
    return bytes(msg)


def _datagram(draw: Draw) -> bytes:
    mode = draw.u8() % 4
    if mode == 0:
        return draw.take(draw.u8())
    data = bytearray(_check(draw))
    if mode == 3:  # damage a few bytes (lengths, types, the HMAC, the CRC)
        for _ in range(draw.below(4) + 1):
            data[draw.below(len(data))] = draw.u8()
    elif mode == 2 and draw.flag():  # an unknown comprehension-optional attribute before MI
        data[20:20] = struct.pack("!HHI", 0xC057, 4, draw.u32())
        data[2:4] = struct.pack("!H", len(data) - 20)
    return bytes(data)


def _verify(data: bytes, addr: tuple, response: bytes | None, became_valid: bool) -> None:
    if response is not None:
        msg = stun.parse_message(response)  # FINGERPRINT right, else this raises
        request = stun.parse_message(data)
        assert msg.transaction_id == request.transaction_id
        if msg.message_class == stun.Class.RESPONSE:
            assert msg.attributes["XOR-MAPPED-ADDRESS"] == (addr[0], addr[1])
            assert msg.check_message_integrity(PASSWORD.encode())
        else:
            assert msg.message_class == stun.Class.ERROR
            assert msg.attributes["ERROR-CODE"][0] in (400, 401)
    if became_valid:
        request = stun.parse_message(data)
        assert request.message_class == stun.Class.REQUEST
        assert request.message_method == stun.Method.BINDING
        assert request.attributes["USERNAME"].startswith(UFRAG + ":")
        assert request.check_message_integrity(PASSWORD.encode())
        assert response is not None


def fuzz_one(data: bytes) -> None:
    draw = Draw(data)
    server = _server()
    now = 0.0
    for _ in range(draw.below(8) + 1):
        now += draw.u16() / 1000
        addr = draw.choice(ADDRS)
        if draw.u8() < 16:
            server.check_timeout(now)
        else:
            datagram = _datagram(draw)
            seen = server._tuples.get(addr)
            response, _events = server.handle_stun(datagram, addr, now)
            became_valid = server._tuples.get(addr, seen) != seen
            _verify(datagram, addr, response, became_valid)
        assert len(server.tuples) <= MAX_TUPLES
        assert server.selected_tuple is None or server.is_valid_tuple(server.selected_tuple)
        assert (server.selected_tuple is None) == (server.state in ("new", "disconnected"))
