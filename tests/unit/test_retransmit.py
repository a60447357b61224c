"""Retransmission store and RTX (RFC 4588) wrapping/unwrapping."""

from __future__ import annotations

import pytest
from tureen.shared.rtp.packet import RtpPacket
from tureen.workers.rtp import retransmit


def packet(seq: int, payload: bytes = b"\x10" * 50, padding: int = 0) -> bytes:
    p = RtpPacket(payload_type=101, sequence_number=seq, timestamp=9000, ssrc=0x1234, payload=payload)
    data = bytearray(p.serialize())
    if padding:
        data[0] |= 0x20
        data += bytes(padding - 1) + bytes([padding])
    return bytes(data)


def test_store_finds_only_the_exact_sequence_number() -> None:
    store = retransmit.new_store()
    store[5 & retransmit.STORE_MASK] = packet(5)
    assert retransmit.stored(store, 5) == packet(5)
    assert retransmit.stored(store, 5 + retransmit.STORE_SIZE) is None  # overwritten slot
    assert retransmit.stored(store, 6) is None


def test_rtx_wrap_and_unwrap_round_trip_drops_padding() -> None:
    original = packet(700, padding=4)
    rtx = retransmit.rtx_packet(original, 31000, 123456, rtx_ssrc=0x5555, rtx_pt=102, rtx_seq=9)
    parsed = RtpPacket.parse(bytes(rtx))
    assert (parsed.payload_type, parsed.sequence_number, parsed.timestamp, parsed.ssrc) == (102, 9, 123456, 0x5555)
    assert parsed.payload == (31000).to_bytes(2, "big") + b"\x10" * 50
    buf = bytearray(rtx) + bytearray(100)
    osn, n = retransmit.unwrap_rtx(buf, len(rtx))
    assert osn == 31000 and RtpPacket.parse(bytes(buf[:n])).payload == b"\x10" * 50


def test_resend_rewrites_only_the_header() -> None:
    out = RtpPacket.parse(bytes(retransmit.resend(packet(1), 2, 3, 4)))
    assert (out.sequence_number, out.timestamp, out.ssrc, out.payload) == (2, 3, 4, b"\x10" * 50)


def test_padding_only_rtx_is_refused() -> None:
    probe = bytearray(packet(1, payload=b"", padding=20))
    with pytest.raises(ValueError):
        retransmit.unwrap_rtx(probe, len(probe))
