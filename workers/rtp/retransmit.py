"""Retransmission of a producer stream's recent packets to one consumer (RFC 4585 NACK,
RFC 4588 RTX), sans-I/O.

The forwarder keeps each video stream's last STORE_SIZE packets, after the ingest rewrite
(room payload type and extension ids) and before any consumer's rewrite, in a list indexed
by `seq & STORE_MASK` (one `bytes` per packet, shared with the pipe copy). A NACK from a
receiver names the consumer's output sequence numbers; the worker maps each back to the
stream's (`out - seq_offset`), finds the packet here and sends it again with that
consumer's header: as RTX (own SSRC, payload type and sequence, original sequence number
first in the payload) when the consumer has an RTX stream, else as the same packet again.
At 30 fps with ~5-10 packets per frame, 1024 packets are 3-7 s of video: more than any
NACK round trip.
"""

from __future__ import annotations

import struct

from tureen.shared.rtp.packet import header_length

STORE_SIZE = 1024
STORE_MASK = STORE_SIZE - 1

_SEQ_TS_SSRC = struct.Struct("!HII")


def new_store() -> list[bytes | None]:
    return [None] * STORE_SIZE


def stored(store: list[bytes | None], seq: int) -> bytes | None:
    """The stored packet with sequence number `seq`, or None (never kept, or overwritten)."""
    data = store[seq & STORE_MASK]
    if data is None or (data[2] << 8 | data[3]) != seq:
        return None
    return data


def resend(data: bytes, seq: int, ts: int, ssrc: int) -> bytearray:
    """The stored packet with a consumer's header (as the fan-out writes it)."""
    out = bytearray(data)
    _SEQ_TS_SSRC.pack_into(out, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    return out


def rtx_packet(data: bytes, seq: int, ts: int, rtx_ssrc: int, rtx_pt: int, rtx_seq: int) -> bytearray:
    """RFC 4588 section 4: the stored packet as RTX, `seq` (the consumer's original sequence
    number) before the payload. Padding is dropped. ValueError if `data` is malformed."""
    n = len(data)
    offset = header_length(data, n)
    end = n - data[n - 1] if data[0] & 0x20 else n
    out = bytearray(data[:offset])
    out[0] &= ~0x20 & 0xFF
    out[1] = (out[1] & 0x80) | rtx_pt
    _SEQ_TS_SSRC.pack_into(out, 2, rtx_seq & 0xFFFF, ts & 0xFFFFFFFF, rtx_ssrc)
    out += struct.pack("!H", seq & 0xFFFF)
    out += data[offset:end]
    return out


def unwrap_rtx(buf: bytearray, n: int) -> tuple[int, int]:
    """Turn the RTX packet in buf[:n] back into its original in place: (original sequence
    number, new length); the caller sets SSRC and payload type. A padding-only RTX packet
    (a sender's bandwidth probe) has no original: ValueError, as for a malformed one."""
    offset = header_length(buf, n)
    end = n
    if buf[0] & 0x20:
        end -= buf[n - 1]
        buf[0] &= ~0x20 & 0xFF
    if end - offset < 2:
        raise ValueError("RTX packet without an original sequence number (padding only)")
    osn = buf[offset] << 8 | buf[offset + 1]
    buf[offset : end - 2] = buf[offset + 2 : end]
    return osn, end - 2
