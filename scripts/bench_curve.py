"""What CURVE costs on the control API: a connection's handshake and a request's round trip.

    .venv/bin/python scripts/bench_curve.py [--requests 2000] [--connections 50]

Starts two real `tureen serve` (one worker each, loopback only): one without authentication,
one with CURVE (keys from `tureen keys generate`, the client's key in its clients folder).
Against each it measures, from one TureenClient, the median and 99th percentile of
`server.ping` round trips (sequential, --requests of them), and the median time from a new
connection to its first answer (--connections of them: TCP, the ZMTP handshake, with CURVE
the key exchange and the ZAP check). Bounded: at most 20,000 requests and 500 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import ServerProcess, running_server  # noqa: E402
from tureen.shared.client import TureenClient  # noqa: E402


async def measure(endpoint: str, requests: int, connections: int, **curve: str) -> tuple[list[float], list[float]]:
    rtts, handshakes = [], []
    async with TureenClient(endpoint, **curve) as client:
        await client.request("server.ping")
        for _ in range(requests):
            start = time.perf_counter()
            await client.request("server.ping")
            rtts.append(time.perf_counter() - start)
    for _ in range(connections):
        start = time.perf_counter()
        async with TureenClient(endpoint, **curve) as client:
            await client.request("server.ping")
            handshakes.append(time.perf_counter() - start)
    return rtts, handshakes


def report(name: str, rtts: list[float], handshakes: list[float]) -> None:
    rtts.sort()
    print(
        f"{name:>8}: ping round trip median {statistics.median(rtts) * 1e6:7.0f} us, "
        f"p99 {rtts[int(len(rtts) * 0.99) - 1] * 1e6:7.0f} us; "
        f"new connection to first answer median {statistics.median(handshakes) * 1e3:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    requests, connections = min(args.requests, 20_000), min(args.connections, 500)
    tmp = Path(tempfile.mkdtemp(prefix="tureen-bench-curve-"))
    try:
        keys, clients = tmp / "keys", tmp / "clients"
        clients.mkdir()
        for name in ("server", "app"):
            subprocess.run(
                [sys.executable, "-m", "tureen.supervisor.cli", "keys", "generate", "--out", str(keys), "--name", name],
                check=True, capture_output=True,
            )
        shutil.copy(keys / "app.key", clients)
        (tmp / "plain").mkdir()
        with running_server(tmp / "plain", workers=1) as plain:
            report("no auth", *asyncio.run(measure(plain.endpoint, requests, connections)))
        (tmp / "curve").mkdir()
        server = ServerProcess(
            tmp / "curve", workers=1,
            extra=["--curve-server-cert", str(keys / "server.key_secret"), "--curve-clients", str(clients)],
        )
        try:
            curve = {"curve_cert": str(keys / "app.key_secret"), "curve_server_key": str(keys / "server.key")}

            async def ready() -> None:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        async with TureenClient(server.endpoint, timeout=1.0, **curve) as probe:
                            await probe.request("server.ping")
                            return
                    except Exception:
                        if time.monotonic() > deadline or server.process.poll() is not None:
                            raise RuntimeError(f"CURVE server not ready:\n{server.log()}") from None

            asyncio.run(ready())
            report("CURVE", *asyncio.run(measure(server.endpoint, requests, connections, **curve)))
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
