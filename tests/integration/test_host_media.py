"""Media between hosts (issue 15): a producer's packets cross to another host once, over a
host leg (UDP, SRTP, repaired on the link: workers/transport/host_leg.py), and fan out there
through that host's pipes. Hosts are network namespaces (tests/netns.py), started as in
test_hosts.py (tests/cluster.py); the plain-RTP endpoints run in a namespace of their own.

A lossy path between the hosts: this kernel has no sch_netem (nor tc actions that drop), so a
relay in a namespace of its own stands between the two ends, as a 1:1 NAT would: both sides
announce the relay's address (`--announced-ip`), the relay listens on the two leg ports
there and forwards each direction from the other port, so each end sees its peer's
announced address, and drops every 10th datagram of the origin -> gateway direction."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster, host_entry, running_cluster, until
from netns import Host, Network, netns_unavailable
from support import MEDIA_CODECS, peer_capabilities, vp8_parameters
from tureen.shared.client import TureenClient
from tureen.workers.transport.host_leg import OVERHEAD

pytestmark = [
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
    pytest.mark.timeout(150),
]

SSRC = 22_334_455

# The plain-RTP endpoints, in the clients' namespace: alice (the sender) and one socket per
# receiver, bound on ADDR; prints their ports, then runs commands from stdin, one a line:
#   to IP PORT                   alice's packets go there (her transport on the server)
#   send FIRST COUNT WANT WAIT   send VP8 packets FIRST.. (each a key frame), 10 ms apart,
#                                then wait until each receiver has WANT RTP packets (or WAIT s);
#                                prints {"got": [[seq, ...] per receiver], "pli": n} (PLIs alice got)
#   quit
MEDIA = r"""
import json, select, socket, struct, sys, time
addr, receivers = sys.argv[1], int(sys.argv[2])
def bound():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, 0)); s.setblocking(False); return s
alice, rx = bound(), [bound() for _ in range(receivers)]
print(alice.getsockname()[1], *[s.getsockname()[1] for s in rx], flush=True)
dest, pli = None, 0
def poll(got, timeout):
    global pli
    ready, _, _ = select.select([alice, *rx], [], [], timeout)
    for s in ready:
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                break
            if s is alice:  # RTCP: count the PLIs of the compound packet
                at = 0
                while at + 4 <= len(data):
                    pli += data[at + 1] == 206 and data[at] & 0x1F == 1
                    at += 4 * (struct.unpack("!H", data[at + 2 : at + 4])[0] + 1)
            elif len(data) >= 12 and not 72 <= data[1] & 0x7F <= 79:  # RTP, not RTCP
                got[rx.index(s)].append(struct.unpack("!H", data[2:4])[0])
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "to":
        dest = (cmd[1], int(cmd[2]))
    elif cmd[0] == "send":
        first, count, want, wait = int(cmd[1]), int(cmd[2]), int(cmd[3]), float(cmd[4])
        got = [[] for _ in rx]
        for i in range(count):
            seq = first + i
            alice.sendto(struct.pack("!BBHII", 0x80, 0x80 | 96, seq & 0xFFFF, 3000 * seq, int(sys.argv[3])) + b"\x10" + bytes(299), dest)
            poll(got, 0.01)
        end = time.monotonic() + wait
        while min(len(g) for g in got) < want and time.monotonic() < end:
            poll(got, 0.1)
        poll(got, 0.3)  # and anything that would come twice
        print(json.dumps({"got": got, "pli": pli}), flush=True)
    elif cmd[0] == "quit":
        break
"""

# The lossy path (module docstring): RELAY_IP PORT_O PORT_G O_IP G_IP EVERY LIMIT. Drops the
# EVERY-th datagram from the origin among its first LIMIT; prints "ready", then, on "stop"
# (or after 60 s), {"forwarded", "dropped", "back"}.
RELAY = r"""
import json, select, socket, sys, time
r, port_o, port_g, o_ip, g_ip, every, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind((r, port_o))  # the origin, as the gateway sees it
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind((r, port_g))  # the gateway, as the origin sees it
print("ready", flush=True)
n = forwarded = dropped = back = 0
end = time.monotonic() + 60
while time.monotonic() < end:
    ready, _, _ = select.select([a, b, sys.stdin], [], [], 0.2)
    if sys.stdin in ready and sys.stdin.readline().strip() in ("stop", ""):
        break
    if b in ready:
        data, src = b.recvfrom(4096)
        if src == (o_ip, port_o):
            n += 1
            if n % every == 0 and n <= limit:
                dropped += 1
            else:
                a.sendto(data, (g_ip, port_g)); forwarded += 1
    if a in ready:
        data, src = a.recvfrom(4096)
        if src == (g_ip, port_g):
            b.sendto(data, (o_ip, port_o)); back += 1
print(json.dumps({"forwarded": forwarded, "dropped": dropped, "back": back}), flush=True)
"""


class Media:
    """The MEDIA script running in `where` with `receivers` receiving sockets."""

    def __init__(self, where: Host, receivers: int) -> None:
        self.where = where
        self.process = where.popen(
            [sys.executable, "-c", MEDIA, where.address, str(receivers), str(SSRC)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    async def ports(self) -> list[int]:
        return [int(x) for x in (await self._line()).split()]

    async def _line(self) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 60)
        assert line, "the media script ended"
        return line

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    async def send(self, first: int, count: int, want: int, wait: float = 10.0) -> dict[str, Any]:
        self.tell(f"send {first} {count} {want} {wait}")
        return json.loads(await self._line())


async def call(client: TureenClient, room: str, media: Media, places: dict[str, int]) -> dict[str, Any]:
    """alice (the first of `places`) sends VP8, the others receive it; each pinned to its worker."""
    created = await client.create_room(MEDIA_CODECS, room_id=room)
    caps = peer_capabilities(created["rtpCapabilities"])
    ports = await media.ports()
    for name, worker in places.items():
        await client.peer_request(room, None, {"method": "join", "target": "room", "peerName": name, "rtpCapabilities": caps})
        assert await client.place_peer(room, name, worker) == {"worker": worker}
    names = list(places)
    address = media.where.address

    async def req(peer: str, method: str, **data: Any) -> Any:
        return await client.peer_request(room, peer, {"method": method, "target": "peer", **data})

    sent = await req(names[0], "createTransport", id=11, direction="send", options={},
                     plainRtpParameters={"ip": address, "port": ports[0]})  # fmt: skip
    for i, name in enumerate(names[1:]):
        await req(name, "createTransport", id=20 + i, direction="recv", options={},
                  plainRtpParameters={"ip": address, "port": ports[1 + i]})  # fmt: skip
    await req(names[0], "createProducer", id=33, kind="video", transportId=11,
              rtpParameters=vp8_parameters(SSRC, SSRC + 1), paused=False)  # fmt: skip
    consumers = {}
    for i, name in enumerate(names[1:]):
        consumer = await client.next_notification(name, "newConsumer")
        await req(name, "enableConsumer", id=consumer["id"], transportId=20 + i, paused=False, preferredProfile="default")
        consumers[name] = consumer
    answer = sent["plainRtpParameters"]
    media.tell(f"to {answer['ip']} {answer['port']}")
    return {"answer": answer, "consumers": consumers}


def every_packet_once(got: list[int], first: int, count: int) -> None:
    want = set(range(first, first + count))
    assert len(got) == count and set(got) == want, (
        f"{len(got)} packets, {len(set(got))} distinct; missing {sorted(want - set(got))[:20]}"
    )


async def legs_of(client: TureenClient, index: int) -> dict[str, Any]:
    return (await client.request("worker.dump", index=index))["legs"]


async def test_a_producer_crosses_to_another_host_once_and_fans_out_there(cluster: Cluster) -> None:
    """Before host legs this consumer was refused `unsupported` ("different hosts")."""
    cluster.start_host("h1", workers=2)
    clients = cluster.net.add_host("c")
    async with cluster.client() as client:
        entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
        w1, w2 = entry["workers"]
        media = Media(clients, receivers=2)
        session = await call(client, "r1", media, {"alice": 0, "bob": w1, "carol": w2})
        # The consumers' output sequence numbers start anywhere: compare by their first.
        result = await media.send(1000, 100, 100)
        for got in result["got"]:
            every_packet_once([(s - got[0]) & 0xFFFF for s in got], 0, 100)
        # The origin sends one stream over one leg (to the gateway, bob's worker, the first
        # on that host to need it); the gateway pipes it on to carol's worker.
        origin = await legs_of(client, 0)
        [leg] = origin["legs"]
        assert leg["end"] == "origin" and leg["packets"] == 100
        assert leg["octets"] == 100 * (12 + 300 + OVERHEAD)  # RTP, then the leg id and the GCM tag
        [gateway] = (await legs_of(client, w1))["legs"]
        assert gateway["end"] == "gateway" and gateway["legId"] == leg["legId"] and gateway["packets"] == 100
        assert (await legs_of(client, w2))["legs"] == []
        counters = {i: (await client.request("worker.dump", index=i))["counters"] for i in (0, w1)}
        assert counters[0]["pipePacketsOut"] == 0 and counters[w1]["pipePacketsOut"] == 100
        alice = (await client.dump_peer("r1", "alice"))["producers"][0]
        assert alice["pipedTo"] == sorted([w1, w2]) and alice["legs"] == {str(w1): leg["legId"]}
        # The last consumer on h1 goes: the leg closes at both ends.
        for i, name in enumerate(session["consumers"]):
            await client.peer_notify("r1", name, {"method": "closeTransport", "target": "peer", "id": 20 + i})
        assert await until(lambda: _no_legs(client, 0), "the origin's leg to close")
        assert await until(lambda: _no_legs(client, w1), "the gateway's leg to close")
        media.tell("quit")


async def _no_legs(client: TureenClient, index: int) -> bool:
    return (await legs_of(client, index))["legs"] == []


async def test_a_lossy_path_between_hosts_is_repaired_on_the_leg(net: Network, tmp_path: Path) -> None:
    nat = net.add_host("nat")  # the relay; both hosts announce its address
    ports = ("--min-port", "40000", "--max-port", "40999")
    async with running_cluster(net, tmp_path, ("--announced-ip", nat.address, *ports)) as cluster:
        h1, _ = cluster.start_host(
            "h1", workers=2, extra=("--rtc-announced-ipv4", nat.address, "--min-port", "45000", "--max-port", "45999")
        )
        clients = cluster.net.add_host("c")
        async with cluster.client() as client:
            entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
            w1, w2 = entry["workers"]
            origin_ip, origin_port = (await legs_of(client, 0))["local"].split(":")
            gateway_ip, gateway_port = (await legs_of(client, w1))["local"].split(":")
            assert (origin_ip, gateway_ip) == (cluster.sup.address, h1.address)
            relay = nat.popen(
                [sys.executable, "-c", RELAY, nat.address, origin_port, gateway_port, origin_ip, gateway_ip, "10", "150"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert relay.stdout is not None and relay.stdin is not None
            assert (await asyncio.to_thread(relay.stdout.readline)).strip() == "ready"
            media = Media(clients, receivers=2)
            await call(client, "r2", media, {"alice": 0, "bob": w1, "carol": w2})
            result = await media.send(2000, 200, 200, wait=15)
            relay.stdin.write("stop\n")
            relay.stdin.flush()
            path = json.loads(await asyncio.to_thread(relay.stdout.readline))
            print("relay:", path, "received:", [len(g) for g in result["got"]])
            assert path["dropped"] >= 10 and path["back"] >= 1  # lost on the way; NACKs came back
            for got in result["got"]:  # every packet, once, on both workers of h1
                every_packet_once([(s - min(got)) & 0xFFFF for s in got], 0, 200)
            [leg] = (await legs_of(client, 0))["legs"]
            assert leg["nacksIn"] >= 1 and leg["resent"] >= path["dropped"] and leg["missed"] == 0
            [gateway] = (await legs_of(client, w1))["legs"]
            assert gateway["nacksOut"] >= 1
            media.tell("quit")


async def test_pause_resume_and_key_frames_across_hosts(cluster: Cluster) -> None:
    cluster.start_host("h1")
    clients = cluster.net.add_host("c")
    async with cluster.client() as client:
        [w1] = (await until(lambda: host_entry(client, "h1"), "host h1 to register"))["workers"]
        media = Media(clients, receivers=1)
        session = await call(client, "r3", media, {"alice": 0, "bob": w1})
        before = (await media.send(100, 30, 30))["got"][0]
        await client.request("producer.pause", roomId="r3", peerName="alice", producerId=33)
        paused = (await media.send(130, 20, 1, wait=0.5))["got"][0]
        assert paused == []  # dropped at the origin
        await client.request("producer.resume", roomId="r3", peerName="alice", producerId=33)
        resumed = await media.send(150, 30, 30)
        after = resumed["got"][0]
        # bob's consumer resynced on the other host as on one: his sequence numbers go on
        # without the 20 the pause dropped (the gateway heard producer.interrupt over the
        # host link), and the gateway NACKed none of them.
        out = before + after
        assert [(s - out[0]) & 0xFFFF for s in out] == list(range(60))
        [leg] = (await legs_of(client, 0))["legs"]
        assert (leg["nacksIn"], leg["missed"]) == (0, 0)
        # A key-frame request of bob's consumer on h1 reaches alice's sender as a PLI.
        # (Past the 300 ms in which both workers hold back a second request for a stream.)
        consumer = session["consumers"]["bob"]["id"]
        pli = (await media.send(180, 10, 10))["pli"]
        await asyncio.sleep(0.4)
        await client.request("consumer.requestKeyFrame", roomId="r3", peerName="bob", consumerId=consumer)
        for first in range(190, 290, 10):  # until it comes (bounded)
            if (await media.send(first, 10, 10))["pli"] > pli:
                break
        else:
            raise AssertionError("no PLI reached alice after bob's key-frame request")
        media.tell("quit")


async def test_a_killed_host_leaves_the_other_hosts_media_alone(cluster: Cluster) -> None:
    _, p1 = cluster.start_host("h1")
    cluster.start_host("h2")
    clients = cluster.net.add_host("c")
    async with cluster.client() as client:
        [w1] = (await until(lambda: host_entry(client, "h1"), "host h1 to register"))["workers"]
        [w2] = (await until(lambda: host_entry(client, "h2"), "host h2 to register"))["workers"]
        media = Media(clients, receivers=2)
        await call(client, "r4", media, {"alice": 0, "bob": w1, "carol": w2})
        first = await media.send(300, 30, 30)
        assert [len(g) for g in first["got"]] == [30, 30]
        assert len((await legs_of(client, 0))["legs"]) == 2  # one leg per host
        os.kill(p1.pid, signal.SIGKILL)
        note = await client.next_notification("bob", "transportClosed", timeout=15)
        assert note["id"] == 20
        # The origin's leg to h1 is closed; carol on h2 keeps receiving, every packet.
        assert await until(lambda: _legs_count(client, 0, 1), "the leg to h1 to close")
        carol = (await media.send(330, 30, 30))["got"][1]
        every_packet_once([(s - carol[0]) & 0xFFFF for s in carol], 0, 30)
        media.tell("quit")


async def _legs_count(client: TureenClient, index: int, count: int) -> bool:
    return len((await legs_of(client, index))["legs"]) == count



async def test_a_dead_gateway_worker_is_replaced_by_another_worker_of_its_host(cluster: Cluster) -> None:
    cluster.start_host("h1", workers=2)
    clients = cluster.net.add_host("c")
    async with cluster.client() as client:
        w1, w2 = (await until(lambda: host_entry(client, "h1"), "host h1 to register"))["workers"]
        media = Media(clients, receivers=2)
        await call(client, "r5", media, {"alice": 0, "bob": w1, "carol": w2})
        assert [len(g) for g in (await media.send(500, 20, 20))["got"]] == [20, 20]
        [old] = (await legs_of(client, 0))["legs"]
        pid = next(w["pid"] for w in (await client.server_info())["workers"] if w["index"] == w1)
        os.kill(pid, signal.SIGKILL)  # bob's worker, h1's gateway for alice's producer
        note = await client.next_notification("bob", "transportClosed", timeout=15)
        assert note["id"] == 20
        # carol's worker is h1's gateway now: a new leg from the origin feeds it.
        legs = await until(lambda: _new_leg(client, old["legId"]), "a new leg to h1")
        carol = (await media.send(520, 30, 30))["got"][1]
        every_packet_once([(s - carol[0]) & 0xFFFF for s in carol], 0, 30)
        [gateway] = (await legs_of(client, w2))["legs"]
        assert gateway["legId"] == legs[0]["legId"] and gateway["packets"] >= 30
        media.tell("quit")


async def _new_leg(client: TureenClient, old: int) -> list[dict[str, Any]] | None:
    legs = (await legs_of(client, 0))["legs"]
    return legs if len(legs) == 1 and legs[0]["legId"] != old else None


async def test_a_producer_on_a_remote_host_reaches_the_supervisors_worker(cluster: Cluster) -> None:
    h1, _ = cluster.start_host("h1")
    clients = cluster.net.add_host("c")
    async with cluster.client() as client:
        [w1] = (await until(lambda: host_entry(client, "h1"), "host h1 to register"))["workers"]
        media = Media(clients, receivers=1)
        await call(client, "r6", media, {"alice": w1, "bob": 0})
        got = (await media.send(700, 40, 40))["got"][0]
        every_packet_once([(s - got[0]) & 0xFFFF for s in got], 0, 40)
        [leg] = (await legs_of(client, w1))["legs"]  # the origin is h1's worker now
        assert leg["end"] == "origin" and leg["remote"].startswith(f"{cluster.sup.address}:")
        [gateway] = (await legs_of(client, 0))["legs"]
        assert gateway["end"] == "gateway" and gateway["remote"].startswith(f"{h1.address}:")
        media.tell("quit")
