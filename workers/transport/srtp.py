"""SRTP/SRTCP sessions of a WebRTC transport: a thin wrapper over pylibsrtp.

One `SrtpContext` per connected transport, built from the DTLS `connected` event: the local
key+salt protects what we send, the remote key+salt unprotects what we receive (RFC 5764
section 4.2). Unprotect failures (bad tag, replay, garbage) raise ValueError: callers count
and drop, as mediasoup `RTC/SrtpSession.cpp` does.

Why the `*_into` methods: pylibsrtp's `Session.protect()` takes `bytes`, copies them into a
cffi buffer and slices the result back out as new `bytes`; that binding overhead was
measured at ~1.8 us of a ~2.4 us protect. libsrtp 2's `srtp_protect(ctx, buf, &len)` works in
place, so `protect_rtp_into()` calls it through pylibsrtp's own cffi module on an
`ffi.from_buffer()` view of the caller's bytearray: no copy in, no bytes out.
`scripts/bench_srtp.py` measures both ways.

Policies follow mediasoup 2.6.19: any-SSRC inbound/outbound streams, replay window 1024, and
`allow_repeat_tx` so a NACKed packet can be re-sent without RTX. For SRTP_AES128_CM_SHA1_32,
libsrtp keeps the 80-bit tag on RTCP as RFC 5764 requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pylibsrtp
from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi, lib

AEAD_AES_128_GCM = "SRTP_AEAD_AES_128_GCM"
AES128_CM_SHA1_80 = "SRTP_AES128_CM_SHA1_80"
AES128_CM_SHA1_32 = "SRTP_AES128_CM_SHA1_32"

# pylibsrtp's own buffer is 1500 bytes: it refuses larger packets, and so do we.
MAX_PACKET_SIZE = 1500
REPLAY_WINDOW = 1024


@dataclass(frozen=True, slots=True)
class SrtpProfile:
    """A DTLS-SRTP protection profile (RFC 5764, RFC 7714), named as OpenSSL names it."""

    name: str
    libsrtp_profile: int
    key_length: int
    salt_length: int
    # Bytes srtp_protect appends to an RTP packet (the auth tag; we never use an MKI).
    rtp_trailer: int

    @property
    def key_salt_length(self) -> int:
        return self.key_length + self.salt_length


PROFILES: dict[str, SrtpProfile] = {
    p.name: p
    for p in (
        SrtpProfile(AEAD_AES_128_GCM, Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12, 16),
        SrtpProfile(AES128_CM_SHA1_80, Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14, 10),
        SrtpProfile(AES128_CM_SHA1_32, Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16, 14, 4),
    )
}

_ERRORS = pylibsrtp.ERRORS


def buffer_pointer(buf: bytearray) -> Any:
    """A cffi `char *` to a bytearray's storage, for `SrtpContext.protect_rtp_at`. It keeps
    the bytearray exported (never resized) while alive."""
    return ffi.from_buffer("char[]", buf, True)


def _session(profile: SrtpProfile, key_salt: bytes, ssrc_type: int) -> Session:
    policy = Policy(key=bytes(key_salt), ssrc_type=ssrc_type, srtp_profile=profile.libsrtp_profile)
    policy.allow_repeat_tx = True
    policy.window_size = REPLAY_WINDOW
    return Session(policy)


class SrtpContext:
    """Outbound (local key) and inbound (remote key) SRTP sessions of one transport.

    `profile` is a name of PROFILES (the DTLS event's `profile`); each key+salt is the
    concatenation master key || master salt of that profile's lengths.
    """

    def __init__(self, profile: str, local_key_salt: bytes, remote_key_salt: bytes) -> None:
        try:
            self.profile = PROFILES[profile]
        except KeyError:
            raise ValueError(f"unsupported SRTP profile {profile!r}") from None
        n = self.profile.key_salt_length
        if len(local_key_salt) != n or len(remote_key_salt) != n:
            raise ValueError(f"{profile} needs {n}-byte key+salt values")
        self._tx = _session(self.profile, local_key_salt, Policy.SSRC_ANY_OUTBOUND)
        self._rx = _session(self.profile, remote_key_salt, Policy.SSRC_ANY_INBOUND)
        # The raw srtp_t of each session, for the in-place calls (pylibsrtp keeps it in
        # `_srtp`, an `srtp_t *` it frees with the Session).
        self._tx_ctx = self._tx._srtp[0]
        self._rx_ctx = self._rx._srtp[0]
        # The same outbound srtp_t as an integer, for the native fan-out (workers/_native.c);
        # valid while this context lives (a consumer's rewrite keeps it alive via `protect`).
        self.tx_address = int(ffi.cast("uintptr_t", self._tx_ctx))
        # The inbound one, for the native drain's srtp_unprotect (read from `srtp` of the
        # transport each drain, so valid while the transport holds this context).
        self.rx_address = int(ffi.cast("uintptr_t", self._rx_ctx))
        self._len = ffi.new("int *")
        self._trailer = self.profile.rtp_trailer
        # The last buffer given to each *_into method and its cffi view (see there).
        self._tx_buf: object = None
        self._tx_view: object = None
        self._rx_buf: object = None
        self._rx_view: object = None

    # -- bytes in, bytes out (control path, RTCP, tests) --------------------------------

    def protect_rtp(self, packet: bytes) -> bytes:
        """SRTP-protect one RTP packet (ValueError if it cannot be protected)."""
        return _checked(self._tx.protect, packet, "srtp_protect")

    def unprotect_rtp(self, packet: bytes) -> bytes:
        """Check and decrypt one SRTP packet; ValueError on any failure (count and drop)."""
        return _checked(self._rx.unprotect, packet, "srtp_unprotect")

    def protect_rtcp(self, packet: bytes) -> bytes:
        """SRTCP-protect one (compound) RTCP packet."""
        return _checked(self._tx.protect_rtcp, packet, "srtp_protect_rtcp")

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """Check and decrypt one SRTCP packet; ValueError on any failure."""
        return _checked(self._rx.unprotect_rtcp, packet, "srtp_unprotect_rtcp")

    # -- in place (the data path) -------------------------------------------------------

    def protect_rtp_into(self, buf: bytearray, length: int) -> int:
        """Protect the RTP packet in `buf[:length]` in place; return the SRTP length.

        `buf` (a bytearray, or a writable memoryview) needs room for the auth tag after the
        packet: `length + 16` bytes always suffice. For fan-out, copy the plaintext into a
        per-output scratch buffer first, since this overwrites the payload with ciphertext.

        The cffi view of the last bytearray is kept (creating one costs ~0.3-0.5 us, as much
        as a quarter of the call), which keeps that bytearray exported: resizing it raises
        BufferError until another buffer is given or the context is dropped. Reuse fixed-size
        buffers, as the data path does anyway.
        """
        if length + self._trailer > len(buf) or length > MAX_PACKET_SIZE or length < 12:
            raise ValueError(f"cannot protect {length} bytes in a {len(buf)}-byte buffer")
        if buf is not self._tx_buf:
            self._tx_view = ffi.from_buffer("char[]", buf, True)
            self._tx_buf = buf
        len_p = self._len
        len_p[0] = length
        rc = lib.srtp_protect(self._tx_ctx, self._tx_view, len_p)
        if rc:
            raise ValueError(f"srtp_protect failed: {_ERRORS[rc]}")
        return len_p[0]

    def protect_rtp_at(self, ptr: Any, length: int) -> int:
        """Protect the RTP packet at cffi pointer `ptr` (from `buffer_pointer()`, plus an
        offset) in place; return the SRTP length. The caller guarantees `length` <=
        MAX_PACKET_SIZE and room for the tag: this is the batched fan-out's call, with no
        checks and no view to build (workers/sendbatch.py)."""
        len_p = self._len
        len_p[0] = length
        rc = lib.srtp_protect(self._tx_ctx, ptr, len_p)
        if rc:
            raise ValueError(f"srtp_protect failed: {_ERRORS[rc]}")
        return len_p[0]

    def unprotect_rtp_into(self, buf: bytearray, length: int, limit: int = MAX_PACKET_SIZE) -> int:
        """Check and decrypt the SRTP packet in `buf[:length]` in place; return the RTP length.

        `limit`: the longest SRTP packet taken, MAX_PACKET_SIZE as for every transport's input
        (the native drain's limit too); the host leg, whose origin protects RTP packets of up
        to MAX_PACKET_SIZE, takes them with their tag.

        ValueError on any failure; `buf[:length]` is then undefined (with AES-GCM libsrtp
        decrypts before it knows the tag is bad). The same view caching as
        `protect_rtp_into` applies to the receive buffer.
        """
        if length > len(buf) or length > limit or length < 12:
            raise ValueError(f"cannot unprotect {length} bytes in a {len(buf)}-byte buffer")
        if buf is not self._rx_buf:
            self._rx_view = ffi.from_buffer("char[]", buf, True)
            self._rx_buf = buf
        len_p = self._len
        len_p[0] = length
        rc = lib.srtp_unprotect(self._rx_ctx, self._rx_view, len_p)
        if rc:
            raise ValueError(f"srtp_unprotect failed: {_ERRORS[rc]}")
        return len_p[0]


def _checked(call: Any, packet: bytes, what: str) -> bytes:
    """`call(packet)` (a pylibsrtp Session method), its errors as the ValueError callers
    count and drop on."""
    try:
        return call(bytes(packet))
    except pylibsrtp.Error as exc:
        raise ValueError(f"{what} failed: {exc}") from None
