"""The C baseline forwarder (ctools/cforward.c) set up for the same fan-out as Tureen.

Same input (one stream from the load tool), same number of consumers, same per-consumer
rewrite (SSRC, PT, sequence and timestamp offsets), same sinks and checks; pinned to the same
core a Tureen worker gets. Its figures are the denominator of every ratio in the table.

With `srtp` ('gcm' or 'cm') it is the C+SRTP baseline: the load tool protects the input with
a random key, cforward unprotects it once and protects each copy with that consumer's own
libsrtp session (the libsrtp inside pylibsrtp's wheel, as Tureen), the sinks unprotect and
check. No DTLS: the keys are made up here; the handshake is not what is being compared.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
from pathlib import Path

import orjson

from . import cpus
from .load import VIDEO_SIZE, Expect, Stream, Topology, port_of, udp_socket
from .scenarios import VIDEO_PT, Built
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
        with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="cforward-", delete=False) as conf:
            conf.write("\n".join(lines) + "\n")
        self._conf = Path(conf.name)
        self.process = subprocess.Popen(
            [str(binary), str(self._conf)], pass_fds=[self.listen.fileno()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        cpus.pin(self.process.pid, forwarder_cpu)
        stream = Stream(source, port_of(self.listen), 0x1000_0001, VIDEO_PT, VIDEO_SIZE, key=in_key)
        self.built = Built(
            topology=Topology([stream], expects, srtp=srtp, srtp_lib=lib),
            input_ports=[port_of(self.listen)],
            consumers=n,
            sockets=[self.listen, source, *sinks],
        )

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
