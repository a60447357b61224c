"""DtlsEndpoint in memory: pairs of endpoints, and aiortc's own RTCDtlsTransport as the peer."""

from __future__ import annotations

import asyncio
import random
import struct
import time

import pytest
from aiortc.rtcdtlstransport import (
    SRTP_AES128_CM_SHA1_80,
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
)
from cryptography.hazmat.primitives import hashes
from tureen.shared.errors import BAD_REQUEST, INVALID_STATE, UNSUPPORTED, ProtocolError
from tureen.workers.transport.dtls import (
    FINGERPRINT_ALGORITHMS,
    HANDSHAKE_TIMEOUT,
    MAX_FINAL_FLIGHT_RESENDS,
    DtlsClosed,
    DtlsConnected,
    DtlsEndpoint,
    DtlsFailed,
    LocalCertificate,
    _pack_records,
    is_dtls,
    local_certificate,
)
from tureen.workers.transport.srtp import (
    AEAD_AES_128_GCM,
    AES128_CM_SHA1_32,
    AES128_CM_SHA1_80,
    SrtpContext,
)

# A second identity for the "browser" side: making a certificate costs a few milliseconds.
PEER_CERT = LocalCertificate()


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0xABCDEF01) + b"opus" * 30


def remote_params(endpoint: DtlsEndpoint, role: str, algorithms: tuple[str, ...] = ("sha-256",)):
    fingerprints = [
        f for f in endpoint.local_parameters()["fingerprints"] if f["algorithm"] in algorithms
    ]
    return {"role": role, "fingerprints": fingerprints}


def make_pair(server_role_side: str = "peer", **peer_kwargs) -> tuple[DtlsEndpoint, DtlsEndpoint]:
    """(ours, peer) with remote parameters exchanged; `server_role_side` is the DTLS server."""
    ours = DtlsEndpoint()
    peer = DtlsEndpoint(PEER_CERT, **peer_kwargs)
    peer_role = "server" if server_role_side == "peer" else "client"
    ours_role = "client" if peer_role == "server" else "server"
    # As with mediasoup-client, each side announces the role it takes.
    assert ours.set_remote(remote_params(peer, peer_role)) == ours_role
    assert peer.set_remote(remote_params(ours, ours_role)) == peer_role
    return ours, peer


def run(a: DtlsEndpoint, b: DtlsEndpoint, now: float = 0.0, drop=lambda d: False, rounds: int = 10):
    """Start both and shuttle datagrams until quiet; returns {endpoint: events}."""
    events: dict[int, list] = {id(a): [], id(b): []}
    queue = [(b, d) for d in a.start(now)] + [(a, d) for d in b.start(now)]
    for _ in range(rounds):
        if not queue:
            break
        nxt = []
        for dst, data in queue:
            if drop(data):
                continue
            out, evs = dst.handle_datagram(data, now)
            events[id(dst)] += evs
            src = a if dst is b else b
            nxt += [(src, d) for d in out]
        queue = nxt
    return events[id(a)], events[id(b)]


def srtp_of(event: DtlsConnected) -> SrtpContext:
    return SrtpContext(event.profile, event.local_key_salt, event.remote_key_salt)


# -- parameters ---------------------------------------------------------------------------


def test_fingerprints_are_the_five_algorithms_in_order_uppercase_with_colons() -> None:
    cert = local_certificate()
    assert local_certificate() is cert  # one per process
    fingerprints = DtlsEndpoint().local_parameters()["fingerprints"]
    assert [f["algorithm"] for f in fingerprints] == [
        "sha-1",
        "sha-224",
        "sha-256",
        "sha-384",
        "sha-512",
    ]
    digests = [hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()]
    for f, digest in zip(fingerprints, digests, strict=True):
        raw = cert.certificate._cert.fingerprint(digest)
        assert f["value"] == ":".join(f"{b:02X}" for b in raw)
    # aiortc's own sha-256 fingerprint of the same certificate agrees.
    aiortc_fps = {f.algorithm: f.value for f in cert.certificate.getFingerprints()}
    assert aiortc_fps["sha-256"] == fingerprints[2]["value"]


@pytest.mark.parametrize(
    ("remote_role", "local_role"),
    [
        ("client", "server"),
        ("server", "client"),
        ("auto", "client"),
        (None, "client"),
        (7, "client"),
    ],
)
def test_local_role_is_auto_until_remote_parameters_resolve_it(remote_role, local_role) -> None:
    endpoint = DtlsEndpoint()
    assert endpoint.local_parameters()["role"] == "auto"
    params = remote_params(DtlsEndpoint(PEER_CERT), "x")
    if remote_role is None:
        del params["role"]
    else:
        params["role"] = remote_role
    assert endpoint.set_remote(params) == local_role
    assert endpoint.local_parameters()["role"] == local_role


def test_remote_parameters_can_be_set_only_once() -> None:
    endpoint = DtlsEndpoint()
    params = remote_params(DtlsEndpoint(PEER_CERT), "client")
    endpoint.set_remote(params)
    with pytest.raises(ProtocolError) as info:
        endpoint.set_remote(params)
    assert info.value.code == INVALID_STATE
    assert endpoint.role == "server"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ("nope", BAD_REQUEST),
        ({"role": "client"}, BAD_REQUEST),
        ({"role": "client", "fingerprints": [42]}, BAD_REQUEST),
        ({"role": "client", "fingerprints": [{"algorithm": "sha-256"}]}, BAD_REQUEST),
        ({"role": "client", "fingerprints": [{"algorithm": "md5", "value": "AA"}]}, UNSUPPORTED),
        ({"role": "boss", "fingerprints": [{"algorithm": "sha-256", "value": "AA"}]}, BAD_REQUEST),
    ],
)
def test_malformed_remote_parameters_fail_and_change_nothing(params, code) -> None:
    endpoint = DtlsEndpoint()
    with pytest.raises(ProtocolError) as info:
        endpoint.set_remote(params)
    assert info.value.code == code
    assert endpoint.role == "auto" and endpoint.remote_fingerprint is None
    endpoint.set_remote(
        {"fingerprints": [{"algorithm": "sha-256", "value": "AA"}]}
    )  # still possible


def test_last_fingerprint_with_a_known_algorithm_is_used() -> None:
    endpoint = DtlsEndpoint()
    endpoint.set_remote(
        {
            "fingerprints": [
                {"algorithm": "sha-1", "value": "aa:bb"},
                {"algorithm": "SHA-512", "value": "cc:dd"},
                {"algorithm": "md5", "value": "ee"},
            ]
        }
    )
    assert endpoint.remote_fingerprint == {"algorithm": "sha-512", "value": "CC:DD"}


# -- handshakes between two endpoints ------------------------------------------------------


@pytest.mark.parametrize("server_side", ["peer", "ours"])
def test_handshake_completes_in_both_role_assignments_with_matching_srtp_keys(server_side) -> None:
    ours, peer = make_pair(server_side)
    ours_events, peer_events = run(ours, peer)
    assert ours.state == peer.state == "connected"
    [mine], [theirs] = ours_events, peer_events
    assert isinstance(mine, DtlsConnected) and isinstance(theirs, DtlsConnected)
    assert mine.profile == theirs.profile == AEAD_AES_128_GCM
    assert (mine.local_key, mine.local_salt) == (theirs.remote_key, theirs.remote_salt)
    assert (mine.remote_key, mine.remote_salt) == (theirs.local_key, theirs.local_salt)
    assert len(mine.local_key) == 16 and len(mine.local_salt) == 12
    assert mine.local_key != mine.remote_key
    a, b = srtp_of(mine), srtp_of(theirs)
    assert b.unprotect_rtp(a.protect_rtp(rtp(1))) == rtp(1)
    assert a.unprotect_rtp(b.protect_rtp(rtp(2))) == rtp(2)
    assert "local_key" not in repr(mine)  # keys stay out of logs
    assert ours.get_timer() is None and peer.get_timer() is None


@pytest.mark.parametrize(
    ("peer_profiles", "expected"),
    [
        ((AES128_CM_SHA1_80,), AES128_CM_SHA1_80),
        ((AES128_CM_SHA1_32,), AES128_CM_SHA1_32),
        ((AES128_CM_SHA1_32, AES128_CM_SHA1_80), AES128_CM_SHA1_80),  # we serve: our order
    ],
)
def test_srtp_profile_negotiation(peer_profiles, expected) -> None:
    ours, peer = make_pair("ours", srtp_profiles=peer_profiles)
    [mine], [theirs] = run(ours, peer)
    assert mine.profile == theirs.profile == expected
    assert len(mine.local_salt) == 14
    assert srtp_of(theirs).unprotect_rtp(srtp_of(mine).protect_rtp(rtp(3))) == rtp(3)


@pytest.mark.parametrize("server_side", ["peer", "ours"])
def test_fingerprint_mismatch_fails(server_side) -> None:
    ours = DtlsEndpoint()
    peer = DtlsEndpoint(PEER_CERT)
    impostor = DtlsEndpoint(LocalCertificate())
    peer_role = "server" if server_side == "peer" else "client"
    # We were told the impostor's fingerprint, but the peer answers.
    ours.set_remote(remote_params(impostor, peer_role))
    peer.set_remote(remote_params(ours, "client" if peer_role == "server" else "server"))
    ours_events, peer_events = run(ours, peer)
    assert ours_events == [DtlsFailed("fingerprint mismatch (sha-256)")]
    assert ours.state == "failed" and ours.get_timer() is None
    assert not any(isinstance(e, DtlsConnected) for e in ours_events)
    # Later datagrams are ignored without error.
    assert ours.handle_datagram(b"\x16\xfe\xfd" + bytes(20), 1.0) == ([], [])


def test_garbage_never_raises_in_any_state_and_does_not_break_a_handshake() -> None:
    rng = random.Random(5)
    garbage = [b"", b"\x16", b"\x17\xfe\xfd" + bytes(10), bytes(200)] + [
        rng.randbytes(rng.randrange(1, 300)) for _ in range(50)
    ]
    garbage += [bytes([22, 0xFE, 0xFD]) + rng.randbytes(rng.randrange(10, 200)) for _ in range(50)]
    ours, peer = make_pair("peer")
    for data in garbage:  # state 'new'
        ours.handle_datagram(data, 0.0)
    injected = iter(garbage * 4)

    def with_noise(data: bytes) -> bool:
        for endpoint in (ours, peer):
            out, events = endpoint.handle_datagram(next(injected), 0.0)
            assert not any(isinstance(e, DtlsConnected) for e in events)
        return False

    ours_events, peer_events = run(ours, peer, drop=with_noise)
    assert [type(e) for e in ours_events] == [DtlsConnected]
    assert [type(e) for e in peer_events] == [DtlsConnected]
    for data in garbage:  # state 'connected'
        for endpoint in (ours, peer):
            out, events = endpoint.handle_datagram(data, 0.0)
            assert all(isinstance(d, bytes) for d in out)
    assert ours.state == peer.state == "connected"
    failed = DtlsEndpoint()
    failed.set_remote(remote_params(peer, "server"))
    failed.start(0.0)
    failed.handle_timer(HANDSHAKE_TIMEOUT)
    for data in garbage:  # state 'failed'
        assert failed.handle_datagram(data, 0.0) == ([], [])


def test_client_hello_arriving_before_start_is_replayed() -> None:
    # Recv transport: the browser (client) sends its ClientHello before updateTransport.
    ours = DtlsEndpoint()
    browser = DtlsEndpoint(PEER_CERT)
    browser.set_remote(remote_params(ours, "auto"))  # browser becomes client
    client_hello = browser.start(0.0)
    for data in client_hello:
        assert ours.handle_datagram(data, 0.0) == ([], [])
    assert ours.state == "new"
    assert ours.set_remote(remote_params(browser, "client")) == "server"
    flight = ours.start(0.1)
    assert flight, "the server flight answers the buffered ClientHello"
    queue = [(browser, d) for d in flight]
    events: list = []
    for _ in range(5):
        nxt = []
        for dst, data in queue:
            out, evs = dst.handle_datagram(data, 0.1)
            events += evs
            nxt += [(ours if dst is browser else browser, d) for d in out]
        queue = nxt
    assert ours.state == browser.state == "connected"
    assert len(events) == 2


def test_start_before_set_remote_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        DtlsEndpoint().start(0.0)


def test_lost_client_hello_is_retransmitted_on_the_timer() -> None:
    ours, peer = make_pair("peer")
    lost = ours.start(100.0)
    assert lost and lost[0][0] == 22  # a handshake record: the ClientHello
    peer.start(100.0)
    timer = ours.get_timer()
    assert timer is not None and 100.0 < timer <= 100.0 + 1.0
    # Too early (OpenSSL's real-time timer has not expired): nothing, the timer is re-armed.
    assert ours.handle_timer(100.01) == ([], [])
    deadline = time.monotonic() + 1.5
    resent: list[bytes] = []
    while not resent and time.monotonic() < deadline:
        time.sleep(0.05)
        resent, events = ours.handle_timer(ours.get_timer() or 0.0)
        assert events == []
    assert resent, "the ClientHello was not retransmitted"
    # Same handshake message, new record sequence number.
    assert resent[0][13:] == lost[0][13:] and resent[0][3:11] != lost[0][3:11]
    queue = [(peer, d) for d in resent]
    for _ in range(5):
        nxt = []
        for dst, data in queue:
            out, _ = dst.handle_datagram(data, 101.0)
            nxt += [(ours if dst is peer else peer, d) for d in out]
        queue = nxt
    assert ours.state == peer.state == "connected"


def test_lost_final_flight_of_ours_is_resent_when_the_client_retransmits() -> None:
    # Recv transport shape: the browser is the client; our CCS+Finished gets lost.
    ours, browser = make_pair("ours")
    ours.start(0.0)
    queue = [(ours, d) for d in browser.start(0.0)]
    while queue and ours.state != "connected":
        nxt = []
        for dst, data in queue:
            other = browser if dst is ours else ours
            nxt += [(other, d) for d in dst.handle_datagram(data, 0.0)[0]]
        queue = nxt
    assert ours.state == "connected" and browser.state == "connecting"
    assert queue and all(dst is browser for dst, _ in queue)  # our final flight: dropped
    deadline = time.monotonic() + 1.5
    resent: list[bytes] = []
    while not resent and time.monotonic() < deadline:
        time.sleep(0.05)
        resent, _ = browser.handle_timer(browser.get_timer() or 0.0)
    assert resent, "the client did not retransmit its flight"
    answer: list[bytes] = []
    for data in resent:
        out, events = ours.handle_datagram(data, 1.0)
        assert events == []  # already connected: no second event
        answer += out
    assert answer, "our final flight was not resent"
    events = [e for d in answer for e in browser.handle_datagram(d, 1.0)[1]]
    assert [type(e) for e in events] == [DtlsConnected] and browser.state == "connected"


def test_handshake_that_never_completes_fails_after_the_timeout() -> None:
    ours, _ = make_pair("peer")
    ours.start(50.0)
    assert ours.get_timer() <= 50.0 + HANDSHAKE_TIMEOUT
    assert ours.handle_timer(50.0 + HANDSHAKE_TIMEOUT - 0.5)[1] == []
    out, events = ours.handle_timer(50.0 + HANDSHAKE_TIMEOUT)
    assert events == [DtlsFailed("handshake timeout")] and out == []
    assert ours.state == "failed" and ours.get_timer() is None


def test_server_handshake_clock_starts_with_the_first_client_flight() -> None:
    ours, peer = make_pair("ours")
    assert ours.start(0.0) == [] and ours.get_timer() is None
    hello = peer.start(100.0)
    ours.handle_datagram(hello[0], 100.0)
    assert ours.handle_timer(100.0 + HANDSHAKE_TIMEOUT)[1] == [DtlsFailed("handshake timeout")]


def test_close_notify_closes_the_peer() -> None:
    ours, peer = make_pair("ours")
    run(ours, peer)
    notify = ours.close()
    assert ours.state == "closed" and len(notify) == 1 and notify[0][0] == 21  # alert
    out, events = peer.handle_datagram(notify[0], 5.0)
    assert events == [DtlsClosed("close_notify")] and peer.state == "closed"
    assert peer.handle_datagram(notify[0], 5.0) == ([], [])
    assert peer.close() == []  # already closed: nothing to send


def test_records_are_packed_into_datagrams_without_splitting_one() -> None:
    def record(size: int) -> bytes:
        return bytes([22, 0xFE, 0xFD]) + bytes(8) + size.to_bytes(2, "big") + bytes(size)

    r1, r2, r3 = record(500), record(600), record(1300)
    assert _pack_records(r1 + r2, 1200) == [r1 + r2]
    assert _pack_records(r1 + r2 + r1, 1200) == [r1 + r2, r1]
    assert _pack_records(r1 + r3 + r1, 1200) == [r1, r3, r1]
    assert _pack_records(r1 + b"\x16\xfe", 1200) == [r1 + b"\x16\xfe"]  # truncated tail kept
    assert is_dtls(r1) and not is_dtls(b"\x00\x01" + bytes(18)) and not is_dtls(b"\x80" * 20)


def test_every_fingerprint_algorithm_verifies() -> None:
    for algorithm in FINGERPRINT_ALGORITHMS:
        ours, peer = DtlsEndpoint(), DtlsEndpoint(PEER_CERT)
        ours.set_remote(remote_params(peer, "server", (algorithm,)))
        peer.set_remote(remote_params(ours, "client", (algorithm,)))
        run(ours, peer)
        assert ours.state == peer.state == "connected", algorithm


# -- against aiortc's RTCDtlsTransport --------------------------------------------------------


class MemoryIce:
    """Just what RTCDtlsTransport uses of an RTCIceTransport: role, _recv, _send."""

    def __init__(self, role: str, deliver) -> None:
        self.role = role
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._deliver = deliver

    async def _recv(self) -> bytes:
        return await self.inbox.get()

    async def _send(self, data: bytes) -> None:
        self._deliver(data)


@pytest.mark.parametrize(
    ("aiortc_role", "profiles"), [("client", None), ("server", None), ("client", "cm")]
)
def test_handshake_and_srtp_with_aiortc(aiortc_role, profiles) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours = DtlsEndpoint()
        events: list = []

        def to_ours(data: bytes) -> None:
            out, evs = ours.handle_datagram(data, loop.time())
            events.extend(evs)
            for d in out:
                ice.inbox.put_nowait(d)

        ice = MemoryIce("controlling", to_ours)
        theirs = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])  # type: ignore[arg-type]
        if profiles == "cm":
            theirs._srtp_profiles = [SRTP_AES128_CM_SHA1_80]
        theirs._set_role(aiortc_role)
        their_fps = [
            {"algorithm": f.algorithm, "value": f.value}
            for f in theirs.getLocalParameters().fingerprints
        ]
        ours.set_remote({"role": aiortc_role, "fingerprints": their_fps})
        for d in ours.start(loop.time()):
            ice.inbox.put_nowait(d)
        our_fps = [RTCDtlsFingerprint(**f) for f in ours.local_parameters()["fingerprints"]]
        await asyncio.wait_for(theirs.start(RTCDtlsParameters(fingerprints=our_fps)), 5)
        assert theirs.state == "connected"
        assert ours.state == "connected"
        [connected] = events
        assert connected.profile == (AES128_CM_SHA1_80 if profiles else AEAD_AES_128_GCM)
        srtp = srtp_of(connected)
        assert srtp.unprotect_rtp(theirs._tx_srtp.protect(rtp(7))) == rtp(7)
        assert theirs._rx_srtp.unprotect(srtp.protect_rtp(rtp(8))) == rtp(8)
        rr = bytes.fromhex("81c90001") + bytes(4)
        assert theirs._rx_srtp.unprotect_rtcp(srtp.protect_rtcp(rr)) == rr
        await theirs.stop()  # sends close_notify
        assert events[-1] == DtlsClosed("close_notify") and ours.state == "closed"

    asyncio.run(scenario())


def test_process_certificate_is_renewed_a_day_before_it_expires(monkeypatch) -> None:
    import datetime

    from tureen.workers.transport import dtls

    current = local_certificate()
    endpoint = DtlsEndpoint()
    soon = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(hours=20)
    monkeypatch.setattr(LocalCertificate, "expires", property(lambda self: soon))
    renewed = local_certificate()
    assert renewed is not current and dtls._local_certificate is renewed
    # A running endpoint keeps the identity it announced.
    assert endpoint.certificate is current
    assert endpoint.local_parameters()["fingerprints"] == current.fingerprints


# -- after the handshake: the SSL object is freed, the record keys are kept -----------------


def restricted_peer(ours: DtlsEndpoint, peer_role: str, cipher: str) -> DtlsEndpoint:
    """A peer offering (client) or accepting (server) only `cipher`, remote parameters set both
    ways; it keeps its SSL object, so OpenSSL itself reads what we seal and seals what we read."""
    cert = LocalCertificate()
    cert.ssl_context().set_cipher_list(cipher.encode())
    peer = DtlsEndpoint(cert)
    peer._release_ssl = lambda flight: None  # type: ignore[method-assign]
    ours_role = "client" if peer_role == "server" else "server"
    assert ours.set_remote(remote_params(peer, peer_role)) == ours_role
    assert peer.set_remote(remote_params(ours, ours_role)) == peer_role
    return peer


AEAD_SUITES = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"]


@pytest.mark.parametrize("peer_role", ["client", "server"])
@pytest.mark.parametrize("cipher", AEAD_SUITES)
def test_ssl_object_is_freed_and_openssl_peer_closes_us(cipher, peer_role) -> None:
    ours = DtlsEndpoint()
    peer = restricted_peer(ours, peer_role, cipher)
    run(ours, peer)
    assert ours.state == peer.state == "connected"
    assert ours._ssl is None and ours._sealed is not None  # 65-69 KiB less per transport
    assert peer._ssl is not None and peer._ssl.get_cipher_name() == cipher
    notify = peer.close()  # OpenSSL's own close_notify, sealed with the suite
    out, events = ours.handle_datagram(notify[0], 1.0)
    assert events == [DtlsClosed("close_notify")] and ours.state == "closed" and out == []
    assert ours._sealed is None and ours.close() == []


@pytest.mark.parametrize("peer_role", ["client", "server"])
@pytest.mark.parametrize("cipher", AEAD_SUITES)
def test_our_sealed_close_notify_closes_an_openssl_peer(cipher, peer_role) -> None:
    ours = DtlsEndpoint()
    peer = restricted_peer(ours, peer_role, cipher)
    run(ours, peer)
    assert ours._ssl is None
    [notify] = ours.close()
    assert notify[0] == 21 and notify[3:5] == b"\x00\x01"  # alert, epoch 1
    _, events = peer.handle_datagram(notify, 1.0)
    assert events == [DtlsClosed("close_notify")] and peer.state == "closed"


def test_non_aead_suite_keeps_the_ssl_object_and_still_closes() -> None:
    ours = DtlsEndpoint()
    peer = restricted_peer(ours, "client", "ECDHE-ECDSA-AES128-SHA")
    run(ours, peer)
    assert ours.state == "connected" and ours._ssl is not None and ours._sealed is None
    _, events = ours.handle_datagram(peer.close()[0], 1.0)
    assert events == [DtlsClosed("close_notify")]


def record(ctype: int, epoch: int, seq: int, body: bytes) -> bytes:
    """One DTLS 1.2 record, as an attacker would write it."""
    head = bytes([ctype, 0xFE, 0xFD]) + epoch.to_bytes(2, "big") + seq.to_bytes(6, "big")
    return head + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize("server_side", ["peer", "ours"])
def test_forged_or_garbled_alerts_after_the_handshake_do_not_close(server_side) -> None:
    ours, peer = make_pair(server_side)
    run(ours, peer)
    assert ours._ssl is None and ours.state == "connected"
    [notify] = peer.close()
    forged = [
        record(21, 0, 9, b"\x02\x00"),  # a cleartext fatal close_notify, epoch 0
        record(21, 0, 9, b"\x01\x00"),  # a cleartext close_notify
        record(21, 1, 9, b"\x01\x00"),  # cleartext in epoch 1
        record(21, 1, 9, bytes(26)),  # the size of a sealed alert, zeros
        record(21, 2, 1, notify[13:]),  # a real one moved to another epoch
        notify[:-1] + bytes([notify[-1] ^ 1]),  # a real one with its tag changed
        notify[:5] + b"\x00\x00\x00\x00\x00\x63" + notify[11:],  # its sequence number changed (AAD)
        notify[:-3],  # truncated
        record(23, 1, 2, bytes(40)),  # application data
        record(22, 1, 2, bytes(40)),  # a Finished that does not authenticate: no resend
    ]
    for data in forged:
        assert ours.handle_datagram(data, 2.0) == ([], []), data.hex()
    assert ours.state == "connected"
    # Several records in one datagram: the authentic close_notify after garbage still counts.
    _, events = ours.handle_datagram(forged[3] + notify, 2.0)
    assert events == [DtlsClosed("close_notify")]


def test_authentic_fatal_alert_closes_and_warning_alert_does_not() -> None:
    ours, peer = make_pair("ours")
    run(ours, peer)
    assert peer._sealed is not None
    warning = peer._sealed.seal(21, bytes([1, 100]))  # warning: no_renegotiation
    assert ours.handle_datagram(warning, 1.0) == ([], []) and ours.state == "connected"
    fatal = peer._sealed.seal(21, bytes([2, 40]))  # fatal: handshake_failure
    assert ours.handle_datagram(fatal, 1.0)[1] == [DtlsClosed("fatal alert 40")]


def test_final_flight_resends_are_bounded() -> None:
    ours, browser = make_pair("ours")
    browser._release_ssl = lambda flight: None  # type: ignore[method-assign]
    ours.start(0.0)
    flight5: list[bytes] = []
    queue = [(ours, d) for d in browser.start(0.0)]
    while queue and ours.state != "connected":
        nxt = []
        for dst, data in queue:
            if dst is ours:
                flight5.append(data)
            nxt += [(browser if dst is ours else ours, d) for d in dst.handle_datagram(data, 0.0)[0]]
        queue = nxt
    assert ours._ssl is None and ours._final_flight
    finished = flight5[-1]  # the datagram with the client's (encrypted) Finished
    answers = [ours.handle_datagram(finished, 1.0)[0] for _ in range(MAX_FINAL_FLIGHT_RESENDS + 3)]
    assert all(a == ours._final_flight for a in answers[:MAX_FINAL_FLIGHT_RESENDS])
    assert answers[MAX_FINAL_FLIGHT_RESENDS:] == [[], [], []]
    # The resent flight is good: the browser connects, and both can still close each other.
    events = [e for d in answers[0] for e in browser.handle_datagram(d, 1.0)[1]]
    assert [type(e) for e in events] == [DtlsConnected]
    assert browser.handle_datagram(ours.close()[0], 2.0)[1] == [DtlsClosed("close_notify")]
