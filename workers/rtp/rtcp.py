"""RTCP packets the worker reads and writes (RFC 3550, RFC 4585, RFC 5104), sans-I/O.

A compound RTCP datagram is a run of packets, each with the common header

     0                   1                   2                   3
    |V=2|P|  count  |      PT       |             length            |

where `length` is the packet's size in 32-bit words minus one, and `count` is the report
count (SR, RR, SDES, BYE) or the feedback message type FMT (RTPFB 205, PSFB 206).

Reading: `parse()` walks a datagram once into a `Feedback`: key-frame requests (PLI, FIR),
generic NACKs, sender reports, report blocks (of SRs and RRs) and REMB (RFC 4585, RFC 5104,
draft-alvestrand-rmcat-remb); malformed input raises ValueError. Writing: PLI and FIR
towards a producer's sender, NACK for what a receiver lost and the worker does not have, RR
and REMB every second, an SR per consumer every second (RFC 3550 6.4), and the SDES CNAME
chunk that every compound packet carries (RFC 3550 6.1, 6.5). `compound()` puts them in the
order RFC 3550 6.1 requires: a report first, then SDES, then feedback.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

SR = 200
RR = 201
SDES = 202
BYE = 203
APP = 204
RTPFB = 205
PSFB = 206

PSFB_PLI = 1
PSFB_FIR = 4
RTPFB_NACK = 1

_HEADER = struct.Struct("!BBH")
_SSRC_PAIR = struct.Struct("!II")


def iter_compound(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """(pt, count/fmt, start, end) of each packet of a compound RTCP datagram.

    Raises ValueError on the first packet that is malformed (wrong version, a length
    running past the datagram); the packets before it have been yielded.
    """
    size = len(data)
    pos = 0
    while pos < size:
        if size - pos < 4:
            raise ValueError(f"RTCP: {size - pos} trailing bytes are no packet header")
        b0, pt, words = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise ValueError(f"RTCP: version {b0 >> 6} at offset {pos}")
        end = pos + (words + 1) * 4
        if end > size:
            raise ValueError(f"RTCP: packet at offset {pos} claims {end - pos} bytes of {size - pos}")
        yield pt, b0 & 0x1F, pos, end
        pos = end


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """A Picture Loss Indication (RFC 4585 section 6.3.1): 12 bytes."""
    return _HEADER.pack(0x80 | PSFB_PLI, PSFB, 2) + _SSRC_PAIR.pack(sender_ssrc, media_ssrc)


def fir(sender_ssrc: int, media_ssrc: int, seq_nr: int) -> bytes:
    """A Full Intra Request (RFC 5104 section 4.3.1) with one FCI entry: 20 bytes.

    The header's media SSRC is 0 as the RFC says; the target is in the FCI.
    """
    return (
        _HEADER.pack(0x80 | PSFB_FIR, PSFB, 4)
        + _SSRC_PAIR.pack(sender_ssrc, 0)
        + struct.pack("!IB3x", media_ssrc, seq_nr & 0xFF)
    )


# -- NACK (RFC 4585 section 6.2.1) -----------------------------------------------------------


def nack(sender_ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """A Generic NACK for `seqs` (any order), packed into as few PID/BLP entries as fit."""
    fci = bytearray()
    pending = sorted({s & 0xFFFF for s in seqs})
    if pending and pending[-1] - pending[0] > 0x8000:  # across the wrap: 65535 comes before 0
        pending = sorted(pending, key=lambda s: s + 0x10000 if s < 0x8000 else s)
    while pending:
        pid = pending.pop(0)
        blp = 0
        rest = []
        for s in pending:
            d = (s - pid) & 0xFFFF
            if 1 <= d <= 16:
                blp |= 1 << (d - 1)
            else:
                rest.append(s)
        pending = rest
        fci += struct.pack("!HH", pid, blp)
    words = 2 + len(fci) // 4
    return _HEADER.pack(0x80 | RTPFB_NACK, RTPFB, words) + _SSRC_PAIR.pack(sender_ssrc, media_ssrc) + bytes(fci)


# -- SR / RR (RFC 3550 section 6.4) ------------------------------------------------------------

_SR_INFO = struct.Struct("!IIIII")  # NTP msw, NTP lsw, RTP ts, packet count, octet count
_BLOCK = struct.Struct("!IIIIII")  # ssrc, fraction|cumulative lost, ext highest seq, jitter, LSR, DLSR


def sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    """A sender report without report blocks: 28 bytes."""
    return (
        _HEADER.pack(0x80, SR, 6)
        + ssrc.to_bytes(4, "big")
        + _SR_INFO.pack(ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    )


def rr(sender_ssrc: int, blocks: list[tuple[int, int, int, int, int, int, int]]) -> bytes:
    """A receiver report with up to 31 report blocks (RFC 3550 6.4.2); each block is
    (ssrc, fraction lost 0..255, cumulative lost, extended highest seq, jitter, LSR, DLSR)."""
    blocks = blocks[:31]
    body = b"".join(
        _BLOCK.pack(
            ssrc,
            ((fraction & 0xFF) << 24) | (max(-0x800000, min(0x7FFFFF, lost)) & 0xFFFFFF),
            ext_seq & 0xFFFFFFFF,
            jitter & 0xFFFFFFFF,
            lsr & 0xFFFFFFFF,
            dlsr & 0xFFFFFFFF,
        )
        for ssrc, fraction, lost, ext_seq, jitter, lsr, dlsr in blocks
    )
    return _HEADER.pack(0x80 | len(blocks), RR, 1 + 6 * len(blocks)) + sender_ssrc.to_bytes(4, "big") + body


# -- SDES (RFC 3550 section 6.5) ----------------------------------------------------------

SDES_END = 0
SDES_CNAME = 1
MAX_SDES_TEXT = 255  # an item's length is one octet


def sdes_cname(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one chunk: `ssrc` and its CNAME item (RFC 3550 6.5.1).

     0                   1                   2                   3
    |V=2|P|  SC=1   |  PT=SDES=202  |             length            |
    |                          SSRC/CSRC_1                          |
    |    CNAME=1    |     length    | user and domain name        ...
    ... then a null octet (END) and more nulls up to the next 32-bit boundary.

    The item list ends with 1 to 4 null octets, so a CNAME of 2 mod 4 bytes still gets
    four. Raises ValueError for an empty CNAME or one over 255 bytes of UTF-8."""
    text = cname.encode()
    if not text or len(text) > MAX_SDES_TEXT:
        raise ValueError(f"SDES: a CNAME is 1..{MAX_SDES_TEXT} bytes of UTF-8, got {len(text)}")
    items = bytes((SDES_CNAME, len(text))) + text
    items += bytes(4 - len(items) % 4)  # END and padding: 1..4 nulls
    chunk = ssrc.to_bytes(4, "big") + items
    return _HEADER.pack(0x80 | 1, SDES, len(chunk) // 4) + chunk


def sdes_cnames(data: bytes | memoryview) -> list[tuple[int, str]]:
    """(SSRC, CNAME) of every chunk with a CNAME in the SDES packets of a compound datagram.
    Raises ValueError when a chunk runs past its packet or an item has no END."""
    out: list[tuple[int, str]] = []
    for pt, count, start, end in iter_compound(data):
        if pt != SDES:
            continue
        pos = start + 4
        for _ in range(count):
            if pos + 4 > end:
                raise ValueError("SDES: chunk runs past its packet")
            ssrc = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
            while True:
                if pos >= end:
                    raise ValueError("SDES: item list without END")
                kind = data[pos]
                if kind == SDES_END:
                    pos = (pos + 4) & ~3  # nulls up to the next 32-bit boundary
                    break
                if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                    raise ValueError("SDES: item runs past its packet")
                if kind == SDES_CNAME:
                    out.append((ssrc, bytes(data[pos + 2 : pos + 2 + data[pos + 1]]).decode("utf-8", "replace")))
                pos += 2 + data[pos + 1]
    return out


def compound(report: bytes, cname_ssrc: int, cname: str, *feedback: bytes) -> bytes:
    """A compound RTCP packet as RFC 3550 6.1 wants it: `report` (an SR or RR; an RR without
    blocks when there is nothing to report), the SDES CNAME of `cname_ssrc`, then the
    feedback packets (RFC 4585 3.1: full compound, as mediasoup v2 sends it)."""
    return report + sdes_cname(cname_ssrc, cname) + b"".join(feedback)


_NTP_EPOCH = 2_208_988_800  # s from 1900-01-01 (NTP) to 1970-01-01 (Unix)


def ntp_now(unix: float | None = None) -> int:
    """The 64-bit NTP timestamp (RFC 3550 4) of the wall-clock time `unix` (default: now)."""
    t = time.time() if unix is None else unix
    seconds = int(t)
    return ((seconds + _NTP_EPOCH) & 0xFFFFFFFF) << 32 | int((t - seconds) * (1 << 32)) & 0xFFFFFFFF


def ntp_to_unix(ntp: int) -> float:
    return (ntp >> 32) - _NTP_EPOCH + (ntp & 0xFFFFFFFF) / (1 << 32)


# -- REMB (draft-alvestrand-rmcat-remb) -----------------------------------------------------


def remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    """Receiver Estimated Maximum Bitrate for the media `ssrcs`: PSFB FMT 15 'REMB'."""
    exp = 0
    mantissa = max(0, int(bitrate))
    while mantissa > 0x3FFFF:  # 18-bit mantissa
        mantissa >>= 1
        exp += 1
    ssrcs = ssrcs[:255]
    fci = b"REMB" + struct.pack("!BBH", len(ssrcs), (exp << 2) | (mantissa >> 16), mantissa & 0xFFFF)
    fci += b"".join(s.to_bytes(4, "big") for s in ssrcs)
    words = 2 + len(fci) // 4
    return _HEADER.pack(0x80 | 15, PSFB, words) + _SSRC_PAIR.pack(sender_ssrc, 0) + fci


# -- reading: one walk of a compound datagram ---------------------------------------------

ReportBlock = tuple[int, int, int, int, int, int, int]


@dataclass(slots=True)
class Feedback:
    """What a compound RTCP datagram says, per kind of packet, in datagram order.

    key_frame_requests  (media SSRC, PSFB_PLI or PSFB_FIR): PLI names the SSRC in its header,
                        FIR in each 8-byte FCI entry (SSRC, seq nr, 3 reserved)
    nacks               (media SSRC, lost sequence numbers): each FCI entry is PID (a lost
                        seq) and BLP (a bitmask of the 16 following ones)
    sender_reports      (SSRC, 64-bit NTP timestamp, RTP timestamp)
    report_blocks       of SRs and RRs, (ssrc, fraction lost 0..255, cumulative lost
                        (signed), extended highest seq, jitter, LSR, DLSR): what a receiver
                        says about a stream we send (RFC 3550 6.4.1)
    rembs               (bitrate in bps, media SSRCs): what a receiver says it can take
    """

    key_frame_requests: list[tuple[int, int]] = field(default_factory=list)
    nacks: list[tuple[int, list[int]]] = field(default_factory=list)
    sender_reports: list[tuple[int, int, int]] = field(default_factory=list)
    report_blocks: list[ReportBlock] = field(default_factory=list)
    rembs: list[tuple[int, list[int]]] = field(default_factory=list)


def parse(data: bytes | memoryview) -> Feedback:
    """Read every packet of a compound datagram the worker cares about, in one walk.

    Malformed input raises ValueError (callers count and drop the whole datagram).
    """
    fb = Feedback()
    for pt, count, start, end in iter_compound(data):
        if pt == PSFB:
            if count == PSFB_PLI:
                if end - start < 12:
                    raise ValueError("RTCP: PLI shorter than 12 bytes")
                fb.key_frame_requests.append((_SSRC_PAIR.unpack_from(data, start + 4)[1], PSFB_PLI))
            elif count == PSFB_FIR:
                for pos in range(start + 12, end - 7, 8):
                    fb.key_frame_requests.append((int.from_bytes(data[pos : pos + 4], "big"), PSFB_FIR))
            elif count == 15 and end - start >= 20 and bytes(data[start + 12 : start + 16]) == b"REMB":
                fb.rembs.append(_remb(data, start, end))
        elif pt == RTPFB and count == RTPFB_NACK:
            fb.nacks.append(_nack(data, start, end))
        elif pt == SR:
            if end - start < 28:
                raise ValueError("RTCP: SR shorter than 28 bytes")
            ssrc = int.from_bytes(data[start + 4 : start + 8], "big")
            msw, lsw, rtp_ts, _, _ = _SR_INFO.unpack_from(data, start + 8)
            fb.sender_reports.append((ssrc, (msw << 32) | lsw, rtp_ts))
            _blocks(data, start + 28, count, start, end, fb.report_blocks)  # after the sender info
        elif pt == RR:
            _blocks(data, start + 8, count, start, end, fb.report_blocks)
    return fb


def _nack(data: bytes | memoryview, start: int, end: int) -> tuple[int, list[int]]:
    if end - start < 16:
        raise ValueError("RTCP: NACK without an FCI entry")
    media_ssrc = _SSRC_PAIR.unpack_from(data, start + 4)[1]
    seqs: list[int] = []
    for pos in range(start + 12, end - 3, 4):
        pid, blp = struct.unpack_from("!HH", data, pos)
        seqs.append(pid)
        for bit in range(16):
            if blp >> bit & 1:
                seqs.append((pid + bit + 1) & 0xFFFF)
    return media_ssrc, seqs


def _blocks(data: bytes | memoryview, pos: int, count: int, start: int, end: int, out: list[ReportBlock]) -> None:
    if pos + 24 * count > end:
        raise ValueError(f"RTCP: {count} report blocks do not fit in {end - start} bytes")
    for _ in range(count):
        ssrc, lost_word, ext_seq, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:  # 24-bit two's complement (duplicates can make it negative)
            lost -= 0x1000000
        out.append((ssrc, lost_word >> 24, lost, ext_seq, jitter, lsr, dlsr))
        pos += 24


def _remb(data: bytes | memoryview, start: int, end: int) -> tuple[int, list[int]]:
    count = data[start + 16]
    exp = data[start + 17] >> 2
    mantissa = ((data[start + 17] & 0x03) << 16) | (data[start + 18] << 8) | data[start + 19]
    if start + 20 + 4 * count > end:
        raise ValueError("RTCP: REMB lists more SSRCs than it holds")
    ssrcs = [int.from_bytes(data[i : i + 4], "big") for i in range(start + 20, start + 20 + 4 * count, 4)]
    return mantissa << exp, ssrcs
