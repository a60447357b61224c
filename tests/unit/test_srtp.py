"""SrtpContext: reference vectors, round trips, tampering, and the in-place calls."""

from __future__ import annotations

import os
import struct

import pytest
from pylibsrtp import Policy, Session
from tureen.workers.transport.srtp import (
    AEAD_AES_128_GCM,
    AES128_CM_SHA1_32,
    AES128_CM_SHA1_80,
    PROFILES,
    SrtpContext,
)

# Reference packets of libsrtp's test driver (cisco/libsrtp test/srtp_driver.c,
# srtp_validate() and srtp_validate_gcm()). The AES-CM master key and salt are those of
# RFC 3711 Appendix B.3; the packets have SSRC 0xcafebabe, seq 0x1234, ts 0xdecafbad.
CM_KEY_SALT = bytes.fromhex("e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6")
GCM_KEY_SALT = bytes.fromhex("000102030405060708090a0b0c0d0e0fa0a1a2a3a4a5a6a7a8a9aaab")
RTP_PLAIN = bytes.fromhex("800f1234decafbadcafebabe") + b"\xab" * 16
RTCP_PLAIN = bytes.fromhex("81c8000bcafebabe") + b"\xab" * 16
VECTORS = {
    AES128_CM_SHA1_80: (
        CM_KEY_SALT,
        bytes.fromhex(
            "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb"
        ),
        bytes.fromhex(
            "81c8000bcafebabe7128035be487b9bdbef89041f977a5a880000001993e08cd54d6c1230798"
        ),
    ),
    AEAD_AES_128_GCM: (
        GCM_KEY_SALT,
        bytes.fromhex(
            "800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392"
        ),
        bytes.fromhex(
            "81c8000bcafebabec98b8b5df0392a55852b6c21ac8e7025c52c6fbea2b3b446ea31123ba88ce61e80000001"
        ),
    ),
}


def rtp(seq: int, payload: bytes = b"payload" * 20, ssrc: int = 0x11223344) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 960, ssrc) + payload


def pair(profile: str) -> tuple[SrtpContext, SrtpContext]:
    """Two ends of one association: each one's local key is the other's remote key."""
    n = PROFILES[profile].key_salt_length
    k1, k2 = os.urandom(n), os.urandom(n)
    return SrtpContext(profile, k1, k2), SrtpContext(profile, k2, k1)


@pytest.mark.parametrize("profile", list(VECTORS))
def test_rtp_and_rtcp_match_libsrtp_reference_packets(profile) -> None:
    key, srtp, srtcp = VECTORS[profile]
    ctx = SrtpContext(profile, key, key)
    assert ctx.protect_rtp(RTP_PLAIN) == srtp
    assert ctx.protect_rtcp(RTCP_PLAIN) == srtcp  # first SRTCP index is 1
    assert SrtpContext(profile, key, key).unprotect_rtp(srtp) == RTP_PLAIN
    assert SrtpContext(profile, key, key).unprotect_rtcp(srtcp) == RTCP_PLAIN


@pytest.mark.parametrize("profile", list(VECTORS))
def test_in_place_calls_match_reference_packets(profile) -> None:
    key, srtp, _ = VECTORS[profile]
    buf = bytearray(1500)
    buf[: len(RTP_PLAIN)] = RTP_PLAIN
    n = SrtpContext(profile, key, key).protect_rtp_into(buf, len(RTP_PLAIN))
    assert bytes(buf[:n]) == srtp
    buf = bytearray(srtp)
    n = SrtpContext(profile, key, key).unprotect_rtp_into(buf, len(buf))
    assert bytes(buf[:n]) == RTP_PLAIN


@pytest.mark.parametrize("profile", list(PROFILES))
def test_round_trip_both_directions(profile) -> None:
    a, b = pair(profile)
    for seq in (1, 2, 3, 65535, 0, 1):  # across a sequence wrap
        packet = rtp(seq)
        assert b.unprotect_rtp(a.protect_rtp(packet)) == packet
        assert a.unprotect_rtp(b.protect_rtp(packet)) == packet
    rr = bytes.fromhex("81c90007") + b"\x00" * 28
    assert b.unprotect_rtcp(a.protect_rtcp(rr)) == rr
    assert a.unprotect_rtcp(b.protect_rtcp(rr)) == rr


@pytest.mark.parametrize(
    ("profile", "rtp_tag", "rtcp_trailer"),
    [(AEAD_AES_128_GCM, 16, 20), (AES128_CM_SHA1_80, 10, 14), (AES128_CM_SHA1_32, 4, 14)],
)
def test_trailer_lengths_per_profile(profile, rtp_tag, rtcp_trailer) -> None:
    a, _ = pair(profile)
    assert len(a.protect_rtp(rtp(1))) == len(rtp(1)) + rtp_tag
    # RTCP keeps the 80-bit tag with _32 (RFC 5764 section 4.1.2): index + 10 bytes.
    rr = bytes.fromhex("81c90007") + b"\x00" * 28
    assert len(a.protect_rtcp(rr)) == len(rr) + rtcp_trailer


@pytest.mark.parametrize("profile", list(PROFILES))
def test_tampered_replayed_or_foreign_packets_raise_value_error(profile) -> None:
    a, b = pair(profile)
    protected = a.protect_rtp(rtp(10))
    for index in (5, 20, len(protected) - 1):  # header, payload, tag
        tampered = bytearray(protected)
        tampered[index] ^= 0x01
        with pytest.raises(ValueError):
            b.unprotect_rtp(bytes(tampered))
    assert b.unprotect_rtp(protected) == rtp(10)
    with pytest.raises(ValueError, match="replay"):
        b.unprotect_rtp(protected)
    stranger, _ = pair(profile)
    with pytest.raises(ValueError):
        b.unprotect_rtp(stranger.protect_rtp(rtp(11)))
    srtcp = bytearray(a.protect_rtcp(bytes.fromhex("81c90001") + b"\x00" * 4))
    srtcp[9] ^= 0x80
    with pytest.raises(ValueError):
        b.unprotect_rtcp(bytes(srtcp))
    for garbage in (b"", b"\x80", os.urandom(40), b"\x80" * 2000):
        with pytest.raises(ValueError):
            b.unprotect_rtp(garbage)
        with pytest.raises(ValueError):
            b.unprotect_rtcp(garbage)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_protect_rtp_into_equals_protect_rtp_and_decrypts_with_a_plain_session(profile) -> None:
    n = PROFILES[profile].key_salt_length
    local, remote = os.urandom(n), os.urandom(n)
    by_bytes = SrtpContext(profile, local, remote)
    in_place = SrtpContext(profile, local, remote)
    rx_policy = Policy(
        key=local, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILES[profile].libsrtp_profile
    )
    receiver = Session(rx_policy)
    scratch = bytearray(1500)  # reused, as the data path reuses its buffers
    for seq in range(100, 110):
        packet = rtp(seq, os.urandom(seq * 3))
        scratch[: len(packet)] = packet
        length = in_place.protect_rtp_into(scratch, len(packet))
        expected = by_bytes.protect_rtp(packet)
        assert bytes(scratch[:length]) == expected
        assert receiver.unprotect(bytes(scratch[:length])) == packet


@pytest.mark.parametrize("profile", list(PROFILES))
def test_unprotect_rtp_into_round_trip_and_failure(profile) -> None:
    a, b = pair(profile)
    recv = bytearray(1500)
    for seq in range(5):
        protected = a.protect_rtp(rtp(seq))
        recv[: len(protected)] = protected
        length = b.unprotect_rtp_into(recv, len(protected))
        assert bytes(recv[:length]) == rtp(seq)
    protected = bytearray(a.protect_rtp(rtp(99)))
    protected[-1] ^= 0xFF
    recv[: len(protected)] = protected
    with pytest.raises(ValueError):
        b.unprotect_rtp_into(recv, len(protected))


def test_in_place_calls_check_their_buffer() -> None:
    a, _ = pair(AES128_CM_SHA1_80)
    packet = rtp(1)
    tight = bytearray(packet)  # no room for the 10-byte tag
    with pytest.raises(ValueError):
        a.protect_rtp_into(tight, len(packet))
    assert tight == packet
    with pytest.raises(ValueError):
        a.protect_rtp_into(bytearray(2000), 1600)
    with pytest.raises(ValueError):
        a.unprotect_rtp_into(bytearray(100), 200)
    frozen = packet + bytes(16)
    with pytest.raises(BufferError):  # never writes into immutable bytes
        a.protect_rtp_into(frozen, len(packet))  # type: ignore[arg-type]
    assert frozen == packet + bytes(16)
    # A writable memoryview into a larger buffer works too.
    big = bytearray(3000)
    big[1000 : 1000 + len(packet)] = packet
    view = memoryview(big)[1000:1500]
    length = a.protect_rtp_into(view, len(packet))  # type: ignore[arg-type]
    assert length == len(packet) + 10


def test_bad_profile_or_key_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported SRTP profile"):
        SrtpContext("SRTP_NULL", bytes(30), bytes(30))
    with pytest.raises(ValueError):
        SrtpContext(AEAD_AES_128_GCM, bytes(30), bytes(30))
    with pytest.raises(ValueError):
        SrtpContext(AES128_CM_SHA1_80, bytes(30), bytes(28))
