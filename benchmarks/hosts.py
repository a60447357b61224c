"""The `hosts` scenario (issue 15): one producer on host A, N consumers on hosts B and C.

The hosts are network namespaces on this machine, made as the tests make them
(tests/netns.py, tests/cluster.py): a supervisor in one, `tureen host`s A, B and C (one
worker each) in three more, and the load tool's sockets in a clients' namespace (created
there with setns(2), then handed to rtpload like every other scenario's sockets; the streams
go to host A's TEST-NET-2 address, never to a real network). Without root or network
namespaces the scenario is skipped with the reason printed.

Two layouts run back to back at the same fixed input rate, one video stream in:
- `one host`: the producer and its N consumers on host A's worker (the reference);
- `hosts`: the producer on A, consumers alternately on B and C (peer.place), so the stream
  crosses A's link once per host and fans out on B and C.
For each: output packets/s, loss, latency (p50/p99, the sink's kernel receive timestamps as
in the other scenarios), and the bytes host A's link (its veth, eth0 in A's namespace) sent
and received during the run. The `hosts` layout's added latency per host hop is its latency
minus the reference's; A's link should carry about two streams' worth (one per far host),
not N: printed as A's sent bytes over its received bytes (the one input stream).

    python -m benchmarks.hosts [--consumers 100] [--rate 100] [--window 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tureen.shared.client import TureenClient

from . import cpus
from .ctools import build_tools
from .load import VIDEO_SIZE, Expect, Stream, Timing, Topology, port_of, udp_socket
from .scenarios import VIDEO_PT, Built, RoomDriver, _consumer_keys, _gather_chunked
from .search import Context, Trial, run_trial

TESTS = Path(__file__).resolve().parent.parent / "tests"
CLONE_NEWNET = 0x4000_0000
HOSTS = ("A", "B", "C")
DEFAULT_RATE = 100.0  # input packets/s: N x this out (10,000 packets/s for N=100)
MAX_CONSUMERS, MAX_RATE = 400, 2000.0  # every run's load is bounded


def _tests_path() -> None:
    """The namespace helpers live with the tests (one copy for both)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))


def unavailable() -> str | None:
    """Why the scenario cannot run here (no root, no `ip`, no namespaces), or None."""
    _tests_path()
    from netns import netns_unavailable

    return netns_unavailable()


@contextlib.contextmanager
def in_netns(netns: str) -> Iterator[None]:
    """Run the body with this thread in network namespace `netns` (sockets made there stay
    there); back in the thread's own namespace after."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as own, open(f"/run/netns/{netns}") as target:
        if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
        try:
            yield
        finally:
            if libc.setns(own.fileno(), CLONE_NEWNET) != 0:  # never leave the harness stranded
                raise OSError(ctypes.get_errno(), "setns back to the harness's namespace failed")


def link_bytes(netns: str) -> tuple[int, int]:
    """(received, sent) bytes of eth0 in `netns` (its veth to the bridge)."""
    out = subprocess.run(["ip", "-n", netns, "-j", "-s", "link", "show", "eth0"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["rx"]["bytes"], stats["tx"]["bytes"]


@dataclass
class Layout:
    """One measured layout: its trial and host A's link bytes over the run."""

    name: str
    trial: Trial
    a_rx: int
    a_tx: int
    placed: dict[str, int] = field(default_factory=dict)  # consumers per host

    @property
    def streams_on_link(self) -> float:
        """A's sent bytes in units of its received ones (the one input stream)."""
        return self.a_tx / self.a_rx if self.a_rx else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "trial": self.trial.brief(), "a_rx_bytes": self.a_rx, "a_tx_bytes": self.a_tx,
                "a_link_streams": self.streams_on_link, "consumers_per_host": self.placed}


async def build(client: TureenClient, room_id: str, n: int, address: str, clients_ns: str,
                producer_worker: int, consumer_workers: list[tuple[str, int]], dest: str
                ) -> tuple[Built, dict[str, int]]:
    """The fan-out of scenarios.fanout, with its sockets in `clients_ns` on `address`, the
    producer pinned to `producer_worker` (whose media address is `dest`) and consumer i to
    consumer_workers[i % len]."""
    room = RoomDriver(client, room_id)
    room.ip = address
    await room.create()
    with in_netns(clients_ns):
        source = udp_socket(address=address)
        sinks = [udp_socket(address=address) for _ in range(n)]
    ssrc = 0x3000_0001
    await room.join("src")
    await client.place_peer(room_id, "src", producer_worker)
    send_tid, server_port = await room.plain_transport("src", "send", port_of(source))
    await room.produce("src", send_tid, "video", ssrc)
    names = [f"c{i}" for i in range(n)]
    joined = await _gather_chunked([room.join(name, spy=True) for name in names])
    placed: dict[str, int] = {}
    places = []
    for i, name in enumerate(names):
        host, worker = consumer_workers[i % len(consumer_workers)]
        placed[host] = placed.get(host, 0) + 1
        places.append(client.place_peer(room_id, name, worker))
    await _gather_chunked(places)
    tids = await _gather_chunked([room.plain_transport(name, "recv", port_of(sink))
                                  for name, sink in zip(names, sinks, strict=True)])
    expects, enables = [], []
    for name, answer, sink, (tid, _) in zip(names, joined, sinks, tids, strict=True):
        cid, cssrc, cpt = _consumer_keys(answer["peers"][0]["consumers"][0])
        enables.append(room.enable(name, cid, tid))
        expects.append(Expect(sink, cssrc, cpt, 0))
    await _gather_chunked(enables)
    stream = Stream(source, server_port, ssrc, VIDEO_PT, VIDEO_SIZE, ts_step=3000)
    topology = Topology([stream], expects, dest=dest)
    return Built(topology=topology, input_ports=[server_port], consumers=n, sockets=[source, *sinks]), placed


async def measure(ctx: Context, client: TureenClient, cluster: Any, name: str, room_id: str, n: int,
                  rate: float, workers: dict[str, int], consumers_on: tuple[str, ...]) -> Layout:
    """Build one layout, run one trial at `rate` with A's link counters around it, close it."""
    info = await client.server_info()
    pids = [w["pid"] for w in info["workers"] if w.get("host") in HOSTS]
    built, placed = await build(client, room_id, n, cluster.net.hosts["clients"].address,
                                cluster.net.hosts["clients"].netns, workers["A"],
                                [(h, workers[h]) for h in consumers_on], cluster.net.hosts["A"].address)
    try:
        await asyncio.sleep(0.5)  # the setup's control traffic settles; consumers start
        a_ns = cluster.net.hosts["A"].netns
        rx0, tx0 = link_bytes(a_ns)
        trial = await run_trial(ctx, built.topology, built.input_ports, pids, rate)
        rx1, tx1 = link_bytes(a_ns)
    finally:
        with contextlib.suppress(Exception):
            await client.close_room(room_id)
        built.close_sockets()
    return Layout(name, trial, rx1 - rx0, tx1 - tx0, placed)


async def run_hosts(rtpload: Path, tools_cpu: int, timing: Timing, n: int = 100,
                    rate: float = DEFAULT_RATE) -> dict[str, Any]:
    """Both layouts on a fresh cluster of namespaces; {"skipped": why} when it cannot run."""
    why = unavailable()
    if why is not None:
        return {"skipped": why}
    from cluster import Cluster, host_entry, until
    from netns import Network

    ctx = Context(rtpload, tools_cpu, timing)
    with tempfile.TemporaryDirectory(prefix="tureen-hosts-") as tmp, Network() as net:
        cluster = Cluster(net, Path(tmp))
        try:
            for host in HOSTS:
                cluster.start_host(host)
            net.add_host("clients")
            async with cluster.client() as client:
                client.timeout = 30.0
                workers: dict[str, int] = {}
                for host in HOSTS:
                    entry = await until(lambda host=host: host_entry(client, host), f"host {host} to register", 60)
                    [workers[host]] = entry["workers"]
                one = await measure(ctx, client, cluster, "one host", "hosts-ref", n, rate, workers, ("A",))
                print(f"hosts N={n}: {line(one)}", flush=True)
                spread = await measure(ctx, client, cluster, "hosts", "hosts", n, rate, workers, ("B", "C"))
                print(f"hosts N={n}: {line(spread)}", flush=True)
        except BaseException:
            print(cluster.dump_logs(), file=sys.stderr)
            raise
        finally:
            if cluster.supervisor.poll() is None:
                cluster.supervisor.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(cluster.supervisor.wait, 20)
    hop = {
        "p50_us": spread.trial.latency_p50_us - one.trial.latency_p50_us,
        "p99_us": spread.trial.latency_p99_us - one.trial.latency_p99_us,
    }
    return {"consumers": n, "rate": rate, "layouts": [one.to_json(), spread.to_json()], "added_per_hop": hop,
            "_layouts": [one, spread]}


def line(layout: Layout) -> str:
    """One layout's row of the report."""
    t = layout.trial
    where = "+".join(f"{count} on {host}" for host, count in sorted(layout.placed.items()))
    return (f"{layout.name + ' (' + where + ')':<22} {t.out_pps:>9,.0f} {100 * t.loss:>7.3f}% "
            f"{t.latency_p50_us:>8.0f} {t.latency_p99_us:>8.0f} {layout.a_rx / 1e3:>13,.1f} "
            f"{layout.a_tx / 1e3:>13,.1f} {layout.streams_on_link:>7.2f}")


def text(result: dict[str, Any]) -> str:
    """The scenario's lines for the report."""
    if "skipped" in result:
        return f"hosts: skipped ({result['skipped']})"
    n, rate = result["consumers"], result["rate"]
    lines = [f"hosts N={n}: one {VIDEO_SIZE} B video stream in at {rate:.0f} packets/s; producer on host A",
             f"  {'layout':<22} {'out pps':>9} {'loss':>8} {'p50 µs':>8} {'p99 µs':>8} "
             f"{'A link rx kB':>13} {'A link tx kB':>13} {'tx/rx':>7}"]
    lines += [f"  {line(layout)}" for layout in result["_layouts"]]
    hop = result["added_per_hop"]
    one, spread = result["_layouts"]
    if one.trial.loss > 0.001 or spread.trial.loss > 0.001:
        # An overloaded layout's latency is its queue, not the hop: no difference to print.
        lines.append("  added latency per host hop: not comparable at this rate (a layout lost packets: "
                     "its latency is a queue); lower --rate")
    else:
        lines.append(f"  added latency per host hop: p50 {hop['p50_us']:+.0f} µs, p99 {hop['p99_us']:+.0f} µs")
    lines.append(f"  host A's link sent {spread.streams_on_link:.2f} streams' worth for {n} consumers on B and C "
                 f"(about 2 wanted: one per far host)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hosts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--consumers", type=int, default=100, help="consumers split over hosts B and C")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="input packets/s of the one stream")
    parser.add_argument("--window", type=float, default=2.0, help="measurement window, seconds")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args(argv)
    if not 1 <= args.consumers <= MAX_CONSUMERS or not 1 <= args.rate <= MAX_RATE:
        raise SystemExit(f"--consumers must be 1..{MAX_CONSUMERS} and --rate 1..{MAX_RATE:.0f} packets/s "
                         "(the load is bounded)")
    _, tools_cpu = cpus.layout()
    tools = build_tools(args.out / "bin")
    started = time.time()
    result = asyncio.run(run_hosts(tools.rtpload, tools_cpu, Timing(0.5, args.window, 0.2), args.consumers,
                                   args.rate))
    print(text(result))
    print(f"{time.time() - started:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
