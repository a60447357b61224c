"""The fan-out scenario over real WebRtcTransports: the harness plays every browser.

For each transport (the producer's and every consumer's) the harness, from the UDP socket
it later hands to rtpload: sends an ICE check with USE-CANDIDATE (the transport selects that
tuple), runs a DTLS handshake as the DTLS client with Tureen's own sans-I/O `DtlsEndpoint`
offering exactly one SRTP profile (so the transport must pick it), and exports the SRTP keys.
Once per transport, at set-up; then the C tools protect (sender) and unprotect + check
(sinks) at rate with those keys.

While the sockets live, a keepalive task sends an ICE check on every one every few seconds
(ICE-lite drops a tuple after 30 s without one, as browsers' consent checks prevent);
rtpload skips the STUN answers it finds at its sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any

from aioice import stun
from tureen.shared.client import TureenClient
from tureen.workers.transport.dtls import DtlsConnected, DtlsEndpoint, LocalCertificate, is_dtls

from .load import VIDEO_SIZE, Expect, Stream, Topology, udp_socket
from .scenarios import VIDEO_PT, Built, RoomDriver, _consumer_keys, _gather_chunked
from .srtp import PROFILE_NAMES, libsrtp_path

HANDSHAKE_TIMEOUT = 15.0  # seconds per transport (ICE + DTLS), bounded
KEEPALIVE_EVERY = 5.0  # seconds between ICE checks per transport (consent: 30 s)
HANDSHAKES_AT_ONCE = 25


@dataclass
class Browser:
    """The browser's side of one WebRtcTransport: its socket, the server's address and ICE
    credentials (for keepalives), and the SRTP keys once connected."""

    sock: socket.socket
    server: tuple[str, int]
    ufrag: str
    password: str
    connected: DtlsConnected | None = None


def ice_check(ufrag: str, password: str) -> bytes:
    """A nominating connectivity check, as a browser (controlling agent) sends it."""
    msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes={
        "USERNAME": f"{ufrag}:bench",
        "ICE-CONTROLLING": 0x5EED_5EED_5EED_5EED,
        "PRIORITY": 1853817087,
        "USE-CANDIDATE": None,
    })
    msg.add_message_integrity(password.encode())
    msg.add_fingerprint()
    return bytes(msg)


def _sha256_only(params: dict[str, Any], role: str) -> dict[str, Any]:
    return {"role": role, "fingerprints": [f for f in params["fingerprints"] if f["algorithm"] == "sha-256"]}


async def _recv(sock: socket.socket, timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 4096), max(0.001, timeout))
    except TimeoutError:
        return None


async def connect(browser: Browser, dtls: DtlsEndpoint) -> DtlsConnected:
    """ICE (one nominating check) then the DTLS handshake; bounded by HANDSHAKE_TIMEOUT."""
    sock, server = browser.sock, browser.server
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    check = ice_check(browser.ufrag, browser.password)
    answered = False
    for _ in range(20):  # a few retries: the first check may race the transport's creation
        sock.sendto(check, server)
        wait_until = min(deadline, time.monotonic() + 0.5)
        while time.monotonic() < wait_until:
            data = await _recv(sock, wait_until - time.monotonic())
            if data and data[0] < 4:
                msg = stun.parse_message(data)
                if msg.message_class != stun.Class.RESPONSE:
                    raise RuntimeError(f"ICE check to {server} refused: {msg.attributes.get('ERROR-CODE')}")
                answered = True
                break
        if answered or time.monotonic() >= deadline:
            break
    if not answered:
        raise RuntimeError(f"no ICE answer from {server}")
    for data in dtls.start(time.monotonic()):
        sock.sendto(data, server)
    while time.monotonic() < deadline:
        timer = dtls.get_timer()
        wait = deadline - time.monotonic() if timer is None else timer - time.monotonic()
        data = await _recv(sock, min(wait, deadline - time.monotonic()))
        if data is None:
            out, events = dtls.handle_timer(time.monotonic())
        elif is_dtls(data):
            out, events = dtls.handle_datagram(data, time.monotonic())
        else:
            continue  # a late STUN answer
        for datagram in out:
            sock.sendto(datagram, server)
        for ev in events:
            if isinstance(ev, DtlsConnected):
                return ev
            raise RuntimeError(f"DTLS with {server} ended: {ev}")
    raise RuntimeError(f"DTLS with {server} did not complete in {HANDSHAKE_TIMEOUT} s")


class WebRtcRoom(RoomDriver):
    """RoomDriver plus WebRTC transports whose browser side is this harness."""

    def __init__(self, client: TureenClient, room_id: str, profile: str) -> None:
        super().__init__(client, room_id)
        self.profile = PROFILE_NAMES[profile]
        self.certificate = LocalCertificate()

    async def webrtc_transport(self, peer: str, direction: str) -> tuple[int, Browser]:
        """A connected WebRtcTransport of `peer`: (its id, our browser side)."""
        tid, browser, dtls = await self.unconnected_transport(peer, direction)
        await self.connect_transport(tid, browser, dtls)
        return tid, browser

    async def unconnected_transport(self, peer: str, direction: str) -> tuple[int, Browser, DtlsEndpoint]:
        """A WebRtcTransport of `peer` created but not yet reached (no ICE, no DTLS): its id,
        our browser side and the DTLS client endpoint `connect_transport` will use."""
        tid = next(self._ids)
        dtls = DtlsEndpoint(self.certificate, srtp_profiles=[self.profile])
        answer = await self.req(
            peer, "createTransport", id=tid, direction=direction, options={"udp": True, "tcp": False},
            dtlsParameters=_sha256_only(dtls.local_parameters(), "client"),
        )
        candidate = next(c for c in answer["iceCandidates"] if c["protocol"] == "udp" and c["ip"] == "127.0.0.1")
        dtls.set_remote(_sha256_only(answer["dtlsParameters"], "server"))  # we are the DTLS client
        sock = udp_socket()
        sock.setblocking(False)
        ice = answer["iceParameters"]
        return tid, Browser(sock, (candidate["ip"], candidate["port"]), ice["usernameFragment"], ice["password"]), dtls

    async def connect_transport(self, tid: int, browser: Browser, dtls: DtlsEndpoint) -> None:
        """ICE and DTLS for one transport of `unconnected_transport`; its socket is closed if
        that fails."""
        try:
            browser.connected = await connect(browser, dtls)
        except BaseException:
            browser.sock.close()
            raise
        if browser.connected.profile != self.profile:
            browser.sock.close()
            raise RuntimeError(f"transport {tid} negotiated {browser.connected.profile}, not {self.profile}")


async def _keepalive(browsers: list[Browser]) -> None:
    """ICE consent for every transport while the scenario lives (cancelled at close)."""
    checks = [(b.sock, b.server, ice_check(b.ufrag, b.password)) for b in browsers]
    while True:
        await asyncio.sleep(KEEPALIVE_EVERY)
        for sock, server, check in checks:
            with contextlib.suppress(OSError):
                sock.sendto(check, server)


async def webrtc_fanout(client: TureenClient, room_id: str, n: int, profile: str) -> Built:
    """One producer -> n spy consumers, every one on its own connected WebRtcTransport, SRTP
    with `profile` ('gcm' or 'cm') end to end."""
    room = WebRtcRoom(client, room_id, profile)
    await room.create()
    ssrc = 0x1000_0001
    await room.join("src")
    browsers: list[Browser] = []
    try:
        send_tid, source = await room.webrtc_transport("src", "send")
        browsers.append(source)
        await room.produce("src", send_tid, "video", ssrc)
        assert source.connected is not None
        stream = Stream(source.sock, source.server[1], ssrc, VIDEO_PT, VIDEO_SIZE, ts_step=3000,
                        key=source.connected.local_key_salt)
        expects: list[Expect] = []
        names = [f"c{i}" for i in range(n)]
        for start in range(0, n, HANDSHAKES_AT_ONCE):
            batch = names[start : start + HANDSHAKES_AT_ONCE]
            joined = await _gather_chunked([room.join(name, spy=True) for name in batch])
            made = await asyncio.gather(*(room.webrtc_transport(name, "recv") for name in batch),
                                        return_exceptions=True)
            for result in made:
                if isinstance(result, tuple):
                    browsers.append(result[1])
            failed = [r for r in made if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
            enables = []
            for name, answer, (tid, browser) in zip(batch, joined, made, strict=True):  # type: ignore[misc]
                cid, cssrc, cpt = _consumer_keys(answer["peers"][0]["consumers"][0])
                enables.append(room.enable(name, cid, tid))
                assert browser.connected is not None
                expects.append(Expect(browser.sock, cssrc, cpt, 0, key=browser.connected.remote_key_salt))
            await _gather_chunked(enables)
    except BaseException:
        for b in browsers:
            b.sock.close()
        raise
    keepalive = asyncio.get_running_loop().create_task(_keepalive(browsers))
    built = Built(
        topology=Topology([stream], expects, srtp=profile, srtp_lib=str(libsrtp_path())),
        input_ports=[source.server[1]],
        consumers=n,
        sockets=[b.sock for b in browsers],
    )
    built.on_close.append(keepalive.cancel)
    return built

