"""The C baseline forwarder (ctools/cforward.c) set up for the same fan-out as Tureen.

Same input (one stream from the load tool), same number of consumers, same per-consumer
rewrite (SSRC, PT, sequence and timestamp offsets), same sinks and checks; pinned to the same
core a Tureen worker gets. Its figures are the denominator of every ratio in the table.

With `srtp` ('gcm' or 'cm') it is the C+SRTP baseline: the load tool protects the input with
a random key, cforward unprotects it once and protects each copy with that consumer's own
libsrtp session (the libsrtp inside pylibsrtp's wheel, as Tureen), the sinks unprotect and
check. No DTLS: the keys are made up here; the handshake is not what is being compared.

`CForwarder.meeting(p)` is the baseline of the meeting scenario: the same P peers, each
sending audio and video (the same streams, rates and sizes as scenarios.meeting) to its own
input socket of one cforward, each receiving the 2(P-1) other peers' streams at its own sink
with the same per-consumer header rewrite.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
from pathlib import Path

import orjson

from . import cpus
from .load import AUDIO_SIZE, VIDEO_SIZE, Expect, Stream, Topology, port_of, udp_socket
from .scenarios import AUDIO_PT, AUDIO_SHARE, VIDEO_PT, Built
from .srtp import libsrtp_path, random_key

CONSUMER_PT = 101  # what the room would give VP8; any value the sink is told works


class CForwarder:
    """One cforward process serving one fan-out; stopped by SIGTERM (by pid) at close."""

    def __init__(self, binary: Path, n: int, forwarder_cpu: int, max_seconds: int = 900,
                 srtp: str | None = None) -> None:
        self.listen = udp_socket(rcvbuf=1 << 20)  # Tureen's input sockets have 1 MiB too
        source = udp_socket()
        sinks = [udp_socket() for _ in range(n)]
        keys = [random_key(srtp) if srtp else None for _ in range(n)]
        expects = [Expect(sink, 0x5EED_0000 + i, CONSUMER_PT, 0, key=keys[i]) for i, sink in enumerate(sinks)]
        lines = [f"run {self.listen.fileno()} {max_seconds}"]
        lib = str(libsrtp_path()) if srtp else None
        in_key = random_key(srtp) if srtp else None
        if srtp:
            assert in_key is not None
            lines += [f"srtp {lib} {srtp}", f"inkey {in_key.hex()}"]
        for i, sink in enumerate(sinks):
            lines.append(f"consumer {port_of(sink)} {0x5EED_0000 + i} {CONSUMER_PT} {(i * 7919) & 0xFFFF} {i * 104729}")
            if srtp:
                lines.append(f"ckey {keys[i].hex()}")  # type: ignore[union-attr]
        stream = Stream(source, port_of(self.listen), 0x1000_0001, VIDEO_PT, VIDEO_SIZE, key=in_key)
        self._start(binary, lines, [self.listen], forwarder_cpu, Built(
            topology=Topology([stream], expects, srtp=srtp, srtp_lib=lib),
            input_ports=[port_of(self.listen)],
            consumers=n,
            sockets=[self.listen, source, *sinks],
        ))

    def _start(self, binary: Path, lines: list[str], listens: list, forwarder_cpu: int, built: Built) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="cforward-", delete=False) as conf:
            conf.write("\n".join(lines) + "\n")
        self._conf = Path(conf.name)
        self.process = subprocess.Popen(
            [str(binary), str(self._conf)], pass_fds=[s.fileno() for s in listens],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        cpus.pin(self.process.pid, forwarder_cpu)
        self.built = built

    @classmethod
    def meeting(cls, binary: Path, p: int, forwarder_cpu: int, max_seconds: int = 900) -> CForwarder:
        """The meeting baseline: p peers, one input socket each (audio + video from that
        peer's source), one sink each getting the other peers' 2(p-1) streams."""
        self = cls.__new__(cls)
        listens = [udp_socket(rcvbuf=1 << 20) for _ in range(p)]
        sources = [udp_socket() for _ in range(p)]
        sinks = [udp_socket() for _ in range(p)]
        streams: list[Stream] = []
        for i in range(p):  # the same SSRCs, sizes and rates as scenarios.meeting's
            streams.append(Stream(sources[i], port_of(listens[i]), 0x2000_0000 + 2 * i, AUDIO_PT, AUDIO_SIZE,
                                  rate_share=AUDIO_SHARE, ts_step=960))
            streams.append(Stream(sources[i], port_of(listens[i]), 0x2000_0001 + 2 * i, VIDEO_PT, VIDEO_SIZE,
                                  ts_step=3000))
        lines = [f"run {listens[0].fileno()} {max_seconds}", *(f"listen {s.fileno()}" for s in listens[1:])]
        expects: list[Expect] = []
        for j in range(p):
            for index, stream in enumerate(streams):
                if index // 2 == j:
                    continue  # nobody receives their own streams
                k = len(expects)
                ssrc, pt = 0x5EED_0000 + k, CONSUMER_PT - 1 + index % 2  # audio 100, video 101
                lines.append(f"consumer {port_of(sinks[j])} {ssrc} {pt} {(k * 7919) & 0xFFFF} {k * 104729}")
                lines.append(f"route {stream.ssrc}")
                expects.append(Expect(sinks[j], ssrc, pt, index))
        self.listen = listens[0]
        self._start(binary, lines, listens, forwarder_cpu, Built(
            topology=Topology(streams, expects),
            input_ports=[port_of(s) for s in listens],
            consumers=len(expects),
            sockets=[*listens, *sources, *sinks],
        ))
        return self

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    def close(self) -> dict:
        """Stop it and return its own counters."""
        counters: dict = {}
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                out, _ = self.process.communicate(timeout=5)
                with contextlib.suppress(ValueError):
                    counters = orjson.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.built.close_sockets()
        self._conf.unlink(missing_ok=True)
        return counters
