"""Which worker hosts a new peer's transports: the least loaded by measured figures, over
the workers of every host, kept on a host that already serves the room until it is busy.

The measured part comes from each worker's `worker.info` (its own CPU use and the number of
transports it hosts); between two reports, peers placed since the last one are counted too,
so a burst of joins spreads out instead of all landing on the worker that looked idle.

Hosts (docs/operations.md, "Placement"): the supervisor's own machine is a host like the
remote ones (named by config `host_name`). A room whose peers are on some hosts stays on
them while one of them is not busy, because each host that serves a room costs one more
copy of every producer's stream between hosts (supervisor/pipes.py). A host is busy when its
best worker's measured CPU use is at or above `host_busy_cpu_percent`: then even its idlest
worker is loaded, and the room is better served by a new host. Draining and lost hosts and
stopping workers are left out by the caller (WorkerPool.pick): this module only chooses,
and resolves an app's pin (`peer.place`, `place_target`) against the hosts' states.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from tureen.shared.errors import UNAVAILABLE, ProtocolError, bad_request, not_found

# One transport weighs as much as this many CPU percent. Transports stand for load that
# has not shown up in the CPU figure yet (a peer that just joined sends nothing yet).
TRANSPORT_WEIGHT = 5.0
# config `host_busy_cpu_percent`'s default: a host whose idlest worker uses this much CPU.
HOST_BUSY_CPU_PERCENT = 70.0


@dataclass
class WorkerLoad:
    """One candidate worker: its index, host and last measured figures."""

    index: int
    cpu_percent: float
    transports: int
    placed_since_report: int
    host: str = ""


def score(load: WorkerLoad) -> float:
    """How loaded a worker is, in CPU percent (transports weighed by TRANSPORT_WEIGHT)."""
    return load.cpu_percent + TRANSPORT_WEIGHT * (load.transports + 2 * load.placed_since_report)


def busy_hosts(loads: Collection[WorkerLoad], busy_cpu_percent: float) -> set[str]:
    """The hosts whose least busy worker measures `busy_cpu_percent` or more CPU."""
    best: dict[str, float] = {}
    for load in loads:
        best[load.host] = min(best.get(load.host, load.cpu_percent), load.cpu_percent)
    return {host for host, cpu in best.items() if cpu >= busy_cpu_percent}


def choose_worker(
    loads: Collection[WorkerLoad],
    room_hosts: Collection[str] = (),
    busy_cpu_percent: float = HOST_BUSY_CPU_PERCENT,
) -> int:
    """Index of the least loaded worker; ties go to the lowest index. `loads`: the workers
    that may take a peer (non-empty). `room_hosts`: the hosts that already serve the room:
    the choice stays among their workers unless every one of those hosts is busy."""
    if not loads:
        raise ValueError("no worker to choose from")
    serving = set(room_hosts) - busy_hosts(loads, busy_cpu_percent)
    near = [load for load in loads if load.host in serving]
    return min(near or loads, key=lambda load: (score(load), load.index)).index


# A host's state as hosts.list shows it.
UP, DRAINING, LOST = "up", "draining", "lost"


def place_target(
    states: Mapping[str, str],
    loads: Collection[WorkerLoad],
    host: str | None,
    worker: int | None,
    busy_cpu_percent: float = HOST_BUSY_CPU_PERCENT,
) -> int:
    """The worker `peer.place {host?, worker?}` pins a peer to; ProtocolError for a refusal.

    `states`: every known host's state (UP, DRAINING, LOST); `loads`: the running workers
    (not stopping) of every host, draining ones included. A host alone: its least loaded
    worker. A worker alone: that one. Both: the worker, which must be on that host."""
    if host is None and worker is None:
        raise bad_request("peer.place needs 'host' (a host's name, as `tureen hosts` lists them) or 'worker' (an index, as server.info lists them)")
    if host is not None:
        state = states.get(host)
        if state is None:
            known = ", ".join(sorted(states)) or "none"
            raise not_found(f"no host named {host!r}; the hosts are: {known} (`tureen hosts`)")
        if state == LOST:
            raise ProtocolError(UNAVAILABLE, f"host {host!r} is lost (its link is down): place the peer on another host, or wait until it registers again")
        if state == DRAINING:
            raise ProtocolError(UNAVAILABLE, f"host {host!r} is draining: it takes no new peers (`tureen host undrain {host}` ends that); place the peer on another host")
    if worker is not None:
        load = next((load for load in loads if load.index == worker), None)
        if load is None:
            raise ProtocolError(UNAVAILABLE, f"worker {worker} is not running; server.info lists the workers and which are alive")
        if host is not None and load.host != host:
            raise bad_request(f"worker {worker} is on host {load.host!r}, not {host!r}: give the host or the worker, or both of the same host")
        if states.get(load.host) == DRAINING:
            raise ProtocolError(UNAVAILABLE, f"worker {worker} is on host {load.host!r}, which is draining: it takes no new peers (`tureen host undrain {load.host}` ends that)")
        return worker
    on_host = [load for load in loads if load.host == host]
    if not on_host:
        raise ProtocolError(UNAVAILABLE, f"host {host!r} has no running worker now; retry, or place the peer on another host")
    return choose_worker(on_host, (), busy_cpu_percent)
