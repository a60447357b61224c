"""Helpers shared by the integration and protocol tests: a real `tureen serve`, RTP sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import zmq
import zmq.asyncio

MEDIA_CODECS: list[dict[str, Any]] = [
    {"kind": "audio", "name": "opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "name": "VP8", "clockRate": 90000},
    {"kind": "video", "name": "H264", "clockRate": 90000, "parameters": {"packetization-mode": 1}},
]


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real `tureen serve` in a child process, stopped by SIGTERM (then kill) at the end."""

    def __init__(self, tmp: Path, workers: int = 2, extra: list[str] | None = None) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
        self.log_path = tmp / "tureen.log"
        self.run_dir = tmp / "run"
        args = [
            sys.executable, "-m", "tureen.supervisor.cli", "serve",
            "--workers", str(workers), "--control", self.endpoint,
            "--run-dir", str(self.run_dir), "--log-level", "debug", *(extra or []),
        ]
        # Many servers run at once (xdist, scripts/bench_curve.py): none takes the default
        # metrics port unless the caller asks for an endpoint.
        if "--metrics-listen" not in args:
            args += ["--metrics-listen", "off"]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        self.worker_pids: list[int] = []
        self.fanout = "auto"  # the --fanout asked for (media_server sets it)

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tureen serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                info = self.info()
                if info["workers"] and all(w["alive"] for w in info["workers"]):
                    self.worker_pids = [w["pid"] for w in info["workers"]]
                    return info
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"tureen serve not ready in {timeout} s ({last}):\n{self.log()}")

    def info(self, timeout: float = 1.0) -> dict[str, Any]:
        """server.info over a plain blocking socket (usable inside and outside event loops)."""
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        try:
            sock.connect(self.endpoint)
            sock.send(orjson.dumps({"id": 1, "method": "server.info"}))
            reply = orjson.loads(sock.recv())
        finally:
            sock.close()
        if not reply.get("ok"):
            raise RuntimeError(f"server.info failed: {reply}")
        return reply["data"]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pid in self.worker_pids:  # never leave an orphan, even when a test failed
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.ppid() in (self.process.pid, 1) and "tureen" in " ".join(proc.cmdline()):
                    proc.kill()
        self._log.close()
        return self.process.returncode


@contextlib.contextmanager
def running_server(tmp: Path, workers: int = 2, extra: list[str] | None = None) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp, workers, extra)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def peer_capabilities(room_caps: dict[str, Any]) -> dict[str, Any]:
    """What mediasoup-client sends in join: the room codecs it supports, room PTs and ids."""
    return {
        "codecs": [
            {k: v for k, v in codec.items() if k != "preferredPayloadType"}
            | {"preferredPayloadType": codec["preferredPayloadType"]}
            for codec in room_caps["codecs"]
        ],
        "headerExtensions": [
            {"kind": ext["kind"], "uri": ext["uri"], "preferredId": ext["preferredId"]}
            for ext in room_caps["headerExtensions"]
        ],
        "fecMechanisms": [],
    }


def opus_parameters(ssrc: int, pt: int = 111) -> dict[str, Any]:
    return {
        "muxId": "0",
        "codecs": [
            {"name": "opus", "mimeType": "audio/opus", "payloadType": pt, "clockRate": 48000,
             "channels": 2, "parameters": {"useinbandfec": 1}},
        ],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1},
        ],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": "tureen-test", "reducedSize": True, "mux": True},
    }


def vp8_parameters(ssrc: int, rtx_ssrc: int) -> dict[str, Any]:
    return {
        "muxId": "1",
        "codecs": [
            {"name": "VP8", "mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000,
             "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]},
            {"name": "rtx", "mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000,
             "parameters": {"apt": 96}},
        ],
        "headerExtensions": [],
        "encodings": [{"ssrc": ssrc, "rtx": {"ssrc": rtx_ssrc}}],
        "rtcp": {"cname": "tureen-test", "reducedSize": True, "mux": True},
    }


def rtp_packet(seq: int, ts: int, ssrc: int, pt: int, payload: bytes = b"\x00" * 160, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def parse_rtp(data: bytes) -> tuple[int, int, int, int]:
    """(pt, seq, ts, ssrc) of a plain RTP packet."""
    _, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    return b1 & 0x7F, seq, ts, ssrc


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket, duration: float = 0.5, expect: int | None = None) -> list[bytes]:
    """Everything the socket receives within `duration` s (or until `expect` packets)."""
    packets: list[bytes] = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            packets.append(sock.recv(65535))
            if expect is not None and len(packets) >= expect:
                break
        except BlockingIOError:
            time.sleep(0.005)
    return packets


def notify_listener(path: Path) -> socket.socket:
    """A unix datagram socket bound at `path`: what systemd listens on as NOTIFY_SOCKET."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    return listener


def notification(listener: socket.socket, deadline: float) -> str:
    """The next sd_notify datagram on `listener` before `deadline` (monotonic), as text."""
    listener.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return listener.recv(4096).decode()
    except TimeoutError:
        raise AssertionError("no notification before the deadline") from None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def stun_check(ufrag: str, password: str, *, use_candidate: bool = False) -> bytes:
    """A connectivity check as a browser sends it to `ufrag` (the server's) with `password`."""
    from aioice import stun

    attributes: dict[str, Any] = {
        "USERNAME": f"{ufrag}:tEsT",
        "ICE-CONTROLLING": 0x1122334455667788,
        "PRIORITY": 1853817087,
    }
    if use_candidate:
        attributes["USE-CANDIDATE"] = None
    msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes=attributes)
    msg.add_message_integrity(password.encode())
    return bytes(msg)


def stun_answer(sock: socket.socket, request: bytes, dest: tuple[str, int], timeout: float = 2.0) -> Any:
    """Send a STUN request from `sock` and return the parsed answer (aioice Message)."""
    from aioice import stun

    sock.sendto(request, dest)
    packets = drain(sock, timeout, 1)
    assert packets, f"no STUN answer from {dest} within {timeout} s"
    return stun.parse_message(packets[0])


@contextlib.asynccontextmanager
async def fake_worker_link(
    tmp_path: Path,
    *,
    index: int = 0,
    on_event: Callable[..., None] | None = None,
    on_exit: Callable[..., None] | None = None,
    worker_end: bool = True,
    read: bool = False,
) -> AsyncIterator[tuple[Any, zmq.asyncio.Socket | None]]:
    """A live WorkerLink with no process behind it: its DEALER bound at the worker's ipc path
    and, with `worker_end`, a DEALER connected there that the test plays the worker with.
    `read` runs the link's reader. Yields (link, worker socket or None); closes it all."""
    from tureen.shared.config import Config
    from tureen.supervisor.worker_link import WorkerLink

    ctx = zmq.asyncio.Context()
    nothing: Callable[..., None] = lambda *a: None  # noqa: E731
    link = WorkerLink(index, Config(), tmp_path, ctx, on_event or nothing, on_exit or nothing)
    endpoint = f"ipc://{tmp_path}/worker-{index}.ipc"
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    worker = None
    if worker_end:
        worker = ctx.socket(zmq.DEALER)
        worker.setsockopt(zmq.LINGER, 0)
        worker.connect(endpoint)
    link._socket = sock
    link.alive = True
    reader = asyncio.get_running_loop().create_task(link._read()) if read else None
    try:
        yield link, worker
    finally:
        if reader is not None:
            reader.cancel()
        sock.close(linger=0)
        if worker is not None:
            worker.close(linger=0)
        ctx.term()
