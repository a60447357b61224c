"""RTP parsing and rewriting: shared/rtp/packet.py, workers/rtp/{codecs,retransmit,consumer}.py.

One input is one datagram (its first byte also picks extension-id maps and rewrite numbers
from the tail, see below). Properties:
- header_length / RtpPacket.parse / rewrite_extension_ids raise ValueError or agree with each
  other: the same payload offset, the same padding, a parse that serializes back to the
  datagram (padding bytes other than the count are not kept: compared as zeros);
- rewrite_extension_ids keeps the length and every byte outside the extension block, and the
  rewritten block holds exactly the mapped elements;
- the key-frame checkers never read past `end` and return a bool;
- RTX wrap (rtx_packet) then unwrap (unwrap_rtx) gives back the original sequence number and
  payload, and resend() changes only seq/ts/ssrc;
- a consumer's output sequence numbers stay continuous across interrupt()/resync().
"""

from __future__ import annotations

from tureen.shared.rtp.packet import (
    HEADER_SIZE,
    ONE_BYTE_MAX_ID,
    ONE_BYTE_PROFILE,
    RtpPacket,
    header_length,
    is_two_byte_profile,
    parse_extensions,
    rewrite_extension_ids,
)
from tureen.workers.rtp.codecs import BARE_KEY_FRAME_CHECKERS, CHECKERS
from tureen.workers.rtp.consumer import ConsumerRewrite
from tureen.workers.rtp.retransmit import new_store, resend, rtx_packet, stored, unwrap_rtx

from .harness import Draw


def _normalized(data: bytes) -> bytes:
    """The datagram with its padding bytes (but the count) zeroed, as serialize() writes them."""
    if len(data) >= HEADER_SIZE and data[0] & 0x20 and data[-1]:
        pad = data[-1]
        return data[:-pad] + bytes(pad - 1) + data[-1:]
    return data


def _check_parse(data: bytes) -> int | None:
    n = len(data)
    try:
        offset = header_length(data, n)
    except ValueError:
        offset = None
    try:
        packet = RtpPacket.parse(data)
    except ValueError:
        assert offset is None, "parse refused what header_length accepted"
        return None
    assert offset is not None, "parse accepted what header_length refused"
    assert HEADER_SIZE <= offset <= n
    assert offset + packet.padding_size <= n
    assert packet.serialize() == _normalized(data)
    return offset


def _check_rewrite(data: bytes, offset: int, draw: Draw) -> None:
    n = len(data)
    id_map = bytes(draw.u8() if draw.flag() else i for i in range(256))
    buf = bytearray(data) + bytes(draw.below(8))  # the buffer may be longer than the datagram
    packet = RtpPacket.parse(data)
    try:
        elements = packet.extensions
    except ValueError:
        elements = None
    try:
        got = rewrite_extension_ids(buf, n, id_map)
    except ValueError:
        assert elements is None, "rewrite refused an extension block parse accepts"
        return
    assert elements is not None, "rewrite accepted an extension block parse refuses"
    assert got == offset
    assert len(buf) >= n
    if packet.extension_profile is None:
        assert buf[:n] == data
        return
    start = HEADER_SIZE + 4 * len(packet.csrcs)
    assert buf[: start + 4] == data[: start + 4] and buf[offset:n] == data[offset:n]
    after = parse_extensions(packet.extension_profile, bytes(buf[start + 4 : offset]))
    one_byte = packet.extension_profile == ONE_BYTE_PROFILE
    two_byte = is_two_byte_profile(packet.extension_profile)
    if not (one_byte or two_byte):
        assert buf[:n] == data
        return
    expected = [
        (id_map[i], v)
        for i, v in elements
        if id_map[i] != 0 and (two_byte or id_map[i] <= ONE_BYTE_MAX_ID)
    ]
    assert after == expected, (after, expected)


def _check_key_frames(data: bytes, offset: int) -> None:
    n = len(data)
    end = n - data[-1] if data[0] & 0x20 else n
    tight = data[:end]  # indexing past `end` raises here
    for check in (*CHECKERS.values(), *BARE_KEY_FRAME_CHECKERS.values()):
        got = check(data + b"\x01\xff" * 8, offset, end)
        assert isinstance(got, bool)
        assert check(tight, offset, end) is got


def _check_rtx(data: bytes, offset: int, draw: Draw) -> None:
    seq, ts, ssrc, pt, rtx_seq = draw.u16(), draw.u32(), draw.u32(), draw.u8() & 0x7F, draw.u16()
    n = len(data)
    end = n - data[-1] if data[0] & 0x20 else n
    out = rtx_packet(data, seq, ts, ssrc, pt, rtx_seq)
    assert header_length(out, len(out)) == offset
    assert out[1] & 0x7F == pt and out[1] & 0x80 == data[1] & 0x80
    buf = bytearray(out) + bytes(4)
    osn, m = unwrap_rtx(buf, len(out))
    assert osn == seq
    assert bytes(buf[offset:m]) == data[offset:end]
    again = resend(data, seq, ts, ssrc)
    assert len(again) == n and again[:2] == data[:2] and again[12:] == data[12:]
    store = new_store()
    store[seq & 1023] = bytes(again)
    assert stored(store, seq) is not None and stored(store, seq ^ 0x400) is None


def _check_consumer(draw: Draw) -> None:
    """Output seqs continue at last + 1 after every break, whatever the input seqs do."""
    c = ConsumerRewrite(1, 1234)
    last_out = None
    seq, ts = draw.u16(), draw.u32()
    for _ in range(draw.below(24)):
        op = draw.u8() % 4
        if op == 0 and last_out is not None:
            # The highest input seq fed so far (interrupt's contract) is the one of last_out.
            c.interrupt((last_out - c.seq_offset) & 0xFFFF, ts, rebase_ts=draw.flag())
        else:
            seq = (seq + draw.u16() - 0x8000 if op == 1 else seq + 1) & 0xFFFF
            ts = (ts + draw.u32()) & 0xFFFFFFFF
            was_sync = c.sync
            if c.sync:
                c.resync(seq, ts)
            out = c.out_seq(seq)
            if was_sync and last_out is not None:
                assert out == (last_out + 1) & 0xFFFF, (out, last_out)
            if last_out is None or was_sync or ((out - last_out) & 0xFFFF) < 0x8000:
                last_out = out
            assert 0 <= c.out_ts(ts) <= 0xFFFFFFFF


def fuzz_one(data: bytes) -> None:
    # The datagram is the whole input; numbers for the rewrites come from a reader over it.
    draw = Draw(data[::-1])
    offset = _check_parse(data)
    if offset is not None:
        _check_rewrite(data, offset, draw)
        _check_key_frames(data, offset)
        _check_rtx(data, offset, draw)
    _check_consumer(draw)
