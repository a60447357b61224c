"""Key-frame detection in RTP payloads, per codec: where a simulcast consumer may switch.

Each checker takes (buf, start, end) — the RTP payload is buf[start:end] — and says whether
the packet begins a key frame. They only read; any malformed payload is "not a key frame".

- VP8 (RFC 7741): payload descriptor (X|R|N|S|R|PID, then optional I/L/T/K bytes); a key
  frame starts where S=1 and PID=0 and the first payload header byte has P (bit 0) clear.
- VP9 (draft-ietf-payload-vp9): descriptor I|P|L|F|B|E|V|Z; a key frame starts with B=1 and
  P=0 (not inter-predicted) in the spatial layer 0 packet.
- H264 (RFC 6184): an IDR slice (NAL type 5) or SPS (7) alone, in a STAP-A (24), or as the
  start of an FU-A (28).
Other codecs have no checker: a switch happens at once (PROTOCOL.md: "others at once").
"""

from __future__ import annotations

from collections.abc import Callable

KeyFrameCheck = Callable[[bytes | bytearray | memoryview, int, int], bool]


def vp8_key_frame(buf: bytes | bytearray | memoryview, start: int, end: int) -> bool:
    if end - start < 2:
        return False
    b = buf[start]
    if not b & 0x10 or b & 0x0F:  # S must be set, PID 0
        return False
    i = start + 1
    if b & 0x80:  # X: extension byte I|L|T|K
        x = buf[i]
        i += 1
        if x & 0x80:  # I: picture id, 7 or 15 bits
            if i >= end:
                return False
            i += 2 if buf[i] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            i += 1
        if x & 0x30:  # T or K: TID|Y|KEYIDX
            i += 1
    return i < end and not buf[i] & 0x01


def vp9_key_frame(buf: bytes | bytearray | memoryview, start: int, end: int) -> bool:
    if end - start < 1:
        return False
    b = buf[start]
    return bool(b & 0x08) and not b & 0x40  # B set (start of frame), P clear


def h264_key_frame(buf: bytes | bytearray | memoryview, start: int, end: int) -> bool:
    if end - start < 1:
        return False
    nal = buf[start] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: [size(2) NALU]...
        i = start + 1
        while i + 2 < end:
            size = buf[i] << 8 | buf[i + 1]
            if size == 0 or i + 2 + size > end:
                return False
            if buf[i + 2] & 0x1F in (5, 7):
                return True
            i += 2 + size
        return False
    if nal == 28 and end - start >= 2:  # FU-A: start bit and the fragmented NAL's type
        fu = buf[start + 1]
        return bool(fu & 0x80) and fu & 0x1F in (5, 7)
    return False


CHECKERS: dict[str, KeyFrameCheck] = {
    "video/vp8": vp8_key_frame,
    "video/vp9": vp9_key_frame,
    "video/h264": h264_key_frame,
}


def key_frame_checker(mime_type: str) -> KeyFrameCheck | None:
    """The checker for a codec's mimeType (case-insensitive), or None: switch at once."""
    return CHECKERS.get(mime_type.lower())
