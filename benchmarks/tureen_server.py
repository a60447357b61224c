"""A real `tureen serve --workers N` for the benchmark: started, pinned, watched, stopped.

Workers are started with --no-pin and pinned here, all to the forwarder's core: with two
cores, one is the forwarder's and the other the load tool's, so in the cross-worker and
meeting scenarios the workers share the forwarder core and their CPU is summed. The
supervisor goes to the tools' core (it only answers the control API and polls workers).
"""

from __future__ import annotations

import asyncio
import contextlib
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


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TureenServer:
    """`python -m tureen.supervisor.cli serve` in a child process; only its own pids are
    ever signalled."""

    def __init__(self, workers: int, log_dir: Path, forwarder_cpu: int, tools_cpu: int) -> None:
        self.workers = workers
        self.endpoint = f"tcp://127.0.0.1:{_free_tcp_port()}"
        self.forwarder_cpu = forwarder_cpu
        self.tools_cpu = tools_cpu
        log_dir.mkdir(parents=True, exist_ok=True)
        self._run_dir = tempfile.TemporaryDirectory(prefix="tureen-bench-")
        self.log_path = log_dir / f"tureen-serve-{workers}w-{self.endpoint.rsplit(':', 1)[1]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tureen.supervisor.cli", "serve",
                "--workers", str(workers), "--no-pin", "--control", self.endpoint,
                "--run-dir", self._run_dir.name, "--log-level", "warning",
            ],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.worker_pids: list[int] = []

    async def wait_ready(self, client: TureenClient, timeout: float = 30.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tureen serve exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(Exception):
                info = await client.request("server.info", timeout=1.0)
                workers = info["workers"]
                if len(workers) == self.workers and all(w["alive"] for w in workers):
                    self.worker_pids = [w["pid"] for w in sorted(workers, key=lambda w: w["index"])]
                    self._pin()
                    return info
            await asyncio.sleep(0.1)
        raise RuntimeError(f"tureen serve not ready within {timeout} s; see {self.log_path}")

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
