"""A real `tureen serve --workers N` for the benchmark: started, pinned, watched, stopped.

Workers are started with --no-pin and pinned here, all to the forwarder's core: with two
cores, one is the forwarder's and the other the load tool's, so in the cross-worker and
meeting scenarios the workers share the forwarder core and their CPU is summed. The
supervisor goes to the tools' core (it only answers the control API and polls workers).

`fanout` picks the workers' fan-out core (`tureen serve --fanout native|python|auto`); the
server is then only "ready" once every worker's load report (server.info -> workers[i].load,
from worker.info) names the core it really runs, and a server running another core than the
one asked for is refused (CoreMismatch), never measured under the wrong label.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
from tureen.shared.client import TureenClient

from . import cpus

# `--fanout` value -> the core a worker then reports in worker.info's "fanout".
EXPECTED_CORE = {"native": "native", "python": "python"}
BENCH_MAX_PEERS = 2000  # max_peers_per_room of the servers the bench starts (default 500)


class CoreMismatch(RuntimeError):
    """The workers run another fan-out core than the one the server was started with."""


def core_mismatch(fanout: str | None, cores: list[str | None]) -> str | None:
    """Why workers reporting `cores` are not what `--fanout fanout` asked for, or None (also
    for the server's default, auto: nothing to check)."""
    want = EXPECTED_CORE.get(fanout or "")
    if want is None or all(core == want for core in cores):
        return None
    return (f"tureen serve --fanout {fanout}: the workers report fan-out cores {cores}, not {want!r}; "
            f"refusing to measure it as {want}")


def worker_cores(info: dict[str, Any]) -> list[str | None]:
    """Each worker's fan-out core ("native", "python", "per-copy"), by index, from server.info
    (its per-worker `load` is the worker's last worker.info reply); None where not reported."""
    return [(w.get("load") or {}).get("fanout") for w in sorted(info["workers"], key=lambda w: w["index"])]


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TureenServer:
    """`python -m tureen.supervisor.cli serve` in a child process; only its own pids are
    ever signalled."""

    def __init__(self, workers: int, log_dir: Path, forwarder_cpu: int, tools_cpu: int,
                 fanout: str | None = None) -> None:
        self.workers = workers
        self.fanout = fanout  # None: the server's default (auto)
        self.endpoint = f"tcp://127.0.0.1:{_free_tcp_port()}"
        self.forwarder_cpu = forwarder_cpu
        self.tools_cpu = tools_cpu
        log_dir.mkdir(parents=True, exist_ok=True)
        self._run_dir = tempfile.TemporaryDirectory(prefix="tureen-bench-")
        core = f"-{fanout}" if fanout else ""
        self.log_path = log_dir / f"tureen-serve-{workers}w{core}-{self.endpoint.rsplit(':', 1)[1]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tureen.supervisor.cli", "serve",
                "--workers", str(workers), "--no-pin", "--control", self.endpoint,
                "--run-dir", self._run_dir.name, "--log-level", "warning", "--metrics-listen", "off",
                *(["--fanout", fanout] if fanout else []),
            ],
            stdout=self._log, stderr=subprocess.STDOUT,
            # The fan-out N=500 scenarios join 501 peers into one room: above the default quota.
            env={**os.environ, "TUREEN_MAX_PEERS_PER_ROOM": str(BENCH_MAX_PEERS)},
        )
        self.worker_pids: list[int] = []
        self.cores: list[str | None] = []  # what each worker reported running, by index

    async def wait_ready(self, client: TureenClient, timeout: float = 30.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tureen serve exited with {self.process.returncode}; see {self.log_path}")
            info: dict[str, Any] | None = None
            with contextlib.suppress(Exception):
                info = await client.request("server.info", timeout=1.0)
            if info is not None:
                workers = info["workers"]
                ready = len(workers) == self.workers and all(w["alive"] for w in workers)
                # A worker's first load report comes right after its start; wait for it when
                # a core was asked for, so the check below has something to check.
                if ready and (self.fanout is None or None not in worker_cores(info)):
                    self.worker_pids = [w["pid"] for w in sorted(workers, key=lambda w: w["index"])]
                    self.cores = worker_cores(info)
                    self.check_cores(self.cores)
                    self._pin()
                    return info
            await asyncio.sleep(0.1)
        raise RuntimeError(f"tureen serve not ready within {timeout} s; see {self.log_path}")

    def check_cores(self, cores: list[str | None]) -> None:
        """Raise CoreMismatch unless every worker runs the core asked for."""
        why = core_mismatch(self.fanout, cores)
        if why:
            raise CoreMismatch(why)

    def _pin(self) -> None:
        for pid in self.worker_pids:
            cpus.pin(pid, self.forwarder_cpu)
        # Only the supervisor's own threads: its children (the workers) keep their core.
        cpus.pin(self.process.pid, self.tools_cpu)

    def repin(self) -> None:
        """Pin again: threads started after the first pin (ZeroMQ's I/O thread once a pipe
        opens) inherit the main thread's core, but say so explicitly before measuring."""
        self._pin()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pid in self.worker_pids:  # our own workers only, by pid, if they outlived it
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.ppid() in (self.process.pid, 1) and "tureen" in " ".join(proc.cmdline()):
                    proc.kill()
        self._log.close()
        self._run_dir.cleanup()
