"""One room over three hosts (issue 15, "Tests and benchmark"): a supervisor and hosts A, B
and C, each in its own network namespace (tests/cluster.py), and the peers in a clients'
namespace (tests/clients_agent.py): on every host a plain RTP peer and an aiortc WebRTC peer,
pinned there with peer.place. Every peer receives every other peer's media, across hosts
(RTP packets counted for the plain peers, frames decoded for the WebRTC ones). Then a host
is lost (SIGKILL of its `tureen host`, or its link cut): its peers are told as for a worker
crash, and the peers on the two other hosts keep receiving from each other. A drained host
gets no new peer, and its peers keep their media.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from cluster import Clients, Cluster, host_entry, host_not_up, until
from netns import netns_unavailable
from support import MEDIA_CODECS, peer_capabilities
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = [
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
    pytest.mark.timeout(150),
]

HOSTS = ("A", "B", "C")
ROOM = "mesh"
# What "receives" means: plain peers count RTP packets (opus-like at 50/s, VP8 from aiortc),
# WebRTC peers count frames aiortc decoded.
ENOUGH = {"plain": 10, "webrtc": 5}
HEARTBEAT_SLACK = 2.0 + 6.0  # detection within 2 s (issue 15), plus a loaded machine's slack


async def start_hosts(cluster: Cluster, client: TureenClient, names: tuple[str, ...] = HOSTS) -> dict[str, int]:
    """Hosts `names`, one worker each, registered: {host: its worker's index}."""
    for name in names:
        cluster.start_host(name)
    workers: dict[str, int] = {}
    for name in names:
        entry = await until(lambda name=name: host_entry(client, name), f"host {name} to register", 30)
        [workers[name]] = entry["workers"]
    return workers


def expected(peers: dict[str, str], receiver: str) -> set[str]:
    """What `receiver` should get: every other peer's producers ("SENDER/KIND")."""
    wanted: set[str] = set()
    for name, kind in peers.items():
        if name != receiver:
            wanted |= {f"{name}/audio"} | ({f"{name}/video"} if kind == "webrtc" else set())
    return wanted


async def all_receive(
    agent: Clients, peers: dict[str, str], among: set[str], since: dict[str, dict[str, int]] | None = None,
    timeout: float = 40.0,
) -> dict[str, dict[str, int]]:
    """Wait until every peer in `among` received enough of every other's producers in
    `among` (more than in `since`, when given); returns the counts. On timeout, says what
    was missing and what the agent saw go wrong (e.g. a refused enableConsumer)."""
    group = {name: kind for name, kind in peers.items() if name in among}
    last: dict[str, Any] = {}

    async def probe() -> dict[str, dict[str, int]] | None:
        answer = await agent.order("counts", timeout=15.0)
        last.update(answer)
        counts = answer["counts"]
        for receiver in among:
            for source in expected(group, receiver):
                before = (since or {}).get(receiver, {}).get(source, 0)
                if counts.get(receiver, {}).get(source, 0) - before < ENOUGH[peers[receiver]]:
                    return None
        return counts

    try:
        return await until(probe, "every peer to receive every other's media", timeout)
    except AssertionError:
        missing = {
            receiver: sorted(
                source for source in expected(group, receiver)
                if last.get("counts", {}).get(receiver, {}).get(source, 0)
                - (since or {}).get(receiver, {}).get(source, 0) < ENOUGH[peers[receiver]]
            )
            for receiver in among
        }
        raise AssertionError(
            f"not received within {timeout} s: {missing}; counts {last.get('counts')}; "
            f"the agent's problems: {last.get('problems')}"
        ) from None


async def mesh(cluster: Cluster, client: TureenClient, workers: dict[str, int], *, webrtc: bool = True
               ) -> tuple[Clients, dict[str, str]]:
    """The room, and on every host a plain peer `rtp-H` (and a WebRTC peer `web-H`) pinned
    there; waits until each receives every other. Returns the agent and {peer: kind}."""
    await client.create_room(MEDIA_CODECS, room_id=ROOM)
    agent = await cluster.clients(ROOM)
    peers: dict[str, str] = {}
    for host in workers:
        await agent.order("plain", peer=f"rtp-{host}", place={"host": host})
        peers[f"rtp-{host}"] = "plain"
        if webrtc:
            await agent.order("webrtc", peer=f"web-{host}", place={"host": host})
            peers[f"web-{host}"] = "webrtc"
    for name in peers:
        host = name.split("-")[1]
        assert (await client.dump_peer(ROOM, name))["worker"] == workers[host], f"{name} not on host {host}"
    return agent, peers


async def test_peers_on_three_hosts_receive_each_other(cluster: Cluster) -> None:
    async with cluster.client() as client:
        workers = await start_hosts(cluster, client)
        agent, peers = await mesh(cluster, client, workers)
        counts = await all_receive(agent, peers, set(peers))
        print(f"\nreceived (packets for rtp-*, decoded frames for web-*): {counts}")


@pytest.mark.parametrize("fault", ["sigkill", "link-cut"])
async def test_a_lost_host_leaves_the_other_hosts_media_flowing(cluster: Cluster, fault: str) -> None:
    async with cluster.client() as client:
        workers = await start_hosts(cluster, client)
        agent, peers = await mesh(cluster, client, workers)
        await all_receive(agent, peers, set(peers))
        lost_peers = {name for name in peers if name.endswith("-C")}
        survivors = set(peers) - lost_peers

        before = await agent.counts()
        start = time.monotonic()
        if fault == "sigkill":
            os.kill(cluster.host_processes["C"].pid, signal.SIGKILL)
        else:
            cluster.net.hosts["C"].link(up=False)
        # Its peers are told as for a crashed worker: their transports closed.
        for name in sorted(lost_peers):
            await client.next_notification(name, "transportClosed", timeout=HEARTBEAT_SLACK)
        print(f"\n{fault}: host C's peers told in {time.monotonic() - start:.2f} s")
        assert await until(lambda: host_not_up(client, "C"), "host C no longer up", HEARTBEAT_SLACK)
        # The peers on A and B still get each other's media, after the loss.
        after = await all_receive(agent, peers, survivors, since=before, timeout=20.0)
        print(f"after the loss: {after}")


async def test_a_drained_host_gets_no_new_peer_and_keeps_its_media(cluster: Cluster) -> None:
    async with cluster.client() as client:
        workers = await start_hosts(cluster, client)
        agent, peers = await mesh(cluster, client, workers, webrtc=False)
        await all_receive(agent, peers, set(peers))
        room_caps = (await client.peer_request(ROOM, None, {"method": "queryRoom", "target": "room"}))["rtpCapabilities"]
        drained = await client.drain_host("B")
        assert drained["state"] == "draining", drained
        listing = await client.list_hosts()
        assert {h["name"]: h["state"] for h in listing["hosts"]}["B"] == "draining"
        # A peer cannot be pinned there any more: refused with the reason, nothing made.
        await client.peer_request(ROOM, None, {"method": "join", "target": "room", "peerName": "pinned",
                                               "rtpCapabilities": peer_capabilities(room_caps)})
        with pytest.raises(ProtocolError) as refused:
            await client.place_peer(ROOM, "pinned", host="B")
        assert refused.value.code == "unavailable" and "draining" in refused.value.message
        before = await agent.counts()
        # New peers are placed anywhere but B (the room is on A and C too).
        for name in ("late-1", "late-2", "late-3"):
            await agent.order("plain", peer=name, place={})
            peers[name] = "plain"
            worker = (await client.dump_peer(ROOM, name))["worker"]
            assert worker != workers["B"], f"{name} was placed on drained host B"
        # B's peer keeps sending and receiving, the new peers included.
        await all_receive(agent, peers, set(peers), since=before, timeout=20.0)
