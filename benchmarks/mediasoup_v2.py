"""The `mediasoup-v2` rows: the real mediasoup 2.6.19 under the same load, sink and figures.

A built mediasoup 2.6.19 (never part of this repository; see HOW_TO_BUILD) is driven by
benchmarks/mediasoup_v2.js, Tureen's own Node script, through mediasoup's server API with
plain RTP transports: a Server with ONE worker, a room with the benchmark's codecs, a
producer peer sending the same rtpParameters as the Tureen rows (scenarios._rtp_parameters)
from the harness's source socket, and N spy peers each consuming it over a plain transport
to one of the harness's sinks, every consumer enabled. The harness then runs the same
rtpload trials and saturation search on it as on Tureen: the CPU counted is the
mediasoup-worker process's (every thread, schedstat), pinned to the forwarder's core as a
Tureen worker is; Node (mediasoup's "supervisor") goes to the tools' core, as Tureen's
supervisor does.

Plain transports only: mediasoup v2's PlainRtpTransport has no SRTP, so there is no
`mediasoup-v2` row in the SRTP scenarios (that would need a WebRTC transport with ICE and
DTLS from the harness, which benchmarks/webrtc.py does for Tureen only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from . import cpus
from .load import VIDEO_SIZE, Expect, Stream, Topology, port_of, udp_socket
from .scenarios import MEDIA_CODECS, VIDEO_PT, Built, _rtp_parameters

if TYPE_CHECKING:
    from .report import Row

ENV = "TUREEN_BENCH_MEDIASOUP_V2"  # the folder of a built mediasoup 2.6.19 (its `package/`)
LABEL = "mediasoup-v2"  # the rows' `fwd` column
VERSION = "2.6.19"
DRIVER = Path(__file__).resolve().parent / "mediasoup_v2.js"
WORKER_NAME = "mediasoup-worker"
WORKER_BINARY = Path("worker", "out", "Release", WORKER_NAME)
RTC_PORTS = (20000, 29999)  # the worker's UDP port range (its transports' local ports)
SOURCE_SSRC = 0x1000_0001  # as scenarios.fanout's producer
REPLY_TIMEOUT = 120.0  # s: building N=500 through the Node API takes seconds, not minutes

HOW_TO_BUILD = (
    "build mediasoup 2.6.19 outside the repository (about 3 min, needs a Python 2 for its gyp): "
    "mkdir -p /tmp/msv2 && cd /tmp/msv2 && npm pack mediasoup@2.6.19 && tar xzf mediasoup-2.6.19.tgz "
    "&& cd package && PYTHON=~/.pyenv/versions/2.7.18/bin/python CORES=2 nice -n 19 npm install "
    f"--omit=optional --omit=dev; then pass --mediasoup-v2 /tmp/msv2/package or set {ENV}=/tmp/msv2/package"
)


class BuildMissing(ValueError):
    """The folder given is not a built mediasoup 2.6.19 (the message says what to do)."""


def check_build(folder: Path) -> str:
    """The version of the built mediasoup in `folder` (its npm `package/` folder); raises
    BuildMissing, saying what is missing and how to build it, unless it is a built 2.x with
    its worker binary and Node is on PATH."""
    package = folder / "package.json"
    if not package.is_file():
        raise BuildMissing(f"{folder}: no package.json, not a mediasoup package folder; {HOW_TO_BUILD}")
    try:
        meta = json.loads(package.read_text())
    except (OSError, ValueError) as error:
        raise BuildMissing(f"{package}: unreadable ({error}); {HOW_TO_BUILD}") from error
    name, version = meta.get("name"), str(meta.get("version", ""))
    if name != "mediasoup" or not version.startswith("2."):
        raise BuildMissing(f"{folder} holds {name} {version}, not mediasoup 2.x (the v2 protocol); {HOW_TO_BUILD}")
    if not (folder / "lib" / "mediasoup.js").is_file():
        raise BuildMissing(f"{folder}: no lib/mediasoup.js; {HOW_TO_BUILD}")
    if not os.access(folder / WORKER_BINARY, os.X_OK):
        raise BuildMissing(f"{folder}: no {WORKER_BINARY} (npm install did not build the worker); {HOW_TO_BUILD}")
    if shutil.which("node") is None:
        raise BuildMissing("node is not on PATH: the mediasoup-v2 rows need Node.js (v20 was used)")
    return version


def resolve(arg: str | None, environ: dict[str, str] | None = None) -> tuple[Path | None, str | None]:
    """Which build to run: `--mediasoup-v2 DIR` (arg), else the env var ENV. Returns (folder,
    None) when one is given (check_build raises if it is not usable: asked for, it must run),
    or (None, the one line the run prints saying why the rows are skipped and how to build)."""
    env = os.environ if environ is None else environ
    given = arg if arg is not None else env.get(ENV) or None
    if not given:
        return None, f"mediasoup-v2 rows: skipped (no build given). To add them, {HOW_TO_BUILD}"
    folder = Path(given).expanduser().resolve()
    check_build(folder)
    return folder, None


def fanout_request(source_port: int, sink_ports: list[int]) -> dict[str, Any]:
    """The driver's `fanout` command: the same codecs and producer parameters as the Tureen
    rows (scenarios.MEDIA_CODECS, scenarios._rtp_parameters), our sockets as the remotes."""
    return {
        "cmd": "fanout", "mediaCodecs": MEDIA_CODECS,
        "producer": {"kind": "video", "rtpParameters": _rtp_parameters("video", SOURCE_SSRC)},
        "sourcePort": source_port, "sinkPorts": sink_ports,
    }


def driver_reply(line: bytes, want: str) -> dict[str, Any]:
    """One reply line of the driver, checked: it answered `want`, or the error it gave."""
    text = line.decode(errors="replace").strip()
    if not text:
        raise RuntimeError(f"mediasoup v2 driver ended without answering {want!r}")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise RuntimeError(f"mediasoup v2 driver said {text!r}, not JSON") from error
    if "error" in data:
        raise RuntimeError(f"mediasoup v2 driver, {want}: {data['error']}")
    if data.get("ok") != want:
        raise RuntimeError(f"mediasoup v2 driver answered {data!r} to {want!r}")
    return data


class MediasoupV2:
    """`node benchmarks/mediasoup_v2.js DIR` in a child process with one mediasoup-worker;
    only its own pids are ever signalled."""

    def __init__(self, folder: Path, log_dir: Path, forwarder_cpu: int, tools_cpu: int) -> None:
        self.folder = folder
        self.forwarder_cpu = forwarder_cpu
        self.tools_cpu = tools_cpu
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "mediasoup-v2.log"
        self.process: asyncio.subprocess.Process | None = None
        self.worker_pids: list[int] = []
        self.version = ""
        self._log: Any = None

    async def _command(self, data: dict[str, Any]) -> dict[str, Any]:
        assert self.process and self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(data).encode() + b"\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                line = await self.process.stdout.readline()
                if not line or line.startswith(b"{"):
                    return driver_reply(line, data["cmd"])
                # Anything else is mediasoup's own logging (DEBUG=mediasoup* writes to stdout).
                self._log.write(line)

    async def start(self, log_level: str = "warn", log_tags: tuple[str, ...] = ()) -> None:
        """Start Node and its one worker; find and pin the worker (forwarder core) and Node
        (tools core). The worker's log (mediasoup's logLevel / logTags; shown with
        DEBUG='mediasoup*') goes to log_path."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = await asyncio.create_subprocess_exec(
            "node", str(DRIVER), str(self.folder),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self._log,
        )
        cpus.pin(self.process.pid, self.tools_cpu)  # before the worker exists: it inherits this
        reply = await self._command({"cmd": "start", "rtcMinPort": RTC_PORTS[0], "rtcMaxPort": RTC_PORTS[1],
                                     "logLevel": log_level, "logTags": list(log_tags)})
        self.version = reply["version"]
        children = [p for p in psutil.Process(self.process.pid).children() if p.name() == WORKER_NAME]
        if len(children) != 1:
            raise RuntimeError(f"mediasoup v2: expected one {WORKER_NAME} child, found {len(children)}; "
                               f"see {self.log_path}")
        self.worker_pids = [children[0].pid]
        self.repin()

    def repin(self) -> None:
        """Pin every thread of the worker to the forwarder's core, Node's own threads (not
        its child's) to the tools'."""
        for pid in self.worker_pids:
            cpus.pin(pid, self.forwarder_cpu)
        if self.process:
            cpus.pin(self.process.pid, self.tools_cpu)

    async def fanout(self, n: int) -> Built:
        """One producer, n consumers over plain transports; the harness's sockets at both ends."""
        source = udp_socket()
        sinks = [udp_socket() for _ in range(n)]
        reply = await self._command(fanout_request(port_of(source), [port_of(s) for s in sinks]))
        consumers = reply["consumers"]
        if len(consumers) != n:
            raise RuntimeError(f"mediasoup v2 made {len(consumers)} consumers, not {n}")
        stream = Stream(source, reply["inputPort"], SOURCE_SSRC, VIDEO_PT, VIDEO_SIZE, ts_step=3000)
        expects = [Expect(sink, c["ssrc"], c["pt"], 0) for sink, c in zip(sinks, consumers, strict=True)]
        return Built(topology=Topology([stream], expects), input_ports=[reply["inputPort"]], consumers=n,
                     sockets=[source, *sinks])

    async def stop(self, timeout: float = 10.0) -> None:
        """Close Node's stdin (it closes the server, whose worker then exits), then SIGTERM and
        kill by pid if either outlives it."""
        proc = self.process
        if proc is not None and proc.returncode is None:
            if proc.stdin:
                with contextlib.suppress(Exception):
                    proc.stdin.close()
            try:
                async with asyncio.timeout(timeout):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(5):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        for pid in self.worker_pids:  # our own worker only, if it outlived Node
            with contextlib.suppress(psutil.Error):
                worker = psutil.Process(pid)
                if worker.name() == WORKER_NAME and worker.ppid() in ((proc.pid if proc else 0), 1):
                    worker.kill()
        if self._log:
            self._log.close()
            self._log = None


@dataclass
class Versus:
    """Tureen's row against mediasoup v2's in one scenario, same run (the `vs mediasoup v2`
    line): output packets/s held, and CPU per output packet (each at its own held rate)."""

    scenario: str
    tureen_out_pps: float
    v2_out_pps: float
    tureen_us: float | None
    v2_us: float | None
    tureen: str = "tureen"  # which Tureen row: `tureen` (native core) or `tureen-py`

    @property
    def out_ratio(self) -> float | None:
        """Tureen's held output ÷ v2's (> 1: Tureen forwards more on its core)."""
        return self.tureen_out_pps / self.v2_out_pps if self.v2_out_pps else None

    @property
    def cpu_ratio(self) -> float | None:
        """v2's CPU per output packet ÷ Tureen's (> 1: Tureen spends less per copy)."""
        return self.v2_us / self.tureen_us if self.v2_us and self.tureen_us else None

    # At the scenario's common input rate (run.py's same-rate trials), if both ran one.
    same_input_pps: float | None = None
    tureen_same_us: float | None = None
    v2_same_us: float | None = None
    same_held: bool = True

    def lines(self) -> list[str]:
        out = "-" if self.out_ratio is None else f"{self.out_ratio:.2f}x"
        cpu = "-" if self.cpu_ratio is None else f"{self.cpu_ratio:.2f}x"
        lines = [f"  {self.scenario}: {self.tureen} {self.tureen_out_pps:,.0f} vs mediasoup-v2 {self.v2_out_pps:,.0f} "
                 f"out pps held: {out}; {_us(self.tureen_us)} vs {_us(self.v2_us)} µs/out: {cpu} cpu "
                 "(v2's ÷ Tureen's; > 1: Tureen cheaper)"]
        if self.same_input_pps is not None and self.tureen_same_us and self.v2_same_us:
            lost = "" if self.same_held else "; a trial lost packets"
            lines.append(f"    at one rate both hold, {self.same_input_pps:,.0f} in/s: {self.tureen_same_us:.2f} vs "
                         f"{self.v2_same_us:.2f} µs/out: {self.v2_same_us / self.tureen_same_us:.2f}x cpu{lost}")
        return lines


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def versus(rows: list[Row]) -> list[Versus]:
    """Per scenario with a mediasoup-v2 row and a Tureen row (`tureen`, the native core; else
    `tureen-py`) that both held a rate: the comparison; other scenarios are left out."""
    found: list[Versus] = []
    for v2 in (r for r in rows if r.target == LABEL):
        mine = next((r for target in ("tureen", "tureen-py") for r in rows
                     if r.scenario == v2.scenario and r.target == target), None)
        if mine is None or mine.search.best is None or v2.search.best is None:
            continue
        item = Versus(v2.scenario, mine.search.best.out_pps, v2.search.best.out_pps,
                      mine.search.best.cpu_us_per_out, v2.search.best.cpu_us_per_out, tureen=mine.target)
        same = v2.extra.get("vs_tureen_same")  # run.py's trials of both at one rate
        if same:
            t_same, v_same = same["tureen"], same["mediasoup_v2"]
            item.same_input_pps = t_same["input_pps"]
            item.tureen_same_us, item.v2_same_us = t_same["cpu_us_per_out"], v_same["cpu_us_per_out"]
            item.same_held = t_same["held"] and v_same["held"]
        found.append(item)
    return found


def versus_text(rows: list[Row]) -> str:
    """The `vs mediasoup v2` block under the targets (empty when no v2 row ran)."""
    items = versus(rows)
    if not items:
        return ""
    lines = ["vs mediasoup v2 (same run, same load and sink; out pps and µs/out each at its own held rate):"]
    for item in items:
        lines += item.lines()
    return "\n".join(lines)
