"""RTP packets (RFC 3550 section 5.1) with header extensions (RFC 8285), two views of them.

1. `RtpPacket`: a dataclass that parses and serializes a whole packet; for tests, tools and
   the control path. `RtpPacket.parse(data).serialize() == data` for any valid packet.
2. Offsets and in-place helpers for the data path (workers/forward.py), which never builds
   an object per packet: `header_length()` validates a header inside a reused buffer and
   returns where the payload starts; `rewrite_extension_ids()` does the same and rewrites
   the header-extension ids in place. The fixed fields sit at fixed offsets (PT at 1,
   sequence number at 2, timestamp at 4, SSRC at 8), so the forwarder rewrites them with one
   precompiled `Struct.pack_into`.

Header layout (RFC 3550 5.1):

     0                   1                   2                   3
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |           synchronization source (SSRC) identifier            |
    |            contributing source (CSRC) identifiers  (CC x 32)  |
    |  profile (0xBEDE or 0x100X)   |     length (32-bit words)     |   if X
    |                     extension elements ...                    |
    payload ... [padding, last byte = padding count]                    if P

Extension elements (RFC 8285): one-byte profile 0xBEDE: a byte `id << 4 | (len - 1)` then
len bytes, id 1..14, id 0 is a padding byte, id 15 ends the block. Two-byte profile
0x100X (X = 4 "appbits"): a byte id, a byte len, then len bytes; id 0 is a padding byte.
Padding bytes (0) may sit between and after elements.

Nothing here does I/O; every parse failure is a ValueError whose message says what is wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
HEADER_SIZE = 12  # fixed part

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000  # low 4 bits are "appbits"
TWO_BYTE_PROFILE_MASK = 0xFFF0

ONE_BYTE_MAX_ID = 14
ONE_BYTE_MAX_LEN = 16
TWO_BYTE_MAX_ID = 255
TWO_BYTE_MAX_LEN = 255

_FIXED = struct.Struct("!BBHII")


def is_rtcp_pt(second_byte: int) -> bool:
    """RFC 5761 section 4: with RTP/RTCP mux, a second byte of 192..223 is RTCP (PT 64..95
    once the marker bit is included)."""
    return 192 <= second_byte <= 223


def is_two_byte_profile(profile: int) -> bool:
    return profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE


def header_length(buf: bytes | bytearray | memoryview, n: int) -> int:
    """Validate the RTP header of buf[:n] and return the payload offset.

    Checks version, CSRC list, extension block and padding against the length `n`
    (the buffer may be larger than the datagram). Raises ValueError if malformed.
    """
    if n < HEADER_SIZE:
        raise ValueError(f"RTP packet of {n} bytes is shorter than the 12-byte header")
    b0 = buf[0]
    if b0 >> 6 != RTP_VERSION:
        raise ValueError(f"RTP version is {b0 >> 6}, expected 2")
    offset = HEADER_SIZE + ((b0 & 0x0F) << 2)
    if b0 & 0x10:
        if offset + 4 > n:
            raise ValueError(f"RTP header extension header at {offset} overruns {n} bytes")
        offset += 4 + (((buf[offset + 2] << 8) | buf[offset + 3]) << 2)
    if offset > n:
        raise ValueError(f"RTP header of {offset} bytes (CSRCs, extension) overruns {n} bytes")
    if b0 & 0x20:
        pad = buf[n - 1]
        if pad == 0 or offset + pad > n:
            raise ValueError(f"RTP padding count {pad} is invalid for {n - offset} bytes after the header")
    return offset


def payload_length(buf: bytes | bytearray | memoryview, n: int) -> int:
    """Length of the payload of the RTP packet buf[:n]: without the header (CSRCs, extension)
    and without the padding. RFC 3550's SR octet count adds these up. Raises ValueError if
    the header is malformed."""
    b0 = buf[0]
    if not b0 & 0x3F:
        return max(0, n - HEADER_SIZE)
    end = n - buf[n - 1] if b0 & 0x20 else n
    return end - header_length(buf, n)


def rewrite_extension_ids(buf: bytearray | memoryview, n: int, id_map: bytes) -> int:
    """Validate the header of buf[:n], remap its extension ids in place, return the payload offset.

    id_map has 256 entries: id_map[old] is the new id, 0 = drop. A dropped element (or one
    whose new id does not fit the one-byte form, > 14) is overwritten with padding bytes (0),
    which RFC 8285 lets a receiver skip, so the packet keeps its length. Blocks of other
    profiles are left untouched.
    """
    offset = header_length(buf, n)
    if not buf[0] & 0x10:
        return offset
    start = HEADER_SIZE + ((buf[0] & 0x0F) << 2)
    profile = (buf[start] << 8) | buf[start + 1]
    i = start + 4
    end = offset  # end of the extension block
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = buf[i]
            if b == 0:  # padding
                i += 1
                continue
            ext_id = b >> 4
            if ext_id == 15:  # RFC 8285 4.2: stop processing the block
                break
            size = (b & 0x0F) + 1
            if i + 1 + size > end:
                raise ValueError(f"one-byte header extension id {ext_id} overruns the extension block")
            new_id = id_map[ext_id]
            if new_id == 0 or new_id > ONE_BYTE_MAX_ID:
                buf[i : i + 1 + size] = bytes(1 + size)
            elif new_id != ext_id:
                buf[i] = (new_id << 4) | (b & 0x0F)
            i += 1 + size
    elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while i < end:
            ext_id = buf[i]
            if ext_id == 0:  # padding
                i += 1
                continue
            if i + 2 > end:
                raise ValueError(f"two-byte header extension id {ext_id} overruns the extension block")
            size = buf[i + 1]
            if i + 2 + size > end:
                raise ValueError(f"two-byte header extension id {ext_id} overruns the extension block")
            new_id = id_map[ext_id]
            if new_id == 0:
                buf[i : i + 2 + size] = bytes(2 + size)
            elif new_id != ext_id:
                buf[i] = new_id
            i += 2 + size
    return offset


def read_audio_level(buf: bytearray | memoryview, ext_id: int) -> int:
    """The level of the ssrc-audio-level element (RFC 6464) with id `ext_id` in the header of
    `buf`: 0..127, meaning -level dBov (127 = silence), the voice-activity bit left out; -1
    when the packet has no such element of one byte (as mediasoup v2 reads it).

    For the data path: the header must have been validated already (`header_length` or
    `rewrite_extension_ids`), and must have an extension block (X bit). A sender puts the
    level first in nearly every packet, so the scan usually stops at the first element.
    """
    start = HEADER_SIZE + ((buf[0] & 0x0F) << 2)
    i = start + 4
    end = i + (((buf[start + 2] << 8) | buf[start + 3]) << 2)
    if buf[start] == 0xBE and buf[start + 1] == 0xDE:
        while i < end:
            b = buf[i]
            if b == 0:
                i += 1
                continue
            if b >> 4 == ext_id:
                return buf[i + 1] & 0x7F if b & 0x0F == 0 else -1
            if b >> 4 == 15:
                break
            i += (b & 0x0F) + 2
    elif buf[start] == 0x10 and not buf[start + 1] & 0xF0:  # two-byte profile 0x100X
        while i + 1 < end:
            if buf[i] == 0:
                i += 1
                continue
            if buf[i] == ext_id:
                return buf[i + 2] & 0x7F if buf[i + 1] == 1 else -1
            i += buf[i + 1] + 2
    return -1


def parse_extensions(profile: int, data: bytes) -> list[tuple[int, bytes]]:
    """The (id, value) elements of an extension block body; [] for other profiles."""
    elements: list[tuple[int, bytes]] = []
    i, end = 0, len(data)
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = data[i]
            if b == 0:
                i += 1
                continue
            ext_id = b >> 4
            if ext_id == 15:
                break
            size = (b & 0x0F) + 1
            if i + 1 + size > end:
                raise ValueError(f"one-byte header extension id {ext_id} overruns the extension block")
            elements.append((ext_id, bytes(data[i + 1 : i + 1 + size])))
            i += 1 + size
    elif is_two_byte_profile(profile):
        while i < end:
            ext_id = data[i]
            if ext_id == 0:
                i += 1
                continue
            if i + 2 > end or i + 2 + data[i + 1] > end:
                raise ValueError(f"two-byte header extension id {ext_id} overruns the extension block")
            size = data[i + 1]
            elements.append((ext_id, bytes(data[i + 2 : i + 2 + size])))
            i += 2 + size
    return elements


def build_extensions(elements: list[tuple[int, bytes]], two_byte: bool = False) -> tuple[int, bytes]:
    """(profile, block body padded to 32 bits) for the given elements."""
    out = bytearray()
    if not two_byte:
        for ext_id, value in elements:
            if not 1 <= ext_id <= ONE_BYTE_MAX_ID:
                raise ValueError(f"one-byte header extension id {ext_id} is outside 1..14")
            if not 1 <= len(value) <= ONE_BYTE_MAX_LEN:
                raise ValueError(f"one-byte header extension value of {len(value)} bytes is outside 1..16")
            out.append((ext_id << 4) | (len(value) - 1))
            out += value
        profile = ONE_BYTE_PROFILE
    else:
        for ext_id, value in elements:
            if not 1 <= ext_id <= TWO_BYTE_MAX_ID:
                raise ValueError(f"two-byte header extension id {ext_id} is outside 1..255")
            if len(value) > TWO_BYTE_MAX_LEN:
                raise ValueError(f"two-byte header extension value of {len(value)} bytes exceeds 255")
            out += bytes((ext_id, len(value)))
            out += value
        profile = TWO_BYTE_PROFILE
    out += bytes(-len(out) % 4)
    return profile, bytes(out)


@dataclass
class RtpPacket:
    """A whole RTP packet. `extension_data` is the raw block body (after profile and length);
    `extensions` decodes it."""

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    csrcs: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension_data: bytes = b""
    payload: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        n = len(data)
        offset = header_length(data, n)
        b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data, 0)
        cc = b0 & 0x0F
        csrcs = list(struct.unpack_from(f"!{cc}I", data, HEADER_SIZE)) if cc else []
        profile = None
        ext = b""
        if b0 & 0x10:
            start = HEADER_SIZE + 4 * cc
            profile = (data[start] << 8) | data[start + 1]
            ext = bytes(data[start + 4 : offset])
        padding = data[n - 1] if b0 & 0x20 else 0
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(b1 & 0x80),
            csrcs=csrcs,
            extension_profile=profile,
            extension_data=ext,
            payload=bytes(data[offset : n - padding]),
            padding_size=padding,
        )

    @property
    def extensions(self) -> list[tuple[int, bytes]]:
        if self.extension_profile is None:
            return []
        return parse_extensions(self.extension_profile, self.extension_data)

    def set_extensions(self, elements: list[tuple[int, bytes]], two_byte: bool = False) -> None:
        self.extension_profile, self.extension_data = build_extensions(elements, two_byte)

    def serialize(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} is outside 0..127")
        if len(self.csrcs) > 15:
            raise ValueError(f"{len(self.csrcs)} CSRCs exceed the 15 an RTP header holds")
        if len(self.extension_data) % 4:
            raise ValueError("header extension data must be a multiple of 4 bytes")
        if not 0 <= self.padding_size <= 255:
            raise ValueError(f"padding of {self.padding_size} bytes is outside 0..255")
        b0 = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding_size:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        out = bytearray(
            _FIXED.pack(
                b0,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            )
        )
        for csrc in self.csrcs:
            out += struct.pack("!I", csrc)
        if self.extension_profile is not None:
            out += struct.pack("!HH", self.extension_profile, len(self.extension_data) // 4)
            out += self.extension_data
        out += self.payload
        if self.padding_size:
            out += bytes(self.padding_size - 1) + bytes((self.padding_size,))
        return bytes(out)

    __bytes__ = serialize
