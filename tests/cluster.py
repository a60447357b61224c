"""A Tureen spread over hosts on one machine, for the multi-host tests (issue 15).

`Cluster` runs a supervisor (`tureen serve --hosts-listen`) in namespace `sup` of a
tests/netns.py `Network` and `tureen host`s in namespaces of their own, all with CURVE keys
made for the test; the control API is reached over ipc:// (a socket file: the runner's
namespace shares the file system with the others, not the network). `Clients` runs
tests/clients_agent.py in a clients' namespace: the plain RTP and aiortc WebRTC peers that
reach the hosts' media addresses. The `net` and `cluster` fixtures reach every test through
tests/conftest.py (`pytest_plugins`); `until` and the small probes bound every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from netns import Host, Network
from tureen.shared.client import TureenClient
from tureen.shared.curve import generate_keys

HOSTS_PORT = 4478
AGENT = Path(__file__).resolve().parent / "clients_agent.py"


class Cluster:
    """A supervisor in namespace `sup` and remote hosts, with CURVE keys in `tmp`."""

    def __init__(self, net: Network, tmp: Path, extra: tuple[str, ...] = (), *, workers: int = 1) -> None:
        """`extra`: more `tureen serve` options."""
        self.net = net
        self.tmp = tmp
        self.keys = tmp / "keys"
        for name in ("server", "app"):
            generate_keys(self.keys, name)
        (tmp / "clients").mkdir()
        (tmp / "hosts").mkdir()
        shutil.copy(self.keys / "app.key", tmp / "clients" / "app.key")
        self.control = f"ipc://{tmp}/control.ipc"
        self.sup = net.add_host("sup")
        self.hosts_endpoint = f"tcp://{self.sup.address}:{HOSTS_PORT}"
        self.logs: list[Path] = []
        self.host_processes: dict[str, subprocess.Popen[bytes]] = {}  # the latest per host name
        self.supervisor = self._start(
            self.sup, "supervisor",
            ["serve", "--workers", str(workers), "--control", self.control, "--rtc-ip", self.sup.address,
             "--hosts-listen", self.hosts_endpoint, "--curve-server-cert", str(self.keys / "server.key_secret"),
             "--curve-clients", str(tmp / "clients"), "--curve-hosts", str(tmp / "hosts"),
             "--metrics-listen", "off", "--run-dir", str(tmp / "run-sup"), "--log-level", "debug", *extra],
        )

    def _start(self, where: Host, label: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{label}.log"
        self.logs.append(log)
        out = open(log, "ab")  # noqa: SIM115 - the child holds it; closed with the test's tmp
        return where.popen([sys.executable, "-m", "tureen.supervisor.cli", *args], stdout=out, stderr=subprocess.STDOUT)

    def start_host(
        self, name: str, *, allowed: bool = True, workers: int = 1, extra: tuple[str, ...] = ()
    ) -> tuple[Host, subprocess.Popen[bytes]]:
        """`tureen host NAME` in namespace NAME (made if new); its key allowed unless told
        not; `extra`: more `tureen host` options."""
        where = self.net.hosts.get(name) or self.net.add_host(name)
        if not (self.keys / f"{name}.key").exists():
            generate_keys(self.keys, name)
        if allowed:
            shutil.copy(self.keys / f"{name}.key", self.tmp / "hosts" / f"{name}.key")
        process = self._start(
            where, f"host-{name}",
            ["host", "--connect", self.hosts_endpoint, "--name", name, "--workers", str(workers),
             "--rtc-ipv4", where.address, "--curve-cert", str(self.keys / f"{name}.key_secret"),
             "--curve-server-key", str(self.keys / "server.key"), "--run-dir", str(self.tmp / f"run-{name}"),
             "--no-pin", "--log-level", "debug", *extra],
        )
        self.host_processes[name] = process
        return where, process

    def client(self) -> TureenClient:
        """A control-API client with the app's CURVE keys."""
        return TureenClient(
            self.control, timeout=10.0, curve_cert=str(self.keys / "app.key_secret"),
            curve_server_key=str(self.keys / "server.key"),
        )

    async def clients(self, room: str, name: str = "clients") -> Clients:
        """tests/clients_agent.py in namespace `name` (made if new), playing peers of `room`."""
        where = self.net.hosts.get(name) or self.net.add_host(name)
        log = self.tmp / f"agent-{name}.log"
        self.logs.append(log)
        process = where.popen(
            [sys.executable, str(AGENT), self.control, str(self.keys / "app.key_secret"),
             str(self.keys / "server.key"), room, where.address],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "ab"),  # noqa: SIM115
        )
        agent = Clients(process)
        await agent.answer(30.0)  # "ready": connected and subscribed to the room
        return agent

    def dump_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}" for p in self.logs if p.exists())


class Clients:
    """The test's end of a tests/clients_agent.py: one JSON order, one JSON answer."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._lock = asyncio.Lock()

    async def answer(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)
        except TimeoutError:
            raise AssertionError(f"the clients' agent gave no answer within {timeout} s") from None
        if not line:
            raise AssertionError(f"the clients' agent ended (exit {self.process.poll()}): see its log")
        answer = orjson.loads(line)
        if "error" in answer:
            raise AssertionError(f"the clients' agent: {answer['error']}\n{answer.get('trace', '')}")
        return answer

    async def order(self, op: str, timeout: float = 60.0, **data: Any) -> dict[str, Any]:
        """Send one order (see tests/clients_agent.py) and return its answer (bounded)."""
        assert self.process.stdin is not None
        async with self._lock:
            self.process.stdin.write(orjson.dumps({"op": op, **data}) + b"\n")
            self.process.stdin.flush()
            return await self.answer(timeout)

    async def counts(self) -> dict[str, dict[str, int]]:
        """{receiver: {"SENDER/KIND": packets or decoded frames}}."""
        return (await self.order("counts", timeout=15.0))["counts"]


@pytest.fixture
def net() -> Iterator[Network]:
    with Network() as network:
        yield network


@contextlib.asynccontextmanager
async def running_cluster(net: Network, tmp: Path, extra: tuple[str, ...] = ()) -> AsyncIterator[Cluster]:
    """A Cluster (`extra`: more `serve` options), its supervisor stopped and its logs shown
    at the end."""
    cluster = Cluster(net, tmp, extra)
    try:
        yield cluster
    finally:
        print(cluster.dump_logs())  # shown when the test fails
        if cluster.supervisor.poll() is None:
            cluster.supervisor.send_signal(signal.SIGTERM)
            await asyncio.to_thread(cluster.supervisor.wait, 20)


@pytest.fixture
async def cluster(net: Network, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(net, tmp_path) as running:
        yield running


async def until(probe: Any, what: str, timeout: float = 20.0) -> Any:
    """Poll the async `probe` until it returns something true (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def host_entry(client: TureenClient, name: str, state: str = "up") -> dict[str, Any] | None:
    """hosts.list's entry of host `name` once it is in `state` with workers, else None."""
    try:
        listing = await client.request("hosts.list")
    except Exception:
        return None
    return next((h for h in listing["hosts"] if h["name"] == name and h["state"] == state and h["workers"]), None)


async def host_not_up(client: TureenClient, name: str) -> bool:
    listing = await client.list_hosts()
    return all(h["state"] == "lost" for h in listing["hosts"] if h["name"] == name)


async def worker_pid(client: TureenClient, index: int) -> int:
    return next(w["pid"] for w in (await client.server_info())["workers"] if w["index"] == index)


async def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
