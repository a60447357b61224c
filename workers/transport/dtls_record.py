"""DTLS 1.2 record protection for a connected endpoint whose OpenSSL SSL object is gone.

After the DTLS-SRTP handshake an endpoint only needs its record layer for three things: to
recognise an authentic alert from the peer (close_notify closes the transport), to send its
own close_notify, and to drop everything else. OpenSSL's SSL object for that costs 65-69 KiB
per endpoint (docs/benchmarks.md, "Memory per transport"), so DtlsEndpoint frees it once the
SRTP keys are exported and keeps a `SealedRecords`: the epoch-1 keys of the negotiated AEAD
suite (a few hundred bytes), derived from the session's master secret as OpenSSL derives
them (RFC 5246 section 6.3 key block, TLS 1.2 PRF).

AEAD suites only: AES-GCM (RFC 5288, 8-byte explicit nonce) and ChaCha20-Poly1305 (RFC 7905);
`for_suite` returns None for anything else (the CBC suites, DTLS 1.0) and the endpoint keeps
its SSL object then. A record that does not authenticate opens to None: a forged or garbled
alert changes nothing, exactly as OpenSSL drops a DTLS record that fails its MAC.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

RECORD_HEADER: Final = 13
DTLS12: Final = b"\xfe\xfd"
ALERT: Final = 21
APPLICATION_DATA: Final = 23
CLOSE_NOTIFY: Final = 0
FATAL: Final = 2
_TAG = 16
_GCM_EXPLICIT = 8


@dataclass(frozen=True, slots=True)
class _Suite:
    key_length: int
    iv_length: int  # the implicit part: GCM's 4-byte salt, ChaCha20's 12-byte IV
    prf_hash: str
    chacha: bool


# OpenSSL cipher names (Connection.get_cipher_name()) of the AEAD suites dtls.py offers.
SUITES: Final[dict[str, _Suite]] = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": _Suite(16, 4, "sha256", False),
    "ECDHE-ECDSA-AES256-GCM-SHA384": _Suite(32, 4, "sha384", False),
    "ECDHE-ECDSA-CHACHA20-POLY1305": _Suite(32, 12, "sha256", True),
}


def prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS 1.2 PRF (RFC 5246 section 5): P_hash(secret, label + seed), `length` bytes."""
    seed = label + seed
    out = b""
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return out[:length]


def records(datagram: bytes) -> list[tuple[int, int, int, bytes]]:
    """The whole records of one datagram as (content type, epoch, sequence, fragment);
    a truncated tail is dropped."""
    out = []
    pos = 0
    while pos + RECORD_HEADER <= len(datagram):
        length = int.from_bytes(datagram[pos + 11 : pos + 13], "big")
        end = pos + RECORD_HEADER + length
        if end > len(datagram):
            break
        epoch = int.from_bytes(datagram[pos + 3 : pos + 5], "big")
        seq = int.from_bytes(datagram[pos + 5 : pos + 11], "big")
        out.append((datagram[pos], epoch, seq, datagram[pos + RECORD_HEADER : end]))
        pos = end
    return out


class SealedRecords:
    """The epoch-1 record keys of one connected endpoint: open the peer's, seal ours."""

    __slots__ = ("_suite", "_read_key", "_read_iv", "_write_key", "_write_iv", "write_seq")

    def __init__(self, suite: _Suite, read_key: bytes, read_iv: bytes, write_key: bytes,
                 write_iv: bytes, write_seq: int) -> None:
        self._suite = suite
        self._read_key, self._read_iv = read_key, read_iv
        self._write_key, self._write_iv = write_key, write_iv
        self.write_seq = write_seq  # the next epoch-1 sequence number we send

    @classmethod
    def for_suite(cls, cipher: str | None, version: str, master_secret: bytes, client_random: bytes,
                  server_random: bytes, is_client: bool, write_seq: int) -> SealedRecords | None:
        """The keys for `cipher` (an OpenSSL name) in DTLS 1.2, or None when not an AEAD suite
        this module knows (the caller keeps OpenSSL then)."""
        suite = SUITES.get(cipher or "")
        if suite is None or version != "DTLSv1.2" or len(master_secret) != 48:
            return None
        k, i = suite.key_length, suite.iv_length
        # RFC 5246 6.3: client write key, server write key, client IV, server IV (no MAC keys
        # with an AEAD suite).
        block = prf(suite.prf_hash, master_secret, b"key expansion", server_random + client_random, 2 * (k + i))
        client_key, server_key = block[:k], block[k : 2 * k]
        client_iv, server_iv = block[2 * k : 2 * k + i], block[2 * k + i :]
        if is_client:
            return cls(suite, server_key, server_iv, client_key, client_iv, write_seq)
        return cls(suite, client_key, client_iv, server_key, server_iv, write_seq)

    def open(self, content_type: int, epoch: int, seq: int, fragment: bytes) -> bytes | None:
        """The plaintext of one epoch-1 record of the peer, or None if it does not authenticate."""
        if epoch != 1:
            return None
        seq64 = (epoch << 48 | seq).to_bytes(8, "big")
        try:
            if self._suite.chacha:
                if len(fragment) < _TAG:
                    return None
                aad = seq64 + bytes([content_type]) + DTLS12 + (len(fragment) - _TAG).to_bytes(2, "big")
                return ChaCha20Poly1305(self._read_key).decrypt(_xor(self._read_iv, seq64), fragment, aad)
            if len(fragment) < _GCM_EXPLICIT + _TAG:
                return None
            n = len(fragment) - _GCM_EXPLICIT - _TAG
            aad = seq64 + bytes([content_type]) + DTLS12 + n.to_bytes(2, "big")
            nonce = self._read_iv + fragment[:_GCM_EXPLICIT]
            return AESGCM(self._read_key).decrypt(nonce, fragment[_GCM_EXPLICIT:], aad)
        except InvalidTag:
            return None

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        """One epoch-1 record of ours carrying `plaintext` (the next sequence number)."""
        seq64 = (1 << 48 | self.write_seq).to_bytes(8, "big")
        self.write_seq += 1
        aad = seq64 + bytes([content_type]) + DTLS12 + len(plaintext).to_bytes(2, "big")
        if self._suite.chacha:
            fragment = ChaCha20Poly1305(self._write_key).encrypt(_xor(self._write_iv, seq64), plaintext, aad)
        else:
            # The explicit nonce is the record's epoch and sequence, as OpenSSL does: unique per key.
            fragment = seq64 + AESGCM(self._write_key).encrypt(self._write_iv + seq64, plaintext, aad)
        return bytes([content_type]) + DTLS12 + seq64 + len(fragment).to_bytes(2, "big") + fragment


def _xor(iv: bytes, seq64: bytes) -> bytes:
    """RFC 7905 nonce: the 12-byte IV XOR the 64-bit record sequence, left-padded."""
    padded = bytes(4) + seq64
    return bytes(a ^ b for a, b in zip(iv, padded, strict=True))

