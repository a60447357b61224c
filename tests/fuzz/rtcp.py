"""RTCP: workers/rtp/rtcp.py parse() of any datagram, and its writers read back by parse().

Properties: parse() returns a Feedback or raises ValueError, nothing else; what it returns is
in range (SSRCs 32 bits, sequence numbers 16 bits, fraction 0..255, cumulative loss signed 24
bits); iter_compound() tiles the datagram with packets it then reads; and the packets the
worker writes (PLI, FIR, NACK, SR, RR, REMB) built from numbers taken from the input parse
back to what was written (NACK: the same set of sequence numbers; REMB: the bitrate within
the precision of its 18-bit mantissa).
"""

from __future__ import annotations

from tureen.workers.rtp import rtcp

from .harness import Draw

U32 = 0xFFFFFFFF


def _check_parse(data: bytes) -> None:
    try:
        fb = rtcp.parse(data)
    except ValueError:
        return
    ends = [end for _, _, _, end in rtcp.iter_compound(data)]
    assert (ends[-1] if ends else 0) == len(data)
    for ssrc, kind in fb.key_frame_requests:
        assert 0 <= ssrc <= U32 and kind in (rtcp.PSFB_PLI, rtcp.PSFB_FIR)
    for ssrc, seqs in fb.nacks:
        assert 0 <= ssrc <= U32 and seqs and all(0 <= s <= 0xFFFF for s in seqs)
    for ssrc, ntp, ts in fb.sender_reports:
        assert 0 <= ssrc <= U32 and 0 <= ntp < 1 << 64 and 0 <= ts <= U32
    for ssrc, fraction, lost, ext_seq, jitter, lsr, dlsr in fb.report_blocks:
        assert 0 <= fraction <= 255 and -(1 << 23) <= lost < 1 << 23
        assert all(0 <= v <= U32 for v in (ssrc, ext_seq, jitter, lsr, dlsr))
    for bitrate, ssrcs in fb.rembs:
        assert bitrate >= 0 and all(0 <= s <= U32 for s in ssrcs)


def _check_writers(draw: Draw) -> None:
    a, b = draw.u32(), draw.u32()
    seqs = [draw.u16() if draw.flag() else (a + draw.u8()) & 0xFFFF for _ in range(draw.below(40) + 1)]
    blocks = [
        (draw.u32(), draw.u8(), draw.u32() % (1 << 24) - (1 << 23), draw.u32(), draw.u32(), draw.u32(), draw.u32())
        for _ in range(draw.below(4))
    ]
    bitrate = draw.uint(6)
    remb_ssrcs = [draw.u32() for _ in range(draw.below(5))]
    ntp = draw.uint(8)
    compound = b"".join(
        (
            rtcp.sr(a, ntp, b, draw.u32(), draw.u32()),
            rtcp.rr(b, blocks),
            rtcp.pli(a, b),
            rtcp.fir(a, b, draw.u8()),
            rtcp.nack(a, b, seqs),
            rtcp.remb(a, bitrate, remb_ssrcs),
        )
    )
    fb = rtcp.parse(compound)
    assert fb.sender_reports == [(a, ntp, b)]
    assert fb.report_blocks == blocks
    assert fb.key_frame_requests == [(b, rtcp.PSFB_PLI), (b, rtcp.PSFB_FIR)]
    assert len(fb.nacks) == 1 and fb.nacks[0][0] == b
    assert set(fb.nacks[0][1]) == set(seqs)
    ((got_rate, got_ssrcs),) = fb.rembs
    assert got_ssrcs == remb_ssrcs
    assert got_rate <= bitrate and (bitrate - got_rate) <= bitrate >> 17


def fuzz_one(data: bytes) -> None:
    _check_parse(data)
    _check_writers(Draw(data[::-1]))
