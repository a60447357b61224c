"""DTLS endpoint of a WebRTC transport (DTLS-SRTP, RFC 5764), sans-I/O.

OpenSSL runs on memory BIOs, as in aiortc `rtcdtlstransport.py` and mediasoup
`RTC/DtlsTransport.cpp`: datagrams go in with `handle_datagram(data, now)`, and whatever
OpenSSL wants sent comes back as a list of datagrams, with events (`DtlsConnected`,
`DtlsFailed`, `DtlsClosed`). Nothing here touches a socket; the only clock read is the
wall-clock expiry check of `local_certificate()`.

How the worker drives one endpoint:
1. `DtlsEndpoint()`; `local_parameters()` goes into the createTransport response (role
   'auto' until the remote parameters are known).
2. `set_remote(dtlsParameters)` (createTransport or updateTransport) resolves the local role
   (as mediasoup v2: remote 'client' -> 'server'; 'server', 'auto' or none -> 'client').
3. `start(now)` once the role is known AND ICE has a selected tuple (as mediasoup's
   MayRunDtlsTransport): a client returns its ClientHello to send there.
   DTLS datagrams that arrive before `start` are kept (a few) and replayed: on a recv
   transport Chromium sends its ClientHello right after the first ICE check, possibly
   before the updateTransport carrying its fingerprint reaches the worker.
4. Every DTLS datagram from a valid ICE tuple (first byte 20..63, RFC 7983) ->
   `handle_datagram(data, now)`; send the returned datagrams to the selected tuple.
5. At `get_timer()`, call `handle_timer(now)` (retransmissions, the 30 s handshake limit).
6. On `DtlsConnected`, build `SrtpContext(ev.profile, ev.local_key_salt, ev.remote_key_salt)`.
7. `close()` returns the close_notify to send when the transport closes.

After the handshake (docs/internals.md, "DTLS after the handshake"): once the SRTP keys are
exported, the endpoint frees OpenSSL's SSL object (65-69 KiB) and keeps only the epoch-1
record keys of the AEAD suite (`dtls_record.SealedRecords`) and, as DTLS server, the bytes of
its final flight. From then on a datagram's records are read by their headers: an alert that
authenticates with the peer's key closes (close_notify, or any fatal alert), the peer's
retransmitted Finished (authentic, epoch 1) gets the final flight resent (RFC 6347 4.2.4,
at most MAX_FINAL_FLIGHT_RESENDS times), anything else (application data, unauthentic or
epoch-0 records such as a forged cleartext alert) is dropped. A non-AEAD suite (CBC, DTLS 1.0:
no browser negotiates them with our cipher list) keeps the SSL object and OpenSSL's reading.

Retransmission caveat: OpenSSL times its DTLS retransmissions with the real clock and does
nothing in `DTLSv1_handle_timeout()` before its own timer (1 s, doubling) expires. So
`get_timer()` is `now` + OpenSSL's remaining time, and a `handle_timer()` called early (or
with a fake `now`) only re-arms the timer. The handshake limit uses the caller's `now`.
"""

from __future__ import annotations

import binascii
import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc.rtcdtlstransport import RTCCertificate
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from tureen.shared.errors import BAD_REQUEST, INVALID_STATE, UNSUPPORTED, ProtocolError
from tureen.workers.transport.dtls_record import (
    ALERT,
    APPLICATION_DATA,
    CLOSE_NOTIFY,
    FATAL,
    SealedRecords,
    records,
)
from tureen.workers.transport.srtp import (
    AEAD_AES_128_GCM,
    AES128_CM_SHA1_32,
    AES128_CM_SHA1_80,
    PROFILES,
)

logger = logging.getLogger(__name__)

# Fingerprint algorithms in the order createTransport lists them
# (docs/protocol/messages.md, createTransport).
FINGERPRINT_ALGORITHMS: dict[str, hashes.HashAlgorithm] = {
    "sha-1": hashes.SHA1(),
    "sha-224": hashes.SHA224(),
    "sha-256": hashes.SHA256(),
    "sha-384": hashes.SHA384(),
    "sha-512": hashes.SHA512(),
}
# Offered in preference order; as DTLS server OpenSSL picks its own first match. GCM is the
# cheapest per packet (scripts/bench_srtp.py measures it); v2 offered the two AES-CM ones only.
SRTP_PROFILES = (AEAD_AES_128_GCM, AES128_CM_SHA1_80, AES128_CM_SHA1_32)
# ECDSA certificate (aiortc makes P-256 keys): ECDHE-ECDSA suites only, as aiortc offers.
_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
)
# Bytes per datagram we pack records into; below any real path MTU once IP/UDP and TURN
# headers are added (mediasoup uses 1350 for OpenSSL's MTU).
DTLS_MTU = 1200
# mediasoup gives up when OpenSSL's next retransmission would be 30 s or more away; the same
# limit, counted on the caller's clock from the first handshake flight.
HANDSHAKE_TIMEOUT = 30.0
# Early datagrams kept until start(): a ClientHello and a retransmission or two.
MAX_EARLY_DATAGRAMS = 4
# Resends of our final flight after the handshake (the peer retransmits its Finished when ours
# was lost; a client gives up after ~6 tries with OpenSSL's doubling timer, so this is ample).
MAX_FINAL_FLIGHT_RESENDS = 10
_HANDSHAKE = 22
_RECORD_HEADER = 13
_SRTP_LABEL = b"EXTRACTOR-dtls_srtp"


def is_dtls(data: bytes) -> bool:
    """RFC 7983 demultiplexing: a DTLS record starts with a byte in 20..63."""
    return len(data) >= _RECORD_HEADER and 19 < data[0] < 64


def _fingerprint(cert: Any, algorithm: str) -> str:
    digest = cert.fingerprint(FINGERPRINT_ALGORITHMS[algorithm])
    return binascii.hexlify(digest, ":").decode().upper()


class LocalCertificate:
    """The worker's DTLS identity: an aiortc RTCCertificate, its fingerprints, SSL contexts."""

    def __init__(self, certificate: RTCCertificate | None = None) -> None:
        self.certificate = certificate or RTCCertificate.generateCertificate()
        # aiortc keeps the key pair private and only fingerprints sha-256/384/512; we need
        # all five and the pair itself for our own context.
        self._cert = self.certificate._cert
        self._key = self.certificate._key
        self.fingerprints = [
            {"algorithm": algorithm, "value": _fingerprint(self._cert, algorithm)}
            for algorithm in FINGERPRINT_ALGORITHMS
        ]
        self._contexts: dict[tuple[str, ...], SSL.Context] = {}

    @property
    def expires(self) -> datetime.datetime:
        return self.certificate.expires

    def ssl_context(self, profiles: tuple[str, ...] = SRTP_PROFILES) -> SSL.Context:
        """One shared SSL context per SRTP profile list (building one costs ~a millisecond)."""
        ctx = self._contexts.get(profiles)
        if ctx is None:
            ctx = SSL.Context(SSL.DTLS_METHOD)
            # No tickets or session cache: every WebRTC handshake is a full one. OpenSSL must
            # not ask a memory BIO for the path MTU: we set it.
            ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
            ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            # Free the record buffers while idle: after the handshake a connection only sees
            # an alert now and then. Measured: 78 -> 69 KiB per connected endpoint.
            ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
            # Ask the client for its certificate too, accept any: identity is the fingerprint
            # from signaling, checked once the handshake is done.
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
            ctx.use_certificate(self._cert)
            ctx.use_privatekey(self._key)
            ctx.set_cipher_list(_CIPHERS)
            ctx.set_tlsext_use_srtp(":".join(profiles).encode())
            self._contexts[profiles] = ctx
        return ctx


_local_certificate: LocalCertificate | None = None


def local_certificate() -> LocalCertificate:
    """The process-wide certificate, made on first use and renewed a day before it expires.

    aiortc's certificates last 30 days and a worker may live longer; an endpoint keeps the
    certificate it was created with, so renewal never changes a running transport.
    """
    global _local_certificate
    now = datetime.datetime.now(tz=datetime.UTC)
    if _local_certificate is None or _local_certificate.expires - now < datetime.timedelta(days=1):
        _local_certificate = LocalCertificate()
    return _local_certificate


@dataclass(frozen=True, slots=True)
class DtlsConnected:
    """Handshake done and the remote certificate matches its fingerprint.

    Keys per RFC 5764 section 4.2, already assigned for our role: `local_*` protect what we
    send, `remote_*` unprotect what we receive.
    """

    profile: str
    # Kept out of repr(): events get logged, keys must not be.
    local_key: bytes = field(repr=False)
    local_salt: bytes = field(repr=False)
    remote_key: bytes = field(repr=False)
    remote_salt: bytes = field(repr=False)

    @property
    def local_key_salt(self) -> bytes:
        return self.local_key + self.local_salt

    @property
    def remote_key_salt(self) -> bytes:
        return self.remote_key + self.remote_salt


@dataclass(frozen=True, slots=True)
class DtlsFailed:
    """The handshake failed; `reason` says why (fingerprint mismatch, timeout, alert...)."""

    reason: str


@dataclass(frozen=True, slots=True)
class DtlsClosed:
    """The peer closed the connected association (close_notify or a fatal error)."""

    reason: str = "close_notify"


DtlsEvent = DtlsConnected | DtlsFailed | DtlsClosed


def _pack_records(data: bytes, mtu: int) -> list[bytes]:
    """Split the memory BIO's output (whole records, back to back) into datagrams <= mtu.

    A memory BIO has no datagram boundaries, so a flight comes out as one byte string;
    records are never split (a record longer than mtu goes alone).
    """
    datagrams: list[bytes] = []
    start = pos = 0
    while pos < len(data):
        end = pos + _RECORD_HEADER
        if end <= len(data):
            end += int.from_bytes(data[end - 2 : end], "big")
        end = min(end, len(data))
        if end - start > mtu and pos > start:
            datagrams.append(data[start:pos])
            start = pos
        pos = end
    if start < len(data):
        datagrams.append(data[start:])
    return datagrams


class DtlsEndpoint:
    """One DTLS-SRTP association. States: new, connecting, connected, failed, closed."""

    def __init__(
        self,
        certificate: LocalCertificate | None = None,
        *,
        srtp_profiles: Sequence[str] = SRTP_PROFILES,
        mtu: int = DTLS_MTU,
    ) -> None:
        self.certificate = certificate or local_certificate()
        for name in srtp_profiles:
            if name not in PROFILES:
                raise ValueError(f"unknown SRTP profile {name!r}")
        self._profiles = tuple(srtp_profiles)
        self._mtu = mtu
        self.role = "auto"
        self.state = "new"
        self.remote_fingerprint: dict[str, str] | None = None
        self._ssl: SSL.Connection | None = None
        # After the handshake, instead of _ssl (AEAD suites): the record keys, our final flight
        # (DTLS server: CCS + Finished, to resend) and how often it was resent.
        self._sealed: SealedRecords | None = None
        self._final_flight: list[bytes] = []
        self._resends = 0
        self._write_seq = 0  # the next epoch-1 record sequence number of ours (from _drain)
        self._early: list[bytes] = []
        self._pending_events: list[DtlsEvent] = []
        self._retransmit_at: float | None = None
        self._deadline: float | None = None

    # -- parameters ---------------------------------------------------------------------

    def local_parameters(self) -> dict[str, Any]:
        """The `dtlsParameters` for the client: role and our five fingerprints."""
        return {
            "role": self.role,
            "fingerprints": [dict(f) for f in self.certificate.fingerprints],
        }

    def set_remote(self, dtls_parameters: Any) -> str:
        """Apply the client's dtlsParameters once; return the resolved local role.

        Mirrors mediasoup 2.6.19 Router.cpp: the last fingerprint with a known algorithm is
        used (the entries before it are not inspected); a missing or non-string role is
        'auto'.
        Raises ProtocolError, changing nothing, on malformed or repeated parameters.
        """
        if self.remote_fingerprint is not None:
            raise ProtocolError(INVALID_STATE, "Transport already has remote DTLS parameters")
        if not isinstance(dtls_parameters, dict):
            raise ProtocolError(BAD_REQUEST, "wrong dtlsParameters")
        fingerprints = dtls_parameters.get("fingerprints")
        if not isinstance(fingerprints, list):
            raise ProtocolError(BAD_REQUEST, "missing data.fingerprints")
        chosen: dict[str, str] | None = None
        for entry in reversed(fingerprints):
            if not isinstance(entry, dict):
                raise ProtocolError(BAD_REQUEST, "wrong fingerprint")
            algorithm, value = entry.get("algorithm"), entry.get("value")
            if not isinstance(algorithm, str) or not isinstance(value, str):
                raise ProtocolError(
                    BAD_REQUEST, "missing data.fingerprint.algorithm and/or data.fingerprint.value"
                )
            if algorithm.lower() in FINGERPRINT_ALGORITHMS:
                chosen = {"algorithm": algorithm.lower(), "value": value.strip().upper()}
                break
        if chosen is None:
            raise ProtocolError(UNSUPPORTED, "unsupported remote fingerprint algorithm")
        remote_role = dtls_parameters.get("role")
        if not isinstance(remote_role, str):
            remote_role = "auto"
        if remote_role not in ("auto", "client", "server"):
            raise ProtocolError(BAD_REQUEST, "invalid remote role")
        # ICE-lite is always controlled, so with 'auto' on the other side we take 'client'.
        self.role = "server" if remote_role == "client" else "client"
        self.remote_fingerprint = chosen
        return self.role

    # -- driving ------------------------------------------------------------------------

    def start(self, now: float) -> list[bytes]:
        """Begin the handshake (after set_remote, once ICE has a tuple); datagrams to send.

        Events that replayed early datagrams cause come with the next handle_* call.
        """
        if self.remote_fingerprint is None:
            raise RuntimeError("DtlsEndpoint.start() before set_remote()")
        if self.state != "new":
            return []
        self.state = "connecting"
        conn = SSL.Connection(self.certificate.ssl_context(self._profiles), None)
        conn.set_ciphertext_mtu(self._mtu)
        self._ssl = conn
        early, self._early = self._early, []
        out: list[bytes] = []
        if self.role == "client":
            conn.set_connect_state()
            self._deadline = now + HANDSHAKE_TIMEOUT
            out += self._step(now, self._pending_events)
        else:
            conn.set_accept_state()
            for data in early:
                sent, events = self.handle_datagram(data, now)
                out += sent
                self._pending_events += events
        self._arm(now)
        return out

    def handle_datagram(self, data: bytes, now: float) -> tuple[list[bytes], list[DtlsEvent]]:
        """Feed one DTLS datagram; returns (datagrams to send, events). Never raises."""
        events, self._pending_events = self._pending_events, []
        if self.state == "new":
            if is_dtls(data) and len(self._early) < MAX_EARLY_DATAGRAMS:
                self._early.append(bytes(data))
            return [], events
        if self.state == "connected" and self._sealed is not None:
            return self._read_sealed(data, events), events
        if self.state not in ("connecting", "connected") or self._ssl is None:
            return [], events
        if self._deadline is None:
            # A server's handshake clock starts with the peer's first flight.
            self._deadline = now + HANDSHAKE_TIMEOUT
        try:
            self._ssl.bio_write(bytes(data))
        except SSL.Error as exc:
            logger.debug("dtls %s: bio_write failed: %s", self.role, exc)
            return [], events
        if self.state == "connecting":
            out = self._step(now, events)
        else:
            out = self._read(events)
        self._arm(now)
        return out, events

    def get_timer(self) -> float | None:
        """When to call handle_timer (None: nothing pending)."""
        if self.state != "connecting":
            return None
        timers = [t for t in (self._retransmit_at, self._deadline) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> tuple[list[bytes], list[DtlsEvent]]:
        """Retransmit a lost flight, or fail a handshake that took HANDSHAKE_TIMEOUT."""
        events, self._pending_events = self._pending_events, []
        if self.state != "connecting" or self._ssl is None:
            return [], events
        if self._deadline is not None and now >= self._deadline:
            self._fail("handshake timeout", events)
            return [], events
        out: list[bytes] = []
        if self._retransmit_at is not None and now >= self._retransmit_at:
            try:
                self._ssl.DTLSv1_handle_timeout()
            except SSL.Error as exc:
                self._fail(f"handshake timeout ({exc})", events)
                return [], events
            out = self._drain()
        self._arm(now)
        return out, events

    def close(self) -> list[bytes]:
        """Close locally (transport closed): the close_notify to send, if any. No event."""
        out: list[bytes] = []
        if self.state == "connected" and self._sealed is not None:
            out = [self._sealed.seal(ALERT, bytes([1, CLOSE_NOTIFY]))]  # warning, close_notify
        elif self.state in ("connecting", "connected") and self._ssl is not None:
            try:
                self._ssl.shutdown()
            except SSL.Error:
                pass
            out = self._drain()
        self.state = "closed"
        self._forget()
        self._retransmit_at = self._deadline = None
        return out

    # -- internals ----------------------------------------------------------------------

    def _step(self, now: float, events: list[DtlsEvent]) -> list[bytes]:
        """Advance the handshake; on completion verify the peer and derive SRTP keys."""
        assert self._ssl is not None
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            return self._drain()
        except SSL.Error as exc:
            self._fail(f"handshake error: {_ssl_reason(exc)}", events)
            return []
        except Exception as exc:  # pyOpenSSL can raise others on odd input; never leak
            self._fail(f"handshake error: {exc!r}", events)
            return []
        out = self._drain()
        connected = self._connected_event()
        if isinstance(connected, DtlsFailed):
            self._fail(connected.reason, events)
            # Withhold our last flight: the peer must not believe it is connected.
            return []
        self.state = "connected"
        self._deadline = None
        logger.debug("dtls %s: connected, %s", self.role, connected.profile)
        events.append(connected)
        # Application data may follow the Finished in the same datagram; nothing uses it.
        out += self._read(events)
        if self.state == "connected":
            self._release_ssl(out)
        return out

    def _release_ssl(self, final_flight: list[bytes]) -> None:
        """Keep the record keys and our final flight instead of the SSL object (AEAD suites)."""
        assert self._ssl is not None
        ssl = self._ssl
        try:
            sealed = SealedRecords.for_suite(
                ssl.get_cipher_name(),
                ssl.get_protocol_version_name(),
                ssl.master_key(),
                ssl.client_random(),
                ssl.server_random(),
                self.role == "client",
                self._write_seq,
            )
        except Exception as exc:  # never lose a connected endpoint over an optimisation
            logger.debug("dtls %s: keeping the SSL object: %r", self.role, exc)
            return
        if sealed is None:
            logger.debug("dtls %s: keeping the SSL object (%s)", self.role, ssl.get_cipher_name())
            return
        self._sealed = sealed
        # A client's final flight is answered by the server's, which we have: nothing to resend.
        self._final_flight = list(final_flight) if self.role == "server" else []
        self._ssl = None

    def _read_sealed(self, data: bytes, events: list[DtlsEvent]) -> list[bytes]:
        """Connected without OpenSSL: act on the peer's authentic alerts and Finished."""
        assert self._sealed is not None
        resend = False
        for content_type, epoch, seq, fragment in records(bytes(data)):
            if content_type == ALERT:
                plain = self._sealed.open(content_type, epoch, seq, fragment)
                if plain is None or len(plain) != 2:
                    logger.debug("dtls %s: dropped an alert that does not authenticate", self.role)
                    continue
                level, description = plain
                if description == CLOSE_NOTIFY:
                    self._close_remote("close_notify", events)
                    return []
                if level == FATAL:
                    self._close_remote(f"fatal alert {description}", events)
                    return []
            elif content_type == _HANDSHAKE and epoch == 1 and self._final_flight:
                # The peer's Finished again: ours was lost. Only an authentic one counts.
                resend = resend or self._sealed.open(content_type, epoch, seq, fragment) is not None
            elif content_type == APPLICATION_DATA:
                # No DataChannels in the v2 protocol: application data is dropped.
                logger.debug("dtls %s: dropping %d bytes of application data", self.role, len(fragment))
        if resend and self._resends < MAX_FINAL_FLIGHT_RESENDS:
            self._resends += 1
            return list(self._final_flight)
        return []

    def _connected_event(self) -> DtlsConnected | DtlsFailed:
        assert self._ssl is not None and self.remote_fingerprint is not None
        cert = self._ssl.get_peer_certificate(as_cryptography=True)
        if cert is None:
            return DtlsFailed("no remote certificate")
        algorithm = self.remote_fingerprint["algorithm"]
        if _fingerprint(cert, algorithm) != self.remote_fingerprint["value"]:
            return DtlsFailed(f"fingerprint mismatch ({algorithm})")
        selected = self._ssl.get_selected_srtp_profile()
        profile = PROFILES.get(selected.decode(errors="replace")) if selected else None
        if profile is None:
            return DtlsFailed("no SRTP profile negotiated")
        k, s = profile.key_length, profile.salt_length
        # RFC 5764 section 4.2: client key, server key, client salt, server salt.
        material = self._ssl.export_keying_material(_SRTP_LABEL, 2 * (k + s))
        client_key, server_key = material[:k], material[k : 2 * k]
        client_salt, server_salt = material[2 * k : 2 * k + s], material[2 * k + s :]
        if self.role == "client":
            return DtlsConnected(profile.name, client_key, client_salt, server_key, server_salt)
        return DtlsConnected(profile.name, server_key, server_salt, client_key, client_salt)

    def _read(self, events: list[DtlsEvent]) -> list[bytes]:
        """Connected: let OpenSSL process records (close_notify, retransmitted flights)."""
        assert self._ssl is not None
        while True:
            try:
                data = self._ssl.recv(65536)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._close_remote("close_notify", events)
                break
            except SSL.Error as exc:
                self._close_remote(f"fatal error: {_ssl_reason(exc)}", events)
                break
            except Exception as exc:
                logger.debug("dtls %s: recv failed: %r", self.role, exc)
                break
            if not data:
                break
            # No DataChannels in the v2 protocol: application data is dropped.
            logger.debug("dtls %s: dropping %d bytes of application data", self.role, len(data))
        return self._drain() if self._ssl is not None else []

    def _drain(self) -> list[bytes]:
        assert self._ssl is not None
        chunks = []
        while True:
            try:
                chunk = self._ssl.bio_read(65536)
            except SSL.WantReadError:
                break
            except SSL.Error:
                break
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            return []
        data = b"".join(chunks)
        if self.state == "connecting":
            # Our epoch-1 records so far (Finished, retransmitted or not): a close_notify sealed
            # after the SSL object is gone must come after them, or the peer drops it as a replay.
            for _, epoch, seq, _ in records(data):
                if epoch == 1 and seq >= self._write_seq:
                    self._write_seq = seq + 1
        return _pack_records(data, self._mtu)

    def _arm(self, now: float) -> None:
        timeout = None
        if self.state == "connecting" and self._ssl is not None:
            timeout = self._ssl.DTLSv1_get_timeout()
        self._retransmit_at = None if timeout is None else now + timeout

    def _fail(self, reason: str, events: list[DtlsEvent]) -> None:
        logger.info("dtls %s: failed: %s", self.role, reason)
        self.state = "failed"
        self._forget()
        self._retransmit_at = self._deadline = None
        events.append(DtlsFailed(reason))

    def _close_remote(self, reason: str, events: list[DtlsEvent]) -> None:
        logger.debug("dtls %s: closed by peer: %s", self.role, reason)
        self.state = "closed"
        self._sealed = None
        self._final_flight = []
        self._retransmit_at = self._deadline = None
        events.append(DtlsClosed(reason))

    def _forget(self) -> None:
        """Drop every piece of the association's crypto state (closed or failed)."""
        self._ssl = None
        self._sealed = None
        self._final_flight = []


def _ssl_reason(exc: SSL.Error) -> str:
    """The innermost OpenSSL reason string of a pyOpenSSL error, for event reasons."""
    try:
        return str(exc.args[0][-1][-1])
    except (IndexError, TypeError):
        return str(exc) or type(exc).__name__
