"""Key-frame detection in RTP payloads, per codec: the packets a decoder can start on.

A consumer that starts (first packet, resume, simulcast switch, a new consumer fed by a pipe)
is fed from such a packet on and nothing before it (docs/media-quality.md, "Where a consumer
starts"). Each checker takes (buf, start, end) — the RTP payload is buf[start:end] — and
says whether the packet begins a key frame. They only read; any malformed payload is "not a
key frame".

- VP8 (RFC 7741): payload descriptor (X|R|N|S|R|PID, then optional I/L/T/K bytes); a key
  frame starts where S=1 and PID=0 and the first payload header byte has P (bit 0) clear.
- VP9 (draft-ietf-payload-vp9): descriptor I|P|L|F|B|E|V|Z; a key frame starts with B=1 and
  P=0 (not inter-predicted) in the spatial layer 0 packet.
- H264 (RFC 6184): the packet carrying the key frame's SPS (NAL type 7): alone, in a STAP-A
  (24), or as the start of an FU-A/FU-B (28/29), as mediasoup v2's H264.cpp has it. An IDR
  slice (5) is not a start: its SPS and PPS went by before it, and a decoder fed from the IDR
  on has no parameter sets ("non-existing PPS 0 referenced"). libx264 with its defaults, sent
  by ffmpeg over RTP, puts SPS and PPS in a STAP-A before every IDR (x264 repeats its headers
  unless the muxer wants global headers); a PPS alone is no start either (it names an SPS).
  A sender that keeps its parameter sets out of band (ffmpeg `-flags +global_header`: only in
  the SDP's sprop-parameter-sets) never sends an SPS: `h264_idr_start` finds its IDRs, which
  the forwarder accepts only under the conditions of `BARE_KEY_FRAME_CHECKERS`.
Other codecs have no checker: every packet is a start (audio: each packet decodes by itself;
other video codecs switch at once, docs/internals.md "Simulcast in the worker").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

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


def _h264_starts_nal(buf: bytes | bytearray | memoryview, start: int, end: int, wanted: int) -> bool:
    """Whether the H264 payload carries the start of a NAL unit of type `wanted`: as a single
    NAL unit packet, inside a STAP-A, or as the first fragment of an FU-A/FU-B."""
    if end - start < 1:
        return False
    nal = buf[start] & 0x1F
    if nal == wanted:
        return True
    if nal == 24:  # STAP-A: [size(2) NALU]...
        i = start + 1
        while i + 2 < end:
            size = buf[i] << 8 | buf[i + 1]
            if size == 0 or i + 2 + size > end:
                return False
            if buf[i + 2] & 0x1F == wanted:
                return True
            i += 2 + size
        return False
    if nal in (28, 29) and end - start >= 2:  # FU-A/B: start bit and the fragmented NAL's type
        fu = buf[start + 1]
        return bool(fu & 0x80) and fu & 0x1F == wanted
    return False


def h264_key_frame(buf: bytes | bytearray | memoryview, start: int, end: int) -> bool:
    """The packet carries an SPS (NAL 7): where a key frame with in-band parameter sets
    starts."""
    return _h264_starts_nal(buf, start, end, 7)


def h264_idr_start(buf: bytes | bytearray | memoryview, start: int, end: int) -> bool:
    """The packet begins an IDR slice (NAL 5). A start only for a sender that keeps its
    parameter sets out of band (see BARE_KEY_FRAME_CHECKERS)."""
    return _h264_starts_nal(buf, start, end, 5)


CHECKERS: dict[str, KeyFrameCheck] = {
    "video/vp8": vp8_key_frame,
    "video/vp9": vp9_key_frame,
    "video/h264": h264_key_frame,
}


# Key frames that lack what a decoder needs before them when the sender sends it in band, and
# are a start only for a sender that never does: an H264 IDR slice whose access unit (one RTP
# timestamp) was seen from its beginning with no SPS in it, on a stream where no SPS was ever
# seen (forward.py `_maybe_switch`). A sender with in-band SPS whose SPS packet was lost
# therefore waits for the next key frame instead of starting its consumers on a broken one.
BARE_KEY_FRAME_CHECKERS: dict[str, KeyFrameCheck] = {
    "video/h264": h264_idr_start,
}


class StartCheck(NamedTuple):
    """How the forwarder finds a decoder start point in a codec's packets."""

    key_frame: KeyFrameCheck
    bare_key_frame: KeyFrameCheck | None = None


def key_frame_checker(mime_type: str) -> KeyFrameCheck | None:
    """The checker for a codec's mimeType (case-insensitive), or None: switch at once."""
    return CHECKERS.get(mime_type.lower())


def start_check(mime_type: str) -> StartCheck | None:
    """Both checks for a codec's mimeType (case-insensitive), or None: every packet is a
    start (audio, and video codecs without a checker)."""
    mime = mime_type.lower()
    key = CHECKERS.get(mime)
    return None if key is None else StartCheck(key, BARE_KEY_FRAME_CHECKERS.get(mime))
