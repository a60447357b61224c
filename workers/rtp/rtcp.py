"""RTCP packets the worker reads and writes (RFC 3550, RFC 4585, RFC 5104), sans-I/O.

A compound RTCP datagram is a run of packets, each with the common header

     0                   1                   2                   3
    |V=2|P|  count  |      PT       |             length            |

where `length` is the packet's size in 32-bit words minus one, and `count` is the report
count (SR, RR, SDES, BYE) or the feedback message type FMT (RTPFB 205, PSFB 206).

What the worker needs from them (for now): the key-frame requests of a receiver — PLI (PSFB
FMT 1, media SSRC in the header) and FIR (PSFB FMT 4, one SSRC per FCI entry) — so that it
can ask the producer of that consumer for a key frame; and building PLI/FIR itself towards a
producer (a consumer starts, a receiver asks).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

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


def key_frame_requests(data: bytes | memoryview) -> list[int]:
    """Media SSRCs a compound RTCP datagram asks key frames for (PLI and FIR), in order.

    Malformed input raises ValueError (callers count and drop the datagram).
    """
    ssrcs: list[int] = []
    for pt, fmt, start, end in iter_compound(data):
        if pt != PSFB:
            continue
        if fmt == PSFB_PLI:
            if end - start < 12:
                raise ValueError("RTCP: PLI shorter than 12 bytes")
            ssrcs.append(_SSRC_PAIR.unpack_from(data, start + 4)[1])
        elif fmt == PSFB_FIR:
            # FCI entries of 8 bytes after the 12-byte header: SSRC, seq nr, 3 reserved.
            for pos in range(start + 12, end - 7, 8):
                ssrcs.append(int.from_bytes(data[pos : pos + 4], "big"))
    return ssrcs


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
