"""The control API of a real server: envelope, garbage, subscriptions, workers."""

from __future__ import annotations

import asyncio
import os
import signal

import orjson
import psutil
import pytest
import zmq
import zmq.asyncio
from conftest import RoomDriver
from support import MEDIA_CODECS, ServerProcess, peer_capabilities, pid_alive
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(90)


async def raw_exchange(endpoint: str, frames: list[bytes], expect_reply: bool = True) -> dict | None:
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        await sock.send_multipart(frames)
        if not expect_reply:
            return None
        reply = await asyncio.wait_for(sock.recv_multipart(), 5)
        return orjson.loads(reply[-1])
    finally:
        sock.close()


async def test_server_info_names_version_and_pinned_workers(client: TureenClient, server: ServerProcess) -> None:
    info = await client.server_info()
    assert info["version"]
    assert info["tasks"] >= 2  # at least the control server's loop and this request's reply
    assert info["rss"] == pytest.approx(psutil.Process(info["pid"]).memory_info().rss, rel=0.5)
    assert len(info["workers"]) == 2
    for worker in info["workers"]:
        assert worker["alive"] and pid_alive(worker["pid"])
        if worker["cpu"] is not None:
            assert psutil.Process(worker["pid"]).cpu_affinity() == [worker["cpu"]]


async def test_garbage_gets_error_replies_and_the_server_keeps_serving(server: ServerProcess) -> None:
    ep = server.endpoint
    reply = await raw_exchange(ep, [b"{not json"])
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request" and reply["id"] is None
    reply = await raw_exchange(ep, [b"[1, 2, 3]"])
    assert reply["error"]["code"] == "bad_request" and "object" in reply["error"]["message"]
    reply = await raw_exchange(ep, [orjson.dumps({"method": "server.info"})])
    assert reply["error"]["code"] == "bad_request" and "id" in reply["error"]["message"]
    reply = await raw_exchange(ep, [orjson.dumps({"id": 1, "method": "room.explode"})])
    assert reply == {"id": 1, "ok": False, "error": {"code": "unknown_method",
                                                      "message": "unknown control method 'room.explode'"}}
    reply = await raw_exchange(ep, [orjson.dumps({"id": 2, "method": 5})])
    assert reply["error"]["code"] == "bad_request"
    reply = await raw_exchange(ep, [b'{"id": 3, "method": "server.ping", "pad": "' + b"x" * (2 << 20) + b'"}'])
    assert reply["error"]["code"] == "bad_request" and "limit" in reply["error"]["message"]
    await raw_exchange(ep, [b"a", b"b", b"c"], expect_reply=False)  # cannot be answered: dropped
    await raw_exchange(ep, [b"\xff" * 8 * 1024 * 1024], expect_reply=False)  # over ZeroMQ's cap
    reply = await raw_exchange(ep, [orjson.dumps({"id": "s", "method": "room.create", "mediaCodecs": "x"})])
    assert reply["error"]["code"] == "bad_request"
    async with TureenClient(ep) as client:
        assert await client.request("server.ping") == {"pong": True}


async def test_room_create_validates_codecs_and_rejects_duplicates(client: TureenClient) -> None:
    with pytest.raises(ProtocolError) as info:
        await client.create_room([])
    assert info.value.code in ("bad_request", "unsupported")
    with pytest.raises(ProtocolError):
        await client.create_room([{"kind": "video", "name": "Theora", "clockRate": 90000}])
    created = await client.create_room(MEDIA_CODECS, room_id="dup", app_data={"n": 1})
    assert created["roomId"] == "dup"
    with pytest.raises(ProtocolError) as info:
        await client.create_room(MEDIA_CODECS, room_id="dup")
    assert info.value.code == "duplicate"
    listed = {r["roomId"]: r for r in await client.list_rooms()}
    assert "dup" in listed and "appData" not in listed["dup"]  # room.list: counts only
    assert (await client.dump_room("dup"))["appData"] == {"n": 1}
    auto = await client.create_room(MEDIA_CODECS)
    assert auto["roomId"] and auto["roomId"] != "dup"
    await client.close_room("dup")
    await client.close_room(auto["roomId"])
    with pytest.raises(ProtocolError) as info:
        await client.close_room("dup")
    assert info.value.code == "not_found"


async def test_requests_for_one_room_are_handled_in_order(room: RoomDriver) -> None:
    caps = room.peer_caps
    requests = [
        room.client.peer_request(room.id, None, {"method": "join", "target": "room", "peerName": f"p{i}",
                                                 "rtpCapabilities": caps})
        for i in range(20)
    ]
    answers = await asyncio.gather(*requests)
    assert [len(a["peers"]) for a in answers] == list(range(20))


async def test_workers_scale_up_and_down_at_run_time(tmp_path) -> None:
    from support import running_server

    with running_server(tmp_path, workers=1) as srv:
        async with TureenClient(srv.endpoint) as client:
            result = await client.scale_workers(3)
            assert [w["index"] for w in result["workers"]] == [0, 1, 2]
            assert all(w["alive"] for w in result["workers"])
            new_pids = [w["pid"] for w in result["workers"][1:]]
            result = await client.scale_workers(1)
            assert sorted(result["retired"]) == [1, 2]
            assert [w["index"] for w in result["workers"]] == [0]
            for pid in new_pids:
                for _ in range(50):
                    if not pid_alive(pid):
                        break
                    await asyncio.sleep(0.1)
                assert not pid_alive(pid)
            with pytest.raises(ProtocolError):
                await client.scale_workers(0)


async def test_a_dead_worker_is_restarted_and_its_peers_told_what_closed(tmp_path) -> None:
    from support import running_server

    with running_server(tmp_path, workers=1) as srv:
        async with TureenClient(srv.endpoint) as client:
            created = await client.create_room(MEDIA_CODECS, room_id="crash")
            caps = peer_capabilities(created["rtpCapabilities"])
            room = RoomDriver(client, "crash", created["rtpCapabilities"])
            await room.req(None, "join", peerName="alice", rtpCapabilities=caps)
            await room.req("alice", "createTransport", id=123, direction="send", options={},
                           plainRtpParameters={"ip": "127.0.0.1", "port": 9})
            old_pid = (await client.server_info())["workers"][0]["pid"]
            os.kill(old_pid, signal.SIGKILL)
            note = await client.next_notification("alice", "transportClosed", timeout=10)
            assert note["id"] == 123
            for _ in range(100):
                info = await client.server_info()
                worker = info["workers"][0]
                if worker["alive"] and worker["pid"] != old_pid:
                    break
                await asyncio.sleep(0.1)
            assert worker["alive"] and worker["pid"] != old_pid
            srv.worker_pids.append(worker["pid"])
            # The peer can create a transport again, on the new worker.
            answer = await room.req("alice", "createTransport", id=123, direction="send", options={},
                                    plainRtpParameters={"ip": "127.0.0.1", "port": 9})
            assert answer["plainRtpParameters"]["port"] > 0


def test_sigterm_stops_supervisor_and_workers_cleanly(tmp_path) -> None:
    srv = ServerProcess(tmp_path, workers=2)
    try:
        srv.wait_ready()
        pids = list(srv.worker_pids)
    finally:
        code = srv.stop()
    assert code == 0, srv.log()
    assert not any(pid_alive(pid) for pid in pids)
    assert not list((tmp_path / "run").glob("*.ipc"))
