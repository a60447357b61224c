"""Remote hosts (issue 15), each in its own network namespace (tests/netns.py):
a supervisor in one, a `tureen host` in another, the RTP endpoints in a third. A peer pinned
(peer.place) to the remote host's worker sends and receives plain RTP there; a host killed
with SIGKILL, and a host whose link is cut, are detected by heartbeat and their peers told as
for a crashed worker; a host that comes back registers afresh.

The control API is reached over ipc:// (a socket file: the runner's namespace shares the file
system with the others, not the network)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
from cluster import Cluster, host_entry, host_not_up, pid_gone, until, worker_pid
from netns import Host, netns_unavailable
from support import MEDIA_CODECS, opus_parameters, peer_capabilities
from tureen.shared.client import TureenClient

pytestmark = [
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
    pytest.mark.timeout(120),
]

PRODUCER_SSRC = 33_445_566

# Both RTP endpoints of a session, in the clients' namespace: binds alice's and bob's sockets
# on ADDR and prints their ports; reads "IP PORT" (alice's transport on the server), sends
# COUNT opus-like packets from alice's socket 10 ms apart while bob's socket receives, and
# prints what bob got as [[pt, seq, ssrc], ...] once COUNT came or WAIT s passed.
ENDPOINTS = """
import json, socket, struct, sys, threading, time
addr, count, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
alice = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); alice.bind((addr, 0))
bob = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); bob.bind((addr, 0))
print(alice.getsockname()[1], bob.getsockname()[1], flush=True)
ip, port = sys.stdin.readline().split()
def send():
    for i in range(count):
        alice.sendto(struct.pack("!BBHII", 0x80, 111, 1000 + i, 5000 + 960 * i, int(sys.argv[4])) + bytes(160), (ip, int(port)))
        time.sleep(0.01)
threading.Thread(target=send, daemon=True).start()
got, end = [], time.monotonic() + wait
while len(got) < count and (left := end - time.monotonic()) > 0:
    bob.settimeout(left)
    try:
        data = bob.recv(2048)
    except TimeoutError:
        break
    if len(data) >= 12 and not 72 <= data[1] & 0x7F <= 79:  # RTP, not RTCP
        pt, seq, _ts, ssrc = data[1] & 0x7F, *struct.unpack("!HII", data[2:12])
        got.append([pt, seq, ssrc])
print(json.dumps(got), flush=True)
"""


async def plain_pair(
    client: TureenClient, room: str, workers: tuple[int, int], clients: Host, ports: tuple[int, int]
) -> dict[str, Any]:
    """alice sends opus, bob receives it, pinned to `workers`; the send transport's answer."""

    async def req(peer: str | None, method: str, **data: Any) -> Any:
        target = "room" if method in ("queryRoom", "join") else "peer"
        return await client.peer_request(room, peer, {"method": method, "target": target, **data})

    created = await client.create_room(MEDIA_CODECS, room_id=room)
    caps = peer_capabilities(created["rtpCapabilities"])
    for name, worker in zip(("alice", "bob"), workers, strict=True):
        await req(None, "join", peerName=name, rtpCapabilities=caps, spy=False)
        assert await client.place_peer(room, name, worker) == {"worker": worker}
    sent = await req("alice", "createTransport", id=11, direction="send", options={},
                     plainRtpParameters={"ip": clients.address, "port": ports[0]})
    await req("bob", "createTransport", id=22, direction="recv", options={},
              plainRtpParameters={"ip": clients.address, "port": ports[1]})
    await req("alice", "createProducer", id=33, kind="audio", transportId=11,
              rtpParameters=opus_parameters(PRODUCER_SSRC), paused=False)
    consumer = await client.next_notification("bob", "newConsumer")
    await req("bob", "enableConsumer", id=consumer["id"], transportId=22, paused=False, preferredProfile="default")
    return {"answer": sent["plainRtpParameters"], "consumer": consumer}


async def media_through(
    clients: Host, room: str, client: TureenClient, workers: tuple[int, int], count: int = 50
) -> tuple[dict[str, Any], list[list[int]]]:
    """A plain-RTP session, alice and bob pinned to `workers`, its endpoints in `clients`:
    what bob got."""
    endpoints = clients.popen([sys.executable, "-c", ENDPOINTS, clients.address, str(count), "10", str(PRODUCER_SSRC)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert endpoints.stdout is not None and endpoints.stdin is not None
    alice_port, bob_port = map(int, (await asyncio.to_thread(endpoints.stdout.readline)).split())
    session = await plain_pair(client, room, workers, clients, (alice_port, bob_port))
    answer = session["answer"]
    out, _ = await asyncio.to_thread(endpoints.communicate, f"{answer['ip']} {answer['port']}\n", 30)
    return session, orjson.loads(out.strip().splitlines()[-1])


async def test_a_peer_pinned_to_a_remote_host_gets_its_media_there(cluster: Cluster) -> None:
    h1, _ = cluster.start_host("h1")
    clients = cluster.net.add_host("c")
    async with cluster.client() as client:
        entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
        [remote] = entry["workers"]
        info = await client.server_info()
        workers = {w["index"]: w for w in info["workers"]}
        assert workers[remote]["host"] == "h1" and workers[remote]["alive"]
        assert "host" not in workers[0]  # the supervisor's own

        session, got = await media_through(clients, "r1", client, (remote, remote))
        # The transport is on the remote host: its media socket has h1's address.
        assert session["answer"]["ip"] == h1.address
        assert (await client.dump_peer("r1", "bob"))["worker"] == remote
        consumer = session["consumer"]
        ssrc = consumer["rtpParameters"]["encodings"][0]["ssrc"]
        assert len(got) == 50, f"bob received {len(got)} of 50 packets"
        assert {p[2] for p in got} == {ssrc}
        seqs = [p[1] for p in got]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
        # Placement keeps the room on the host that serves it: carol, not pinned, lands on
        # h1's worker although the supervisor's own worker is idler.
        caps = peer_capabilities((await client.create_room(MEDIA_CODECS, room_id="probe"))["rtpCapabilities"])
        await client.peer_request("r1", None, {"method": "join", "target": "room", "peerName": "carol", "rtpCapabilities": caps})
        await client.peer_request("r1", "carol", {"method": "createTransport", "target": "peer", "id": 44, "direction": "recv",
                                                  "options": {}, "plainRtpParameters": {"ip": clients.address, "port": 9}})
        assert (await client.dump_peer("r1", "carol"))["worker"] == remote
        # A consumer on the supervisor's worker of a producer on h1 is no longer refused:
        # the producer crosses over a host leg (test_host_media.py and test_three_hosts.py
        # have the media).
        joined = await client.peer_request(
            "r1", None, {"method": "join", "target": "room", "peerName": "dave", "rtpCapabilities": caps}
        )
        [offered] = next(p for p in joined["peers"] if p["name"] == "alice")["consumers"]
        await client.place_peer("r1", "dave", 0)
        await client.peer_request("r1", "dave", {"method": "createTransport", "target": "peer", "id": 55, "direction": "recv",
                                                 "options": {}, "plainRtpParameters": {"ip": clients.address, "port": 9}})
        await client.peer_request("r1", "dave", {"method": "enableConsumer", "target": "peer", "id": offered["id"],
                                                 "transportId": 55, "paused": False, "preferredProfile": "default"})
        alice = (await client.dump_peer("r1", "alice"))["producers"][0]
        assert alice["pipedTo"] == [0] and list(alice["legs"]) == ["0"]
        # The load the remote worker reports reaches the supervisor (placement uses it).
        loaded = await until(lambda: host_entry_transports(client, "h1"), "h1's load report")
        assert loaded >= 2
        # The operator's view.
        table = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tureen.supervisor.cli", "hosts", "--control", cluster.control,
             "--curve-cert", str(cluster.keys / "app.key_secret"), "--curve-server-key", str(cluster.keys / "server.key")],
            capture_output=True, text=True, timeout=30,
        )
        assert table.returncode == 0, table.stderr
        row = next(line.split() for line in table.stdout.splitlines() if line.strip().startswith("h1"))
        assert row[:3] == ["h1", "up", str(remote)]


async def test_media_between_two_workers_of_a_remote_host_goes_through_their_pipe(cluster: Cluster) -> None:
    h1, _ = cluster.start_host("h1", workers=2)
    clients = cluster.net.add_host("c")
    async with cluster.client() as client:
        entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
        assert len(entry["workers"]) == 2
        first, second = entry["workers"]
        session, got = await media_through(clients, "r5", client, (first, second))
        assert session["answer"]["ip"] == h1.address
        assert (await client.dump_peer("r5", "bob"))["worker"] == second
        ssrc = session["consumer"]["rtpParameters"]["encodings"][0]["ssrc"]
        assert len(got) == 50, f"bob received {len(got)} of 50 packets"
        assert {p[2] for p in got} == {ssrc}


async def host_entry_transports(client: TureenClient, name: str) -> int:
    entry = await host_entry(client, name)
    return entry["transports"] if entry else 0


async def test_a_killed_host_is_detected_and_its_peers_told(cluster: Cluster) -> None:
    _, process = cluster.start_host("h1")
    async with cluster.client() as client:
        entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
        [remote] = entry["workers"]
        created = await client.create_room(MEDIA_CODECS, room_id="r2")
        caps = peer_capabilities(created["rtpCapabilities"])
        await client.peer_request("r2", None, {"method": "join", "target": "room", "peerName": "alice", "rtpCapabilities": caps})
        await client.place_peer("r2", "alice", remote)
        await client.peer_request("r2", "alice", {"method": "createTransport", "target": "peer", "id": 11, "direction": "send",
                                                  "options": {}, "plainRtpParameters": {"ip": "198.51.100.250", "port": 9}})
        host_worker = await worker_pid(client, remote)
        killed = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
        note = await client.next_notification("alice", "transportClosed", timeout=15)
        print(f"host SIGKILL -> transportClosed in {time.monotonic() - killed:.2f} s")
        assert note["id"] == 11
        assert await until(lambda: host_not_up(client, "h1"), "h1 no longer up")
        info = await client.server_info()
        assert remote not in {w["index"] for w in info["workers"]}
        assert info["ready"]  # the supervisor's own worker serves on
        # The host's worker does not outlive its host (it watches its parent).
        await until(lambda: pid_gone(host_worker), f"the host's worker (pid {host_worker}) to exit", 15)


async def test_a_worker_that_dies_on_a_host_is_replaced_there(cluster: Cluster) -> None:
    cluster.start_host("h1")
    async with cluster.client() as client:
        entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
        [remote] = entry["workers"]
        created = await client.create_room(MEDIA_CODECS, room_id="r4")
        caps = peer_capabilities(created["rtpCapabilities"])
        await client.peer_request("r4", None, {"method": "join", "target": "room", "peerName": "alice", "rtpCapabilities": caps})
        await client.place_peer("r4", "alice", remote)
        await client.peer_request("r4", "alice", {"method": "createTransport", "target": "peer", "id": 11, "direction": "send",
                                                  "options": {}, "plainRtpParameters": {"ip": "198.51.100.250", "port": 9}})
        old_pid = await worker_pid(client, remote)
        os.kill(old_pid, signal.SIGKILL)  # the host's child; this runner can signal it (shared pid namespace)
        note = await client.next_notification("alice", "transportClosed", timeout=15)
        assert note["id"] == 11

        async def replaced() -> bool:
            entry = await host_entry(client, "h1")
            return bool(entry) and await worker_pid(client, entry["workers"][0]) != old_pid

        await until(replaced, "h1 to register a new worker", 30)
        assert (await host_entry(client, "h1"))["state"] == "up"  # the host itself stayed


async def test_a_cut_link_is_detected_and_the_host_registers_afresh(cluster: Cluster) -> None:
    h1, _ = cluster.start_host("h1")
    async with cluster.client() as client:
        entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
        [remote] = entry["workers"]
        old_pid = await worker_pid(client, remote)
        created = await client.create_room(MEDIA_CODECS, room_id="r3")
        caps = peer_capabilities(created["rtpCapabilities"])
        await client.peer_request("r3", None, {"method": "join", "target": "room", "peerName": "alice", "rtpCapabilities": caps})
        await client.place_peer("r3", "alice", remote)
        await client.peer_request("r3", "alice", {"method": "createTransport", "target": "peer", "id": 11, "direction": "send",
                                                  "options": {}, "plainRtpParameters": {"ip": "198.51.100.250", "port": 9}})
        cut = time.monotonic()
        h1.link(up=False)
        note = await client.next_notification("alice", "transportClosed", timeout=15)
        print(f"link cut -> transportClosed in {time.monotonic() - cut:.2f} s")
        assert note["id"] == 11
        assert await client.dump_peer("r3", "alice") is not None  # the peer stays, as after a worker crash
        h1.link(up=True)
        # The host gave its workers up when it heard nothing, and registers new ones.
        again = await until(lambda: host_entry(client, "h1"), "host h1 to register again", 30)
        [index] = again["workers"]
        assert await worker_pid(client, index) != old_pid
        answer = await client.peer_request("r3", "alice", {"method": "createTransport", "target": "peer", "id": 12,
                                                           "direction": "send", "options": {},
                                                           "plainRtpParameters": {"ip": "198.51.100.250", "port": 9}})
        assert answer["plainRtpParameters"]["port"] > 0


async def test_a_host_whose_key_is_not_allowed_is_refused(cluster: Cluster) -> None:
    cluster.start_host("stranger", allowed=False)
    async with cluster.client() as client:
        await until(lambda: _log_has(cluster, "CURVE: refused a host"), "the refusal in the supervisor's log")
        listing = await client.request("hosts.list")
        # Only the supervisor's own host: the stranger never joined.
        assert [h["name"] for h in listing["hosts"] if not h.get("local")] == []
        assert [w["index"] for w in (await client.server_info())["workers"]] == [0]


async def _log_has(cluster: Cluster, text: str) -> bool:
    return text in cluster.logs[0].read_text(errors="replace")
