"""One bounded run of the C load tool (rtpload): paced RTP streams out, checked copies in.

The harness owns every socket (bound here, so their ports are known before the server is
told where to send); rtpload inherits them. While it runs, `on_measure` / `on_end` are called
when the measurement window opens and closes, so the caller can sample the forwarder's CPU.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from . import cpus

VIDEO_SIZE = 1200
AUDIO_SIZE = 160
SOCKET_BUFFER = 4 << 20  # sinks must never be the ones that drop (capped by rmem_max)


def udp_socket(rcvbuf: int = SOCKET_BUFFER, address: str = "127.0.0.1") -> socket.socket:
    """A UDP socket on 127.0.0.1 (loopback: the benchmark never sends elsewhere), or on a
    TEST-NET-2 `address` of the `hosts` scenario's network namespaces (benchmarks/hosts.py)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
    sock.bind((address, 0))
    sock.set_inheritable(True)
    return sock


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


@dataclass
class Stream:
    """One paced RTP stream from `source` to 127.0.0.1:`dst_port`."""

    source: socket.socket
    dst_port: int
    ssrc: int
    pt: int
    size: int
    rate_share: float = 1.0  # pps = trial rate * rate_share (audio runs slower than video)
    ts_step: int = 3000
    seq: int = 1  # next sequence number: carried over between runs so it never jumps back
    # SRTP: the master key || salt the sender protects with. `seq` is then also the SRTP
    # index of the next packet (the receiver's session started at ROC 0 with seq 1), so
    # each run's fresh sender session starts at ROC seq >> 16.
    key: bytes | None = None


@dataclass
class Expect:
    """One consumer: packets of stream `stream` arrive at `sink` with this SSRC and PT."""

    sink: socket.socket
    ssrc: int
    pt: int
    stream: int
    # SRTP: this consumer's key, and (once a run has seen its packets) its SRTP index minus
    # the producer's `Stream.seq` for the same packet: constant, as a forwarder rewrites
    # seq by a fixed offset. The next run's fresh sink session gets its ROC from it.
    key: bytes | None = None
    index_offset: int | None = None


@dataclass
class Topology:
    streams: list[Stream]
    expects: list[Expect]
    sink_ports: list[int] = field(default_factory=list)
    srtp: str | None = None  # 'gcm' or 'cm' (benchmarks/srtp.py): every stream and expect has a key
    srtp_lib: str | None = None  # pylibsrtp's extension (srtp.libsrtp_path())
    dest: str | None = None  # where the streams go, if not 127.0.0.1 (benchmarks/hosts.py)

    def __post_init__(self) -> None:
        if not self.sink_ports:
            self.sink_ports = sorted({port_of(e.sink) for e in self.expects})

    @property
    def outputs_per_rate(self) -> float:
        """Output packets per second for each packet/s of trial rate (N for a 1->N fan-out)."""
        return sum(self.streams[e.stream].rate_share for e in self.expects)


@dataclass
class Timing:
    warmup: float
    window: float
    drain: float = 0.15


_nonce = int.from_bytes(os.urandom(2), "big") << 12


def _config(topo: Topology, rate: float, timing: Timing, nonce: int) -> str:
    total_pps = sum(max(1, round(rate * s.rate_share)) for s in topo.streams)
    # Count bound: what the schedule sends, plus slack; the time bound is the schedule.
    max_packets = int(total_pps * (timing.warmup + timing.window) * 1.05) + 1000
    lines = [
        f"run {nonce} {int(timing.warmup * 1000)} {int(timing.window * 1000)} "
        f"{int(timing.drain * 1000)} {max_packets}"
    ]
    if topo.srtp:
        lines.append(f"srtp {topo.srtp_lib} {topo.srtp}")
    if topo.dest:
        lines.append(f"dest {topo.dest}")
    for s in topo.streams:
        pps = max(1, round(rate * s.rate_share))
        lines.append(
            f"stream {s.source.fileno()} {s.dst_port} {s.ssrc} {s.pt} {s.size} {pps} "
            f"{s.seq & 0xFFFF} {(s.seq * s.ts_step) & 0xFFFFFFFF} {s.ts_step}"
        )
        if topo.srtp:
            assert s.key is not None
            lines.append(f"skey {s.key.hex()} {s.seq >> 16}")
    for e in topo.expects:
        lines.append(f"expect {e.sink.fileno()} {e.ssrc} {e.pt} {e.stream}")
        if topo.srtp:
            assert e.key is not None
            base = -1 if e.index_offset is None else topo.streams[e.stream].seq + e.index_offset
            lines.append(f"ekey {e.key.hex()} {base}")
    return "\n".join(lines) + "\n"


async def run_load(
    rtpload: Path,
    topo: Topology,
    rate: float,
    timing: Timing,
    tools_cpu: int,
    on_measure: Callable[[], None],
    on_end: Callable[[], None],
) -> dict[str, Any]:
    """Run rtpload once at `rate` packets/s per stream (times its rate_share); return its
    report. Bounded: rtpload stops itself; we kill it if it overruns by 10 s."""
    global _nonce
    _nonce = (_nonce + 1) & 0x7FFFFFFF
    fds = sorted({s.source.fileno() for s in topo.streams} | {e.sink.fileno() for e in topo.expects})
    with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="rtpload-", delete=False) as conf:
        conf.write(_config(topo, rate, timing, _nonce))
    proc = await asyncio.create_subprocess_exec(
        str(rtpload), conf.name, pass_fds=fds,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    cpus.pin(proc.pid, tools_cpu)
    limit = timing.warmup + timing.window + timing.drain + 10.0
    report: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(limit):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                text = line.strip()
                if text == b"MEASURE":
                    on_measure()
                elif text == b"END":
                    on_end()
                elif text.startswith(b"{"):
                    report = orjson.loads(text)
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.unlink(conf.name)
    if report is None:
        err = b"" if proc.stderr is None else await proc.stderr.read()
        raise RuntimeError(f"rtpload gave no report (exit {proc.returncode}): {err.decode(errors='replace')}")
    if topo.srtp:
        # Each expect's index offset, from its newest packet: [SRTP index, per-run counter].
        for e, (index, counter) in zip(topo.expects, report["srtp_last"], strict=True):
            if index >= 0:
                e.index_offset = index - (topo.streams[e.stream].seq + counter)
    for stream, sent in zip(topo.streams, report["sent_per_stream"], strict=True):
        stream.seq += sent
    return report
