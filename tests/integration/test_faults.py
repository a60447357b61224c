"""Issue 12, faults: a worker killed or hung, the supervisor killed or stopped, with real
processes (`tureen serve`, its workers), real plain RTP over loopback and the control API.

- A worker's death tears down every pipe that touched it, on both sides; a consumer on its
  replacement gets the same producer again (finding 2).
- A worker that answers no heartbeat is killed and replaced; requests that timed out are
  never executed behind the supervisor's back (finding 5).
- SIGTERM tells every peer and the app before the control socket closes (finding 3).
- A run dir left by a `kill -9` of the supervisor is cleaned at the next start (finding 8).

After each fault the workers' own tables (worker.dump) are compared with the supervisor's
view (room.dump): no transport, producer, consumer or pipe exists on one side only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support import (
    MEDIA_CODECS,
    ServerProcess,
    drain,
    free_tcp_port,
    opus_parameters,
    parse_rtp,
    peer_capabilities,
    pid_alive,
    rtp_packet,
    running_server,
    udp_socket,
)
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(120)


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s; last seen: {last!r}")


class Peer:
    """One plain-RTP peer of a room, driven through the control API."""

    def __init__(self, client: TureenClient, room_id: str, name: str, caps: dict[str, Any]) -> None:
        self.client = client
        self.room_id = room_id
        self.name = name
        self.caps = caps
        self.sock = udp_socket()
        self.server_addr: tuple[str, int] = ("", 0)
        self.seq = 1

    async def req(self, method: str, **data: Any) -> Any:
        target = "room" if method == "join" else "peer"
        peer = None if method == "join" else self.name
        return await self.client.peer_request(self.room_id, peer, {"method": method, "target": target, **data})

    async def join(self) -> None:
        await self.req("join", peerName=self.name, rtpCapabilities=self.caps)

    async def transport(self, tid: int, direction: str) -> None:
        answer = await self.req(
            "createTransport", id=tid, direction=direction, options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": self.sock.getsockname()[1]},
        )
        self.server_addr = (answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"])

    async def produce(self, pid: int, tid: int, ssrc: int) -> None:
        await self.req("createProducer", id=pid, kind="audio", transportId=tid,
                       rtpParameters=opus_parameters(ssrc), paused=False)
        self.ssrc = ssrc

    def send(self, count: int) -> None:
        for _ in range(count):
            self.sock.sendto(rtp_packet(self.seq, self.seq * 960, self.ssrc, 111), self.server_addr)
            self.seq += 1

    async def receive(self, count: int, duration: float = 5.0) -> list[tuple[int, int, int, int]]:
        return [parse_rtp(p) for p in await asyncio.to_thread(drain, self.sock, duration, count)]

    def close(self) -> None:
        self.sock.close()


async def new_room(client: TureenClient, room_id: str) -> dict[str, Any]:
    created = await client.create_room(MEDIA_CODECS, room_id=room_id)
    return peer_capabilities(created["rtpCapabilities"])


async def worker_of(client: TureenClient, room_id: str, peer: str, tid: int) -> int:
    dump = await client.dump_room(room_id)
    (worker,) = [t["worker"] for p in dump["peers"] if p["name"] == peer for t in p["transports"] if t["id"] == tid]
    return worker


async def restarted(client: TureenClient, index: int, old_pid: int) -> dict[str, Any]:
    async def check() -> Any:
        workers = {w["index"]: w for w in (await client.server_info())["workers"]}
        w = workers.get(index)
        return w if w and w["alive"] and w["pid"] != old_pid else None

    return await until(check, f"worker {index} replaced by a live one")


async def mismatches(client: TureenClient) -> list[str]:
    """What the workers hold that the supervisor does not know, and the reverse."""
    expected: dict[int, dict[str, set[Any]]] = {}
    info = await client.server_info()
    for w in info["workers"]:
        expected[w["index"]] = {"transports": set(), "producers": set(), "consumers": set(), "pipes": set()}
    for room in await client.list_rooms():
        dump = await client.dump_room(room["roomId"])
        for peer in dump["peers"]:
            worker_of_tid = {t["id"]: t["worker"] for t in peer["transports"]}
            for t in peer["transports"]:
                expected[t["worker"]]["transports"].add(t["workerId"])
            for p in peer["producers"]:
                expected[p["worker"]]["producers"].add(p["workerId"])
                for index in p["pipedTo"]:
                    expected[index]["producers"].add(p["workerId"])
                    expected[p["worker"]]["pipes"].add((p["workerId"], index))
            for c in peer["consumers"]:
                if c["enabled"]:
                    expected[worker_of_tid[c["transportId"]]]["consumers"].add(c["workerId"])
    problems = []
    for w in info["workers"]:
        if not w["alive"]:
            problems.append(f"worker {w['index']} is not alive")
            continue
        dump = await client.dump_worker(w["index"])
        actual = {
            "transports": {t["transportId"] for t in dump["transports"]},
            "producers": {p["producerId"] for p in dump["producers"]},
            "consumers": {c["consumerId"] for c in dump["consumers"]},
            "pipes": {(p["producerId"], d) for p in dump["producers"] for d in p["pipeWorkers"]},
        }
        for table, want in expected[w["index"]].items():
            if actual[table] != want:
                problems.append(
                    f"worker {w['index']} {table}: only on the worker {sorted(actual[table] - want)}, "
                    f"only in the supervisor {sorted(want - actual[table])}"
                )
        destinations = {int(d) for d in dump["pipe"]["destinations"]}
        if destinations != {d for _, d in actual["pipes"]}:
            problems.append(f"worker {w['index']} has pipe sockets to {sorted(destinations)}")
    return problems


# ---------------------------------------------------------------------- finding 2: stale pipes


async def crash_session(server: ServerProcess) -> None:
    async with TureenClient(server.endpoint, timeout=15.0) as client:
        caps = await new_room(client, "pipes")
        alice, bob = Peer(client, "pipes", "alice", caps), Peer(client, "pipes", "bob", caps)
        bob_out = Peer(client, "pipes", "bob", caps)
        alice_in = Peer(client, "pipes", "alice", caps)
        try:
            await alice.join()
            await bob.join()
            # alice sends from worker A to bob on worker B (a pipe A -> B); bob sends from
            # B to alice on A (a pipe B -> A, whose origin will die). B is killed.
            await alice.transport(1001, "send")
            await bob.transport(2001, "recv")
            a = await worker_of(client, "pipes", "alice", 1001)
            b = await worker_of(client, "pipes", "bob", 2001)
            assert a != b, "placement should spread two peers over two workers"
            await bob_out.transport(2002, "send")
            await alice_in.transport(1002, "recv")
            await alice.produce(3001, 1001, 11_111_111)
            of_alice = await client.next_notification("bob", "newConsumer")
            await bob_out.produce(3002, 2002, 22_222_222)
            of_bob = await client.next_notification("alice", "newConsumer")
            await bob.req("enableConsumer", id=of_alice["id"], transportId=2001, paused=False)
            await alice.req("enableConsumer", id=of_bob["id"], transportId=1002, paused=False)
            alice.send(10)
            bob_out.send(10)
            assert len(await bob.receive(10)) == 10, "alice -> bob across the pipe before the crash"
            assert len(await alice_in.receive(10)) == 10, "bob -> alice across the pipe before the crash"
            dump_a = await client.dump_worker(a)
            assert [p["pipeWorkers"] for p in dump_a["producers"] if p["transportId"] is not None] == [[b]]
            assert await mismatches(client) == []

            (old_pid,) = [w["pid"] for w in (await client.server_info())["workers"] if w["index"] == b]
            os.kill(old_pid, signal.SIGKILL)
            closed = {(await client.next_notification("bob", "transportClosed", timeout=10))["id"] for _ in range(2)}
            assert closed == {2001, 2002}
            gone = await client.next_notification("alice", "consumerClosed", timeout=10)
            assert gone["id"] == of_bob["id"] and gone["peerName"] == "bob"
            new = await restarted(client, b, old_pid)
            server.worker_pids.append(new["pid"])

            # Worker A no longer pipes to index B (the old worker's or the new one's), and
            # holds no copy of bob's producer nor alice's consumer of it.
            dump_a = await client.dump_worker(a)
            assert dump_a["pipe"]["destinations"] == {}, dump_a["pipe"]
            assert [p["pipeWorkers"] for p in dump_a["producers"]] == [[]]
            assert dump_a["consumers"] == []
            assert await mismatches(client) == []

            # The replacement gets nothing meant for the dead worker...
            alice.send(20)
            await asyncio.sleep(0.3)
            assert (await client.dump_worker(b))["counters"]["pipeUnknownProducer"] == 0
            # ...and bob, on a new transport there, consumes alice's producer again.
            await bob.transport(2003, "recv")
            # (placement: the replacement hosts nothing, A hosts alice's two transports)
            assert await worker_of(client, "pipes", "bob", 2003) == b
            await bob.req("enableConsumer", id=of_alice["id"], transportId=2003, paused=False)
            await asyncio.to_thread(drain, bob.sock, 0.2)  # nothing stale in bob's socket
            alice.send(20)
            got = await bob.receive(20)
            assert len(got) == 20, f"bob got {len(got)} of 20 packets through the new pipe"
            assert {p[3] for p in got} == {of_alice["rtpParameters"]["encodings"][0]["ssrc"]}
            assert await mismatches(client) == []
        finally:
            for peer in (alice, bob, bob_out, alice_in):
                peer.close()


def test_a_killed_worker_leaves_no_pipe_on_either_side(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2) as server:
        asyncio.run(crash_session(server))
    assert server.process.returncode == 0, server.log_path.read_text()
    assert "already piped" not in server.log_path.read_text()


# ---------------------------------------------------------------------- finding 5: hung workers


def config_file(tmp_path: Path, **values: float) -> list[str]:
    path = tmp_path / "tureen.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    return ["--config", str(path)]


@contextlib.contextmanager
def stopped(pid: int):
    """SIGSTOP `pid`; SIGCONT at the end if it still lives (then the server kills it or not)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


async def hang_session(server: ServerProcess) -> None:
    async with TureenClient(server.endpoint, timeout=30.0) as client:
        caps = await new_room(client, "hang")
        alice, bob = Peer(client, "hang", "alice", caps), Peer(client, "hang", "bob", caps)
        try:
            await alice.join()
            await bob.join()
            await alice.transport(1001, "send")
            await bob.transport(2001, "recv")
            index = await worker_of(client, "hang", "bob", 2001)
            assert index != await worker_of(client, "hang", "alice", 1001), "placement should spread"
            (hung_pid,) = [w["pid"] for w in (await client.server_info())["workers"] if w["index"] == index]
            with stopped(hung_pid):
                # Bob's request waits on the stopped worker until it is judged dead (not
                # until worker_timeout, 30 s here), then goes to a live worker: a request
                # that needs a worker is placed again when its worker dies under it (issue 11).
                await bob.transport(2002, "send")
                host_index = await worker_of(client, "hang", "bob", 2002)
                (host,) = [w for w in (await client.server_info())["workers"] if w["index"] == host_index]
                assert host["alive"] and host["pid"] != hung_pid
                assert "hung" in server.log() and "placing it again" in server.log()
                note = await client.next_notification("bob", "transportClosed", timeout=10)
                assert note["id"] == 2001
                new = await restarted(client, index, hung_pid)
                server.worker_pids.append(new["pid"])
                assert not pid_alive(hung_pid)
            # New peers are served by live workers; the state matches everywhere.
            carol = Peer(client, "hang", "carol", caps)
            try:
                await carol.join()
                await carol.transport(3001, "recv")
                host_index = await worker_of(client, "hang", "carol", 3001)
                (host,) = [w for w in (await client.server_info())["workers"] if w["index"] == host_index]
                assert host["alive"] and host["pid"] != hung_pid
                assert await mismatches(client) == []
            finally:
                carol.close()
        finally:
            alice.close()
            bob.close()


def test_a_hung_worker_is_killed_replaced_and_its_peers_told(tmp_path: Path) -> None:
    extra = config_file(tmp_path, worker_heartbeat_timeout=3.0, worker_timeout=30.0)
    with running_server(tmp_path, workers=2, extra=extra) as server:
        asyncio.run(hang_session(server))
    assert server.process.returncode == 0, server.log_path.read_text()
    assert "answered no heartbeat" in server.log_path.read_text()


async def expired_session(server: ServerProcess) -> None:
    async with TureenClient(server.endpoint, timeout=15.0) as client:
        caps = await new_room(client, "late")
        bob = Peer(client, "late", "bob", caps)
        try:
            await bob.join()
            await bob.transport(2001, "recv")
            index = await worker_of(client, "late", "bob", 2001)
            info = {w["index"]: w for w in (await client.server_info())["workers"]}
            pid = info[index]["pid"]
            # Stopped for longer than worker_timeout, shorter than the heartbeat bound: the
            # requests time out, the worker lives on and later reads them.
            with stopped(pid):
                results = await asyncio.gather(
                    bob.transport(2002, "send"), bob.transport(2003, "recv"), return_exceptions=True
                )
                assert all(isinstance(r, ProtocolError) and r.code == "unavailable" for r in results), results
            after = {w["index"]: w for w in (await client.server_info())["workers"]}
            assert after[index]["pid"] == pid, "the worker was replaced"
            # Give the resumed worker time to read what waited for it.
            await until(lambda: _answers(client, index), f"worker {index} answering again")
            await asyncio.sleep(0.5)
            assert await mismatches(client) == []
        finally:
            bob.close()


async def _answers(client: TureenClient, index: int) -> bool:
    with contextlib.suppress(ProtocolError):
        await client.dump_worker(index)
        return True
    return False


def test_requests_that_timed_out_are_not_executed_when_the_worker_resumes(tmp_path: Path) -> None:
    extra = config_file(tmp_path, worker_heartbeat_timeout=20.0, worker_timeout=2.0)
    with running_server(tmp_path, workers=1, extra=extra) as server:
        asyncio.run(expired_session(server))
    assert server.process.returncode == 0, server.log_path.read_text()


# ---------------------------------------------------------------------- finding 3: SIGTERM


async def join_five_then_sigterm(server: ServerProcess) -> tuple[list[dict[str, Any]], int | None]:
    async with TureenClient(server.endpoint, timeout=15.0) as app:
        caps = await new_room(app, "bye")
        names = [f"p{i}" for i in range(5)]
        for name in names:
            await app.peer_request("bye", None, {"method": "join", "target": "room", "peerName": name,
                                                 "rtpCapabilities": caps})
        server.process.send_signal(signal.SIGTERM)
        events = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                event = await app.next_event(timeout=0.2)
                events.append(event)
                if event.get("event") == "room.closed":
                    break
        code = await asyncio.to_thread(server.process.wait, 15)
        return events, code


def test_sigterm_tells_every_peer_and_the_app_before_exiting(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=1) as server:
        events, code = asyncio.run(join_five_then_sigterm(server))
    closed = [e["peerName"] for e in events
              if e.get("event") == "notification" and e["notification"]["method"] == "closed"]
    assert sorted(closed) == [f"p{i}" for i in range(5)], events
    assert [e["roomId"] for e in events if e.get("event") == "room.closed"] == ["bye"], events
    assert code == 0, server.log_path.read_text()


# ---------------------------------------------------------------------- finding 8: run dirs


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    log = open(tmp_path / f"serve-{endpoint.rsplit(':', 1)[1]}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "tureen.supervisor.cli", "serve", "--control", endpoint, *args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )


def kill_supervisor(server: ServerProcess) -> None:
    """`kill -9` of the supervisor; its workers exit by themselves (parent check)."""
    server.process.kill()
    server.process.wait(5)
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in server.worker_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(pid) for pid in server.worker_pids), "workers outlived a killed supervisor"


def test_a_killed_supervisors_run_dir_is_cleaned_at_the_next_start(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path, workers=2)
    try:
        first.wait_ready()
        kill_supervisor(first)
    finally:
        first.stop()
    stale = sorted(p.name for p in first.run_dir.glob("*.ipc"))
    assert "worker-1.ipc" in stale, stale
    # What a worker killed with it leaves too (the workers above exited cleanly).
    (first.run_dir / "pipe-1.ipc").touch()

    # A second server on the same run dir, one worker: index 1's files must go.
    args = ["--workers", "1", "--run-dir", str(first.run_dir), "--log-level", "debug"]
    (tmp_path / "again").mkdir(exist_ok=True)
    proc = serve(tmp_path / "again", *args)
    try:
        deadline = time.monotonic() + 20
        while not (first.run_dir / "pipe-0.ipc").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "the second server did not start on a stale run dir"
            time.sleep(0.1)
        assert (first.run_dir / "pipe-0.ipc").exists()
        assert sorted(p.name for p in first.run_dir.glob("*-1.ipc")) == []
        assert (first.run_dir / "supervisor.lock").read_text().split() == [str(proc.pid)]

        # A third one on the same run dir refuses while the second lives, and says why.
        third = serve(tmp_path / "again", *args)
        assert third.wait(20) == 1
        logs = " ".join(p.read_text() for p in (tmp_path / "again").glob("serve-*.log"))
        assert f"is in use by another tureen supervisor (pid {proc.pid})" in logs, logs
        assert (first.run_dir / "pipe-0.ipc").exists(), "the refused server touched the run dir"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert not list(first.run_dir.glob("*.ipc"))


def test_a_killed_supervisors_temp_run_dir_is_removed_at_the_next_start(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    killed = serve(tmp_path, "--workers", "1", env=env)
    live = serve(tmp_path, "--workers", "1", env=env)
    procs = [killed, live]
    try:
        deadline = time.monotonic() + 20
        while len([d for d in tmp.glob("tureen-*") if (d / "pipe-0.ipc").exists()]) < 2:
            assert time.monotonic() < deadline, "two servers did not start"
            assert killed.poll() is None and live.poll() is None
            time.sleep(0.1)
        owners = {int((d / "supervisor.lock").read_text().split()[0]): d for d in tmp.glob("tureen-*")}
        assert set(owners) == {killed.pid, live.pid}
        killed.kill()
        killed.wait(5)
        (tmp / "tureen-unrelated").mkdir()  # no lock file: not ours to judge
        # A configured run_dir named like ours, whose (killed) owner left its lock: kept.
        (tmp / "tureen-configured").mkdir()
        (tmp / "tureen-configured" / "supervisor.lock").write_text(f"{killed.pid}\n")

        third = serve(tmp_path, "--workers", "1", env=env)
        procs.append(third)
        deadline = time.monotonic() + 20
        while owners[killed.pid].exists():
            assert time.monotonic() < deadline, "the killed server's run dir was not removed"
            assert third.poll() is None
            time.sleep(0.1)
        assert owners[live.pid].exists(), "a live server's run dir was removed"
        assert (tmp / "tureen-unrelated").exists() and (tmp / "tureen-configured").exists()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert live.returncode == 0 and third.returncode == 0
    assert sorted(d.name for d in tmp.iterdir()) == ["tureen-configured", "tureen-unrelated"]
