"""The native drain (workers/_native.c, Receiver.drain; udp.py's connected-socket drain with
the native receive) against the Python drain (`native_rx = false`: ctypes recvmmsg, a Python
loop per datagram, pylibsrtp's unprotect, the Python receive), on the same captured packets
sent through real loopback sockets: the same datagrams out to every consumer, the same
counters of the forwarder, the streams, the consumers, the endpoint (datagrams, octets,
receive errors) and the WebRTC transport (SRTP errors, SRTCP, media before the keys,
datagrams not demuxed). For WebRTC, replayed, tampered and oversized SRTP packets must be
refused the same way on both paths, and the datagrams that are not SRTP media (SRTCP, STUN,
other) keep going through the transport's Python handler, in order. A stranger's datagram
(another source than the connected remote) never reaches the receive on either path.

Each scenario also runs a third time on the native loop (workers/native_loop.py): the
connected socket is then drained by the loop's selector in C (select with no wait once the
socket is readable), and must give what the native drain called from udp.py gives."""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
from captured import Header, Rig, load, with_header
from test_native_rx import snapshot
from tureen.workers import native, native_loop
from tureen.workers.transport.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpContext
from tureen.workers.transport.udp import UdpEndpoint
from tureen.workers.transport.webrtc import WebRtcTransport

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not native.available(), reason="the native core is not built"),
]


def pump(endpoint: UdpEndpoint, sender: socket.socket, datagrams: list[bytes]) -> None:
    """Send `datagrams` from `sender` to the endpoint's port, then run its connected socket's
    drain (what the event loop does when the socket is readable) until it has taken them
    all; bounded: 2 s of waiting per drain at most."""
    want = endpoint.datagrams_in + endpoint.recv_errors + len(datagrams)
    for d in datagrams:
        sender.sendto(d, endpoint.local)
    for _ in range(len(datagrams) + 1):
        if endpoint.datagrams_in + endpoint.recv_errors >= want:
            return
        ready, _, _ = select.select([endpoint._conn], [], [], 2.0)
        assert ready, "the datagrams never arrived"
        drain_ready(endpoint)
    assert endpoint.datagrams_in + endpoint.recv_errors >= want


def drain_ready(endpoint: UdpEndpoint) -> None:
    """What the event loop does when the connected socket is readable: on the native loop
    its selector's select (no wait: the socket is readable), else udp.py's reader."""
    selector = native_loop.selector_of(endpoint._loop)
    if selector is not None:
        assert endpoint._reader is not None, "the native loop does not drain this socket"
        assert selector.select(0) == []
    else:
        endpoint._drain_connected()


def endpoint_counts(endpoint: UdpEndpoint) -> dict[str, int]:
    return {
        "in": endpoint.datagrams_in,
        "octets": endpoint.octets_in,
        "errors": endpoint.recv_errors,
    }


def both(
    scenario: Callable[[Rig], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int]]:
    """`scenario` with the Python drain and receive, then with the native drain, then on the
    native loop (which must give what the native drain gives): the data path's snapshot plus
    what the scenario adds, each; and the native (fast, slow) counts."""
    results = []
    counts = []
    for core in ("native-pyrx", "native", "native-loop"):
        loop = native_loop.new_event_loop() if core == "native-loop" else None
        rig = Rig("native" if loop is not None else core, loop=loop)
        try:
            assert (rig.fwd.native_drain(rig.send_transport, False) is None) == (
                core == "native-pyrx"
            )
            extra = scenario(rig)
            results.append({**snapshot(rig), **extra})
            if rig.fwd.rx is not None:
                counts.append((rig.fwd.rx.fast, rig.fwd.rx.slow))
        finally:
            rig.close()
            if loop is not None:
                loop.close()
    assert results[2] == results[1], "the native loop's drain differs from the native drain"
    assert counts[1] == counts[0]
    return results[0], results[1], counts[0]


def test_plain_drain_forwards_what_the_python_drain_does() -> None:
    """VP8 and opus through a plain transport's socket, several drains (one of more than the
    64 datagrams a drain takes), with the drops and RTCP among them, an oversized datagram
    (larger than a receive slot: a counted receive error), and a stranger's packet (on the
    open socket: dropped as a stranger, never received)."""
    vp8, opus = load("vp8"), load("opus")
    mixed = [p for pair in zip(vp8[:30], opus[:30], strict=True) for p in pair]
    rr = struct.pack("!BBHI", 0x80, 201, 1, Header.of(vp8[0]).ssrc)

    def scenario(rig: Rig) -> dict[str, Any]:
        video, audio = rig.producer("vp8"), rig.producer("opus")
        rig.consumer(video, 0xA1)
        rig.consumer(video, 0xA2)
        rig.consumer(audio, 0xA3)
        endpoint = rig.send_transport.endpoint
        pump(endpoint, rig.sender, mixed[:5])
        pump(endpoint, rig.sender, mixed[5:] + vp8[30:40])  # 65: two drains
        pump(endpoint, rig.sender, [rr, b"\x00" * 20, vp8[39][:11], bytes(5000), opus[30]])
        stranger = rig.socket()
        stranger.sendto(opus[31], endpoint.local)
        ready, _, _ = select.select([endpoint._open], [], [], 2.0)
        assert ready
        endpoint._drain_open()
        return {"endpoint": endpoint_counts(endpoint)}

    python, nat, (fast, slow) = both(scenario)
    assert python == nat
    counters = nat["forwarder"]
    assert counters["rtpIn"] == 71 and counters["rtcpIn"] == 1 and counters["dropStranger"] == 1
    assert counters["dropNotRtp"] == 1 and counters["dropTruncated"] == 1
    assert nat["endpoint"]["in"] == 75 and nat["endpoint"]["errors"] == 1  # 74 + the stranger's
    assert fast > 0 and slow > 0 and fast + slow == 74  # the stranger's never got there


def test_a_refused_send_is_one_receive_error_on_both_drains() -> None:
    """An ICMP port unreachable of an earlier send fails the next receive once
    (ECONNREFUSED): counted, and the drain goes on to the datagrams behind it."""

    def scenario(rig: Rig) -> dict[str, Any]:
        audio = rig.producer("opus")
        rig.consumer(audio, 0xB1)
        gone = rig.socket()
        transport = rig.transport(gone)
        gone.close()
        endpoint = transport.endpoint
        endpoint.send(
            b"\x80" * 20
        )  # answered by ICMP (on loopback within the send): a socket error
        ready, _, _ = select.select([endpoint._conn], [], [], 2.0)  # a pending error is readable
        assert ready
        drain_ready(endpoint)
        return {"endpoint": endpoint_counts(endpoint)}

    python, nat, _ = both(scenario)
    assert python == nat
    assert nat["endpoint"] == {"in": 0, "octets": 0, "errors": 1}


# -- WebRTC: SRTP unprotected in the drain ---------------------------------------------------

LOCAL = {AEAD_AES_128_GCM: bytes(range(28)), AES128_CM_SHA1_80: bytes(range(30))}
REMOTE = {AEAD_AES_128_GCM: bytes(range(100, 128)), AES128_CM_SHA1_80: bytes(range(100, 130))}


def webrtc_sender(rig: Rig, remote: socket.socket) -> WebRtcTransport:
    """A WebRTC transport as producers' transport of `rig`, its ICE tuple `remote` selected
    (the connected socket), without keys yet (set `srtp` for the DTLS handshake's end)."""
    tid = len(rig.transports) + 1
    transport = WebRtcTransport(
        tid,
        rig.listener,
        rig.loop,
        rig.fwd,
        [("127.0.0.1", None)],
        20000,
        59999,
        {"udp": True, "tcp": False},
    )
    transport.endpoint.connect(remote.getsockname())
    rig.router.add_transport(transport)
    rig.transports.append(transport)
    rig.send_transport = transport
    return transport


def protect(peer: SrtpContext, packet: bytes) -> bytes:
    """The sender's SRTP packet (in place, as the data path does: pylibsrtp's bytes call
    refuses 1472-byte packets that the receive takes)."""
    buf = bytearray(packet) + bytearray(32)
    return bytes(buf[: peer.protect_rtp_into(buf, len(packet))])


@pytest.mark.parametrize("profile", [AEAD_AES_128_GCM, AES128_CM_SHA1_80])
def test_webrtc_drain_unprotects_and_forwards_what_the_python_path_does(profile: str) -> None:
    """SRTP VP8 and opus (audio levels read) from the selected tuple: before the keys (media
    before SRTP), then unprotected and forwarded; a replayed and a tampered packet, one too
    large for SRTP, SRTCP, a STUN-range and an undemuxable datagram in between, all in the
    order they came."""
    vp8, opus = load("vp8"), load("opus")
    peer = SrtpContext(profile, REMOTE[profile], LOCAL[profile])  # the browser's view
    protected_vp8 = [protect(peer, p) for p in vp8[:40]]
    protected_opus = [protect(peer, p) for p in opus[:40]]
    tampered = bytearray(protect(peer, with_header(vp8[39], seq=0x7000)))
    tampered[30] ^= 1
    srtcp = peer.protect_rtcp(struct.pack("!BBHI", 0x80, 201, 1, Header.of(vp8[0]).ssrc))
    too_large = bytes([0x80, 96]) + bytes(1600)

    def scenario(rig: Rig) -> dict[str, Any]:
        browser = rig.socket()
        transport = webrtc_sender(rig, browser)
        video, audio = rig.producer("vp8"), rig.producer("opus")
        rig.consumer(video, 0xC1)
        rig.consumer(audio, 0xC2)
        rig.consumer(audio, 0xC3)
        endpoint = transport.endpoint
        pump(endpoint, browser, protected_opus[:2])  # before DTLS ended: media before SRTP
        transport.srtp = srtp = SrtpContext(profile, LOCAL[profile], REMOTE[profile])
        unprotect, calls = srtp.unprotect_rtp_into, []

        def counted(buf: bytearray, n: int) -> int:  # the Python path's unprotect, counted
            calls.append(n)
            return unprotect(buf, n)

        srtp.unprotect_rtp_into = counted  # type: ignore[method-assign]
        mixed = [
            p for pair in zip(protected_vp8[:28], protected_opus[2:30], strict=True) for p in pair
        ]
        pump(endpoint, browser, mixed[:10])
        pump(
            endpoint,
            browser,
            [mixed[3], bytes(tampered), srtcp, b"\x01" + bytes(19), b"\x50" * 20, too_large],
        )
        pump(endpoint, browser, mixed[10:] + protected_vp8[28:40] + protected_opus[30:40])
        return {
            "endpoint": endpoint_counts(endpoint),
            "transport": {
                name: getattr(transport, name)
                for name in (
                    "srtp_errors",
                    "srtcp_in",
                    "media_before_srtp",
                    "not_demuxed",
                    "strangers",
                )
            },
            "rtcp": list(rig.listener.rtcp),
            "python unprotects": len(calls),
        }

    python, nat, (fast, slow) = both(scenario)
    # Python unprotected each SRTP packet after the keys (56 + 22 + the replay, the tampered
    # and the too large one); the native drain none.
    assert (python.pop("python unprotects"), nat.pop("python unprotects")) == (81, 0)
    assert python == nat
    assert nat["transport"] == {
        "srtp_errors": 3,
        "srtcp_in": 1,
        "media_before_srtp": 2,
        "not_demuxed": 1,
        "strangers": 0,
    }
    assert nat["forwarder"]["rtpIn"] == 78 and nat["forwarder"]["rtpOut"] == 40 + 2 * 38
    assert len(nat["rtcp"]) == 1
    assert sorted(len(c["out"]) for c in nat["consumers"].values()) == [38, 38, 40]
    assert fast > 60 and fast + slow == 78  # SRTP unprotected in C: the receive's paths after it


def test_webrtc_drain_with_audio_levels_adds_the_same_levels() -> None:
    """Opus with an RFC 6464 level first in a one-byte extension block, SRTP: the levels
    summed by the native drain are the Python path's."""
    opus = load("opus")
    profile = AEAD_AES_128_GCM
    peer = SrtpContext(profile, REMOTE[profile], LOCAL[profile])

    def with_level(p: bytes, level: int) -> bytes:
        block = bytes([0x10, 0x80 | level, 0, 0])
        return bytes([p[0] | 0x10]) + p[1:12] + struct.pack("!HH", 0xBEDE, 1) + block + p[12:]

    packets = [protect(peer, with_level(p, 20 + i)) for i, p in enumerate(opus[:30])]

    def scenario(rig: Rig) -> dict[str, Any]:
        browser = rig.socket()
        transport = webrtc_sender(rig, browser)
        audio = rig.producer("opus")
        audio.ext_map = bytes([0, 1] + [0] * 254)
        for stream in audio.streams:
            stream.ext_map = audio.ext_map
            stream.level_id = 1
        rig.consumer(audio, 0xD1)
        transport.srtp = SrtpContext(profile, LOCAL[profile], REMOTE[profile])
        pump(transport.endpoint, browser, packets)
        return {}

    python, nat, (fast, slow) = both(scenario)
    assert python == nat
    fields = next(iter(nat["streams"].values()))["fields"]
    assert fields["level_count"] == 30 and fields["level_sum"] == sum(range(20, 50))
    assert (fast, slow) == (30, 0)
