"""Operating hosts (issue 15, "Hosts" and "Placement"), each host in its own network
namespace (the `cluster` of tests/cluster.py): `tureen host drain` stops new peers going to a
host, keeps its peers, and survives the host's re-registration; peer.place by host name; a
host's name is bound to its key."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from typing import Any

import pytest
from cluster import Cluster, host_entry, until
from netns import netns_unavailable
from support import MEDIA_CODECS, peer_capabilities
from tureen.shared.client import TureenClient
from tureen.shared.curve import generate_keys
from tureen.shared.errors import ProtocolError

pytestmark = [
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
    pytest.mark.timeout(120),
]

PLAIN = {"plainRtpParameters": {"ip": "198.51.100.250", "port": 9}}


async def room_with(client: TureenClient, room: str, *peers: str) -> None:
    created = await client.create_room(MEDIA_CODECS, room_id=room)
    caps = peer_capabilities(created["rtpCapabilities"])
    for peer in peers:
        await client.peer_request(room, None, {"method": "join", "target": "room", "peerName": peer, "rtpCapabilities": caps})


async def transport(client: TureenClient, room: str, peer: str, tid: int, direction: str = "send") -> int:
    """A plain transport for `peer`; the worker it is on."""
    await client.peer_request(room, peer, {"method": "createTransport", "target": "peer", "id": tid,
                                           "direction": direction, "options": {}, **PLAIN})
    return int((await client.dump_peer(room, peer))["worker"])


async def state_of(client: TureenClient, name: str) -> str | None:
    listing = await client.list_hosts()
    return next((h["state"] for h in listing["hosts"] if h["name"] == name), None)


async def entry_of(client: TureenClient, name: str) -> dict[str, Any] | None:
    listing = await client.list_hosts()
    return next((h for h in listing["hosts"] if h["name"] == name), None)


def tureen(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tureen.supervisor.cli", *args, "--control", cluster.control,
         "--curve-cert", str(cluster.keys / "app.key_secret"), "--curve-server-key", str(cluster.keys / "server.key")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


async def test_a_drained_host_takes_no_new_peers_keeps_its_own_and_stays_drained(cluster: Cluster) -> None:
    _, process = cluster.start_host("h1", workers=2)
    async with cluster.client() as client:
        entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
        h1_workers = set(entry["workers"])
        await room_with(client, "d1", "alice", "bob", "carol")
        # peer.place by host name: one of h1's workers.
        placed = (await client.place_peer("d1", "alice", host="h1"))["worker"]
        assert placed in h1_workers
        assert await transport(client, "d1", "alice", 11) == placed

        drained = await asyncio.to_thread(tureen, cluster, "host", "drain", "h1")
        assert drained.returncode == 0, drained.stderr
        assert "host h1 is draining" in drained.stdout
        assert await state_of(client, "h1") == "draining"
        # alice stays on h1 and adds a transport there; bob, not pinned, goes to the
        # supervisor's host although the room is on h1 (placement would keep it there).
        assert await transport(client, "d1", "alice", 12, "recv") == placed
        assert await transport(client, "d1", "bob", 21) == 0
        for where in ({"host": "h1"}, {"worker": min(h1_workers)}):
            with pytest.raises(ProtocolError) as err:
                await client.place_peer("d1", "carol", **where)
            assert err.value.code == "unavailable" and "draining" in err.value.message

        # The operator takes h1 down and brings it back: it registers again, still draining.
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 20)
        await until(lambda: _state_is(client, "h1", "lost"), "h1 to be lost")
        with pytest.raises(ProtocolError) as err:
            await client.place_peer("d1", "carol", host="h1")
        assert err.value.code == "unavailable" and "is lost" in err.value.message
        cluster.start_host("h1", workers=2)
        again = await until(lambda: _registered_again(client), "h1 to register again", 30)
        assert again["state"] == "draining"
        assert await transport(client, "d1", "carol", 31) == 0

        undrained = await asyncio.to_thread(tureen, cluster, "host", "undrain", "h1")
        assert undrained.returncode == 0, undrained.stderr
        assert await state_of(client, "h1") == "up"
        await room_with(client, "d2", "dave")
        assert (await client.place_peer("d2", "dave", host="h1"))["worker"] in again["workers"]


async def _state_is(client: TureenClient, name: str, state: str) -> bool:
    return await state_of(client, name) == state


async def _registered_again(client: TureenClient) -> dict[str, Any] | None:
    entry = await entry_of(client, "h1")
    return entry if entry and entry["state"] != "lost" and entry["workers"] else None


async def test_another_hosts_key_cannot_take_over_a_hosts_name(cluster: Cluster) -> None:
    cluster.start_host("h1")
    # h2 is an allowed host; its process says --name h1 (a copy of h1's settings, a typo).
    generate_keys(cluster.keys, "h2")
    shutil.copy(cluster.keys / "h2.key", cluster.tmp / "hosts" / "h2.key")
    where = cluster.net.add_host("h2")
    impostor = cluster._start(
        where, "host-h2-as-h1",
        ["host", "--connect", cluster.hosts_endpoint, "--name", "h1", "--workers", "1", "--rtc-ipv4", where.address,
         "--curve-cert", str(cluster.keys / "h2.key_secret"), "--curve-server-key", str(cluster.keys / "server.key"),
         "--run-dir", str(cluster.tmp / "run-h2"), "--no-pin", "--log-level", "debug"],
    )  # fmt: skip
    try:
        async with cluster.client() as client:
            entry = await until(lambda: host_entry(client, "h1"), "host h1 to register")
            await until(lambda: _log_has(cluster, 0, "may register as 'h2', not 'h1'"), "the refusal in the supervisor's log")
            await until(lambda: _log_has(cluster, -1, "refused the registration"), "the refusal in the impostor's log")
            # h1's session and workers are untouched; no worker of h2 was added.
            assert await host_entry(client, "h1") == entry
            indexes = {w["index"] for w in (await client.server_info())["workers"]}
            assert indexes == {0, *entry["workers"]}
    finally:
        impostor.send_signal(signal.SIGTERM)
        await asyncio.to_thread(impostor.wait, 20)


async def _log_has(cluster: Cluster, which: int, text: str) -> bool:
    return text in cluster.logs[which].read_text(errors="replace")
