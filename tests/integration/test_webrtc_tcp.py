"""ICE-TCP passive candidates (RFC 6544, RFC 4571 framing) in a real server.

The browser side is played by the test itself over a real TCP socket: framed STUN checks
(tests/support.py), a DTLS handshake driven by our own sans-I/O DtlsEndpoint as the peer,
and SRTP with SrtpContext. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from typing import Any

import pytest
from aioice import stun
from support import (
    drain,
    opus_parameters,
    parse_rtp,
    peer_capabilities,
    rtp_packet,
    stun_answer,
    stun_check,
    udp_socket,
)
from tureen.shared.client import TureenClient
from tureen.workers.transport import tcp
from tureen.workers.transport.dtls import DtlsConnected, DtlsEndpoint, LocalCertificate
from tureen.workers.transport.ice_lite import ice_candidate_priority
from tureen.workers.transport.srtp import SrtpContext
from tureen.workers.transport.tcp import Deframer, frame

pytestmark = pytest.mark.timeout(120)

TRANSPORT_ID = 4343


class TcpPeer:
    """The browser's end of an ICE-TCP connection: RFC 4571 frames over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._deframer = Deframer(max_frame=65535)
        self._frames: deque[bytes] = deque()

    @classmethod
    async def connect(cls, candidate: dict[str, Any]) -> TcpPeer:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(candidate["ip"], candidate["port"]), 5
        )
        return cls(reader, writer)

    @property
    def local(self) -> tuple[str, int]:
        return self.writer.get_extra_info("sockname")[:2]

    async def send(self, packet: bytes) -> None:
        self.writer.write(frame(packet))
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not self._frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no frame within {timeout} s")
            data = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not data:
                raise EOFError("connection closed by the server")
            self._frames.extend(self._deframer.feed(data))
        return self._frames.popleft()

    async def stun(self, request: bytes) -> stun.Message:
        """Send a check; return the answer (skipping any non-STUN frame before it)."""
        await self.send(request)
        while True:
            packet = await self.recv()
            if packet[0] < 4:
                return stun.parse_message(packet)

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server closes the connection (frames before that are dropped)."""
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        return True

    def close(self) -> None:
        self.writer.close()


async def join(client: TureenClient, room_id: str, name: str) -> None:
    settings = await client.peer_request(room_id, None, {"method": "queryRoom", "target": "room"})
    await client.peer_request(
        room_id,
        None,
        {"method": "join", "target": "room", "peerName": name,
         "rtpCapabilities": peer_capabilities(settings["rtpCapabilities"]), "spy": False},
    )


async def create_transport(
    client: TureenClient, room_id: str, name: str, options: dict, dtls: dict | None = None
) -> dict:
    request: dict[str, Any] = {
        "method": "createTransport", "target": "peer", "id": TRANSPORT_ID, "direction": "send",
        "options": options,
    }
    if dtls is not None:
        request["dtlsParameters"] = dtls
    return await client.peer_request(room_id, name, request)


async def plain_transport(
    client: TureenClient, room_id: str, name: str, transport_id: int, direction: str, sock
) -> tuple[int, tuple[str, int]]:
    """A plain transport of `name` towards `sock`: (its id, the server's address)."""
    answer = await client.peer_request(
        room_id,
        name,
        {"method": "createTransport", "target": "peer", "id": transport_id, "direction": direction,
         "options": {}, "plainRtpParameters": {"ip": "127.0.0.1", "port": sock.getsockname()[1]}},
    )
    return transport_id, (answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"])


async def worker_transport(client: TureenClient, room_id: str, name: str) -> dict:
    dump = await client.dump_room(room_id)
    peer = next(p for p in dump["peers"] if p["name"] == name)
    worker = peer["transports"][0]["worker"]
    state = await client.dump_worker(worker)
    # The first webrtc transport of this peer on its worker (the lowest worker id).
    return next(t for t in state["transports"] if t["kind"] == "webrtc")


def sha256_only(params: dict, role: str) -> dict:
    return {"role": role, "fingerprints": [f for f in params["fingerprints"] if f["algorithm"] == "sha-256"]}


# ---------------------------------------------------------------------------------------


async def test_candidates_follow_the_options(media_room) -> None:
    client, room_id = media_room
    await join(client, room_id, "dave")
    both = await create_transport(client, room_id, "dave", {"preferTcp": True})
    udp_c, tcp_c = both["iceCandidates"]
    assert (udp_c["protocol"], tcp_c["protocol"], tcp_c["tcpType"]) == ("udp", "tcp", "passive")
    assert "tcpType" not in udp_c and tcp_c["foundation"] == "tcpcandidate"
    # Same port number when it is free. Nearly always, but the parallel suite's other servers
    # hold TCP listeners in the same range: one of three fresh transports must get it.
    same = [tcp_c["port"] == udp_c["port"]]
    for tid in (201, 202):
        if any(same):
            break
        again = await client.peer_request(
            room_id, "dave",
            {"method": "createTransport", "target": "peer", "id": tid, "direction": "recv",
             "options": {"preferTcp": True}},
        )  # fmt: skip
        same.append(again["iceCandidates"][1]["port"] == again["iceCandidates"][0]["port"])
    assert any(same), "the TCP listener never took its UDP socket's port number"
    assert tcp_c["priority"] == ice_candidate_priority(preferred_family=False, preferred_protocol=True)
    assert udp_c["priority"] < tcp_c["priority"]
    with pytest.raises(Exception, match="at least one of udp and tcp"):
        await client.peer_request(
            room_id, "dave",
            {"method": "createTransport", "target": "peer", "id": 99, "direction": "send",
             "options": {"udp": False, "tcp": False}},
        )


async def tcp_transport(
    client: TureenClient, room_id: str, name: str, transport_id: int, direction: str
) -> tuple[TcpPeer, SrtpContext]:
    """A TCP-only WebRTC transport of `name`, connected: ICE (a wrong password first, then
    the right one) and DTLS over framed TCP, the test's DtlsEndpoint as the browser."""
    browser = DtlsEndpoint(LocalCertificate())
    answer = await client.peer_request(
        room_id, name,
        {"method": "createTransport", "target": "peer", "id": transport_id, "direction": direction,
         "options": {"udp": False, "tcp": True},
         "dtlsParameters": sha256_only(browser.local_parameters(), "server")},
    )
    assert answer["dtlsParameters"]["role"] == "client"
    [candidate] = answer["iceCandidates"]
    assert candidate["protocol"] == "tcp" and candidate["tcpType"] == "passive"
    assert candidate["type"] == "host" and candidate["foundation"] == "tcpcandidate"
    ice = answer["iceParameters"]
    peer = await TcpPeer.connect(candidate)

    # ICE: a wrong password gets a framed 401 and changes nothing; the right one succeeds.
    wrong = await peer.stun(stun_check(ice["usernameFragment"], "x" * 32, use_candidate=True))
    assert wrong.error_code == 401
    ok = await peer.stun(stun_check(ice["usernameFragment"], ice["password"], use_candidate=True))
    assert ok.message_class == stun.Class.RESPONSE
    assert ok.attributes["XOR-MAPPED-ADDRESS"] == peer.local
    assert ok.check_message_integrity(ice["password"].encode())
    await client.next_event(
        lambda e: e.get("event") == "transport.iceState" and e.get("state") == "completed"
    )

    # DTLS: the server is the client (we said 'server'); its flights come framed.
    assert browser.set_remote(sha256_only(answer["dtlsParameters"], "client")) == "server"
    browser.start(time.monotonic())
    connected: DtlsConnected | None = None
    deadline = time.monotonic() + 10
    while connected is None:
        assert time.monotonic() < deadline, "DTLS over TCP did not complete in 10 s"
        packet = await peer.recv()
        if not 20 <= packet[0] <= 63:
            continue
        out, events = browser.handle_datagram(packet, time.monotonic())
        for data in out:
            await peer.send(data)
        connected = next((e for e in events if isinstance(e, DtlsConnected)), None)
    await client.next_event(
        lambda e: e.get("event") == "transport.dtlsState" and e.get("state") == "connected", timeout=10
    )
    return peer, SrtpContext(connected.profile, connected.local_key_salt, connected.remote_key_salt)


async def test_ice_dtls_and_srtp_over_tcp_both_ways(media_room) -> None:
    client, room_id = media_room
    await join(client, room_id, "carol")
    recv_peer, recv_srtp = await tcp_transport(client, room_id, "carol", TRANSPORT_ID, "recv")
    send_peer, send_srtp = await tcp_transport(client, room_id, "carol", TRANSPORT_ID + 1, "send")
    sock = udp_socket()
    stop = asyncio.Event()
    sender: asyncio.Task | None = None
    try:
        state = await worker_transport(client, room_id, "carol")
        assert state["iceSelectedTuple"] == [*recv_peer.local, "tcp"] and state["dtlsState"] == "connected"

        # A plain producer of alice reaches carol's consumer over TCP, as SRTP.
        await join(client, room_id, "alice")
        plain_send, server_addr = await plain_transport(client, room_id, "alice", 6000, "send", sock)
        plain_recv, _ = await plain_transport(client, room_id, "alice", 6001, "recv", sock)
        await client.peer_request(
            room_id, "alice",
            {"method": "createProducer", "target": "peer", "id": 700, "kind": "audio",
             "transportId": plain_send, "rtpParameters": opus_parameters(1_111_111), "paused": False},
        )
        consumer = await client.next_notification("carol", "newConsumer", timeout=10)
        await client.peer_request(
            room_id, "carol",
            {"method": "enableConsumer", "target": "peer", "id": consumer["id"],
             "transportId": TRANSPORT_ID, "paused": False},
        )

        async def send_opus() -> None:
            for seq in range(1000):
                if stop.is_set():
                    return
                sock.sendto(rtp_packet(seq, seq * 960, 1_111_111, 111), server_addr)
                await asyncio.sleep(0.01)

        sender = asyncio.get_running_loop().create_task(send_opus())
        got: list[tuple[int, int, int, int]] = []
        deadline = time.monotonic() + 10
        while len(got) < 30:
            assert time.monotonic() < deadline, f"carol got {len(got)} RTP packets over TCP"
            packet = await recv_peer.recv()
            if 128 <= packet[0] <= 191 and not 192 <= packet[1] <= 223:
                got.append(parse_rtp(recv_srtp.unprotect_rtp(packet)))
        assert {g[3] for g in got} == {consumer["rtpParameters"]["encodings"][0]["ssrc"]}
        assert {g[0] for g in got} == {consumer["rtpParameters"]["codecs"][0]["payloadType"]}
        stop.set()
        await asyncio.wait_for(sender, 5)
        await asyncio.to_thread(drain, sock, 0.2)  # nothing for alice yet; empty the socket

        # Carol's producer over TCP reaches alice's plain consumer.
        await client.peer_request(
            room_id, "carol",
            {"method": "createProducer", "target": "peer", "id": 701, "kind": "audio",
             "transportId": TRANSPORT_ID + 1, "rtpParameters": opus_parameters(2_222_222),
             "paused": False},
        )
        back = await client.next_notification("alice", "newConsumer", timeout=10)
        await client.peer_request(
            room_id, "alice",
            {"method": "enableConsumer", "target": "peer", "id": back["id"],
             "transportId": plain_recv, "paused": False},
        )
        for seq in range(60):
            await send_peer.send(send_srtp.protect_rtp(rtp_packet(seq, seq * 960, 2_222_222, 111)))
        rtp: list = []
        deadline = time.monotonic() + 10
        while len(rtp) < 50 and time.monotonic() < deadline:  # RTCP may come in between
            packets = await asyncio.to_thread(drain, sock, 0.5, 50 - len(rtp))
            rtp += [parse_rtp(p) for p in packets if p[0] >> 6 == 2 and not 192 <= p[1] <= 223]
        assert len(rtp) >= 50, f"alice's plain socket got {len(rtp)} RTP packets"
        assert {r[3] for r in rtp} == {back["rtpParameters"]["encodings"][0]["ssrc"]}
        assert {r[0] for r in rtp} == {back["rtpParameters"]["codecs"][0]["payloadType"]}

        # Closing a transport closes its TCP connection.
        await client.peer_notify(
            room_id, "carol",
            {"method": "closeTransport", "target": "peer", "notification": True, "id": TRANSPORT_ID},
        )
        assert await recv_peer.closed_by_server()
    finally:
        stop.set()
        if sender is not None and not sender.done():
            await asyncio.wait_for(sender, 5)
        sock.close()
        recv_peer.close()
        send_peer.close()


async def test_selected_tcp_connection_closing_fails_the_transport(media_room) -> None:
    client, room_id = media_room
    await join(client, room_id, "erin")
    answer = await create_transport(client, room_id, "erin", {"udp": False, "tcp": True})
    ice = answer["iceParameters"]
    peer = await TcpPeer.connect(answer["iceCandidates"][0])
    ok = await peer.stun(stun_check(ice["usernameFragment"], ice["password"], use_candidate=True))
    assert ok.message_class == stun.Class.RESPONSE
    peer.close()
    await client.next_event(
        lambda e: e.get("event") == "transport.iceState" and e.get("state") == "disconnected", timeout=10
    )
    event = await client.next_event(lambda e: e.get("event") == "transport.closed", timeout=10)
    assert "TCP" in event["reason"]
    await client.next_notification("erin", "transportClosed", timeout=10, id=TRANSPORT_ID)


async def test_udp_tuple_takes_over_when_the_selected_tcp_connection_closes(media_room) -> None:
    client, room_id = media_room
    await join(client, room_id, "frank")
    answer = await create_transport(client, room_id, "frank", {})
    udp_c, tcp_c = answer["iceCandidates"]
    ice = answer["iceParameters"]
    peer = await TcpPeer.connect(tcp_c)
    sock = udp_socket()
    try:
        ok = await peer.stun(stun_check(ice["usernameFragment"], ice["password"], use_candidate=True))
        assert ok.message_class == stun.Class.RESPONSE
        # A UDP check without USE-CANDIDATE: valid, not selected.
        udp_ok = await asyncio.to_thread(
            stun_answer, sock, stun_check(ice["usernameFragment"], ice["password"]), (udp_c["ip"], udp_c["port"])
        )
        assert udp_ok.message_class == stun.Class.RESPONSE
        state = await worker_transport(client, room_id, "frank")
        assert state["iceSelectedTuple"] == [*peer.local, "tcp"]
        assert list(sock.getsockname()) in state["iceTuples"] and state["connected"] is False
        peer.close()
        deadline = time.monotonic() + 5
        while state["iceSelectedTuple"] != list(sock.getsockname()):
            assert time.monotonic() < deadline, f"UDP tuple not selected: {state}"
            await asyncio.sleep(0.05)
            state = await worker_transport(client, room_id, "frank")
        assert state["iceState"] == "completed" and state["connected"] is True  # UDP connected
        assert state["tcpConnections"] == []
        assert not [e for e in client.pending_events() if e.get("event") == "transport.closed"]
    finally:
        peer.close()
        sock.close()


async def test_garbage_over_tcp_is_counted_and_harmless(media_room) -> None:
    client, room_id = media_room
    await join(client, room_id, "mallory")
    answer = await create_transport(client, room_id, "mallory", {"udp": False, "tcp": True})
    candidate = answer["iceCandidates"][0]
    ice = answer["iceParameters"]
    rng = random.Random(6544)
    peers: list[TcpPeer] = []
    try:
        # A huge length: closed at once.
        huge = await TcpPeer.connect(candidate)
        peers.append(huge)
        huge.writer.write(b"\xff\xff" + bytes(64))
        assert await huge.closed_by_server()
        # Random bytes: closed by bad framing (a length above the max comes soon enough).
        noise = await TcpPeer.connect(candidate)
        peers.append(noise)
        noise.writer.write(b"\x40\x00" + rng.randbytes(20000))
        assert await noise.closed_by_server()
        # A stranger who frames correctly but never sends STUN: RTP, DTLS, empty frames,
        # unknown first bytes... all dropped and counted; closed after the STUN timeout.
        stranger = await TcpPeer.connect(candidate)
        peers.append(stranger)
        for i in range(50):
            stranger.writer.write(frame(rtp_packet(i, i, 1234, 111)))
            stranger.writer.write(frame(bytes([rng.choice([22, 70, 200, 255])]) + rng.randbytes(100)))
            stranger.writer.write(b"\x00\x00")
        # Bad STUN: unparsable, and a check with the wrong password.
        stranger.writer.write(frame(b"\x00\x01\x00\x00" + rng.randbytes(40)))
        wrong = await stranger.stun(stun_check(ice["usernameFragment"], "y" * 32))
        assert wrong.error_code == 401
        # More connections than a transport keeps pending: the extra ones are refused.
        extra = [await TcpPeer.connect(candidate) for _ in range(tcp.MAX_PENDING + 2)]
        peers += extra
        # A real peer still gets through once the pending slots free up; meanwhile the
        # stranger is closed for lack of a valid check (after tcp.STUN_TIMEOUT, 10 s).
        assert await stranger.closed_by_server(timeout=tcp.STUN_TIMEOUT + 5)
        state = await worker_transport(client, room_id, "mallory")
        assert state["tcpFramingErrors"] >= 2
        assert state["tcpStrangers"] >= 100 and state["strangers"] >= 100
        assert state["tcpStunTimeouts"] >= 1
        assert state["tcpRefused"] >= 1
        assert state["iceState"] == "new" and state["iceTuples"] == []
        for p in extra:
            p.close()
        good = await TcpPeer.connect(candidate)
        peers.append(good)
        ok = await good.stun(stun_check(ice["usernameFragment"], ice["password"], use_candidate=True))
        assert ok.message_class == stun.Class.RESPONSE
        assert all(w["alive"] for w in (await client.server_info())["workers"])
    finally:
        for p in peers:
            p.close()
