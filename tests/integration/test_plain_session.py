"""Issue 2's proof: a real `tureen serve`, a two-peer session driven only over the control API,
real RTP over plain transports, forwarding with the consumer's SSRC and PT, and pause, resume
and close doing what the protocol says, on one worker and across two."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from support import (
    MEDIA_CODECS,
    drain,
    opus_parameters,
    parse_rtp,
    peer_capabilities,
    pid_alive,
    rtp_packet,
    running_server,
    udp_socket,
)
from tureen.shared.client import TureenClient

pytestmark = pytest.mark.timeout(120)

PRODUCER_SSRC = 22_222_222


class Session:
    """Alice sends opus over a plain transport; Bob receives over another."""

    def __init__(self, client: TureenClient, room_id: str) -> None:
        self.client = client
        self.room_id = room_id
        self.alice_sock = udp_socket()
        self.bob_sock = udp_socket()
        self.server_addr: tuple[str, int] = ("", 0)
        self.consumer: dict[str, Any] = {}
        self.seq = 1000
        self.ts = 5000

    async def req(self, peer: str | None, method: str, **data: Any) -> Any:
        target = "room" if method in ("queryRoom", "join") else "peer"
        return await self.client.peer_request(self.room_id, peer, {"method": method, "target": target, **data})

    async def notify(self, peer: str, method: str, **data: Any) -> None:
        await self.client.peer_notify(
            self.room_id, peer, {"method": method, "target": "peer", "notification": True, **data}
        )

    async def setup(self) -> None:
        room = await self.req(None, "queryRoom")
        assert room["mandatoryCodecPayloadTypes"] == []
        caps = peer_capabilities(room["rtpCapabilities"])
        joined = await self.req(None, "join", peerName="alice", rtpCapabilities=caps, spy=False, appData={"a": 1})
        assert joined == {"peers": []}
        joined = await self.req(None, "join", peerName="bob", rtpCapabilities=caps, spy=False)
        assert [p["name"] for p in joined["peers"]] == ["alice"]
        new_peer = await self.client.next_notification("alice", "newPeer")
        assert new_peer["name"] == "bob" and new_peer["consumers"] == []

        a_port = self.alice_sock.getsockname()[1]
        answer = await self.req(
            "alice", "createTransport", id=11111111, direction="send", options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": a_port},
        )
        self.server_addr = (answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"])
        b_port = self.bob_sock.getsockname()[1]
        await self.req(
            "bob", "createTransport", id=22222222, direction="recv", options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": b_port},
        )
        result = await self.req(
            "alice", "createProducer", id=33333333, kind="audio", transportId=11111111,
            rtpParameters=opus_parameters(PRODUCER_SSRC), paused=False, appData={"mic": True},
        )
        assert result == {}  # v2: createProducer resolves with nothing, sent as {}
        self.consumer = await self.client.next_notification("bob", "newConsumer")
        assert self.consumer["peerName"] == "alice"
        assert self.consumer["kind"] == "audio"
        assert self.consumer["appData"] == {"mic": True}
        enabled = await self.req(
            "bob", "enableConsumer", id=self.consumer["id"], transportId=22222222,
            paused=False, preferredProfile="default",
        )
        assert enabled["paused"] is False
        assert enabled["preferredProfile"] == "default"

    @property
    def consumer_ssrc(self) -> int:
        return self.consumer["rtpParameters"]["encodings"][0]["ssrc"]

    @property
    def consumer_pt(self) -> int:
        return self.consumer["rtpParameters"]["codecs"][0]["payloadType"]

    def send(self, count: int) -> None:
        for _ in range(count):
            self.alice_sock.sendto(rtp_packet(self.seq, self.ts, PRODUCER_SSRC, 111), self.server_addr)
            self.seq += 1
            self.ts += 960

    async def receive(self, count: int, duration: float = 6.0) -> list[tuple[int, int, int, int]]:
        packets = await asyncio.to_thread(drain, self.bob_sock, duration, count)
        return [parse_rtp(p) for p in packets]

    def close(self) -> None:
        self.alice_sock.close()
        self.bob_sock.close()


async def run_session(endpoint: str) -> dict[str, Any]:
    async with TureenClient(endpoint) as client:
        room = await client.create_room(MEDIA_CODECS, room_id="plain")
        assert [c["preferredPayloadType"] for c in room["rtpCapabilities"]["codecs"]] == [100, 101, 102, 103, 104]
        session = Session(client, "plain")
        try:
            await session.setup()

            # Forwarding with the consumer's SSRC and the room's payload type.
            session.send(20)
            got = await session.receive(20)
            assert len(got) == 20, f"bob received {len(got)} of 20 packets"
            assert {p[3] for p in got} == {session.consumer_ssrc}
            assert {p[0] for p in got} == {session.consumer_pt} == {100}
            seqs = [p[1] for p in got]
            assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
            last_seq = seqs[-1]

            # The producer pauses: bob hears consumerPaused, nothing is forwarded.
            await session.notify("alice", "pauseProducer", id=33333333)
            paused = await client.next_notification("bob", "consumerPaused")
            assert paused == {
                "method": "consumerPaused", "target": "peer", "notification": True,
                "id": session.consumer["id"], "peerName": "alice",
            }
            session.send(10)
            assert await session.receive(10, 0.5) == []

            # Resume: consumerResumed, forwarding again, sequence numbers continuous.
            await session.notify("alice", "resumeProducer", id=33333333)
            await client.next_notification("bob", "consumerResumed", id=session.consumer["id"])
            session.send(5)
            got = await session.receive(5)
            assert len(got) == 5
            assert got[0][1] == (last_seq + 1) & 0xFFFF
            last_seq = got[-1][1]

            # Bob pauses his consumer: nothing forwarded; resume: continuous again.
            await session.notify("bob", "pauseConsumer", id=session.consumer["id"])
            session.send(5)
            assert await session.receive(5, 0.5) == []
            await session.notify("bob", "resumeConsumer", id=session.consumer["id"])
            session.send(3)
            got = await session.receive(3)
            assert [p[1] for p in got] == [(last_seq + i) & 0xFFFF for i in (1, 2, 3)]

            dump = await client.dump_room("plain")
            workers = {p["name"]: p["worker"] for p in dump["peers"]}

            # Alice closes the producer: bob's consumer closes, forwarding stops.
            await session.notify("alice", "closeProducer", id=33333333)
            closed = await client.next_notification("bob", "consumerClosed")
            assert closed["id"] == session.consumer["id"] and closed["peerName"] == "alice"
            session.send(5)
            assert await session.receive(5, 0.5) == []

            # Bob leaves: alice hears peerClosed.
            await session.notify("bob", "leave", appData={"bye": 1})
            gone = await client.next_notification("alice", "peerClosed")
            assert gone["name"] == "bob" and gone["appData"] == {"bye": 1}
            return workers
        finally:
            session.close()
            await client.close_room("plain")


def test_two_peers_forward_plain_rtp_across_two_workers(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2) as server:
        workers = asyncio.run(run_session(server.endpoint))
        assert workers["alice"] != workers["bob"], "placement should spread two peers over two workers"
    assert not any(pid_alive(pid) for pid in server.worker_pids), "workers outlived the supervisor"
    assert server.process.returncode == 0, server.log()


def test_two_peers_forward_plain_rtp_on_one_worker(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=1) as server:
        workers = asyncio.run(run_session(server.endpoint))
        assert workers["alice"] == workers["bob"] == 0
    assert server.process.returncode == 0, server.log()
