"""Placement across hosts (supervisor/placement.py, WorkerPool.pick): the least loaded
worker of every host, kept on the hosts that serve a room until they are busy, never on a
draining host or a stopping worker; and peer.place's resolution of a host or a worker."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq.asyncio
from tureen.shared.config import Config
from tureen.shared.errors import ProtocolError
from tureen.supervisor.hosts import HostSession, RemoteWorkerLink
from tureen.supervisor.placement import (
    DRAINING,
    LOST,
    UP,
    WorkerLoad,
    busy_hosts,
    choose_worker,
    place_target,
)
from tureen.supervisor.worker_pool import WorkerPool


def load(index: int, host: str, cpu: float = 0.0, transports: int = 0, placed: int = 0) -> WorkerLoad:
    return WorkerLoad(index=index, cpu_percent=cpu, transports=transports, placed_since_report=placed, host=host)


def test_the_least_loaded_worker_of_all_hosts_without_a_room_host() -> None:
    loads = [load(0, "local", cpu=30), load(1, "h1", cpu=10), load(2, "h2", cpu=20)]
    assert choose_worker(loads) == 1
    # Transports and peers placed since the last report count as load too.
    loads = [load(0, "local", transports=3), load(1, "h1", placed=2)]
    assert choose_worker(loads) == 0
    # Ties: the lowest index.
    assert choose_worker([load(3, "h2"), load(1, "h1")]) == 1


def test_a_room_stays_on_its_hosts_until_they_are_busy() -> None:
    loads = [load(0, "local", cpu=5), load(1, "h1", cpu=40), load(2, "h1", cpu=60)]
    # h1 serves the room: its idlest worker (40 %) is below the threshold, so the room stays
    # there although the supervisor's worker is idler.
    assert choose_worker(loads, {"h1"}, busy_cpu_percent=70) == 1
    # h1's idlest worker at the threshold: busy; the least loaded of all hosts.
    busier = [load(0, "local", cpu=5), load(1, "h1", cpu=70), load(2, "h1", cpu=90)]
    assert busy_hosts(busier, 70) == {"h1"}
    assert choose_worker(busier, {"h1"}, busy_cpu_percent=70) == 0
    # Two serving hosts, one busy: the other one, not the idler third.
    three = [load(0, "local", cpu=1), load(1, "h1", cpu=95), load(2, "h2", cpu=50)]
    assert choose_worker(three, {"h1", "h2"}, busy_cpu_percent=70) == 2
    # Every host busy: still the least loaded of all (the room's host may be it).
    assert choose_worker([load(0, "local", cpu=99), load(1, "h1", cpu=80)], {"local"}, busy_cpu_percent=70) == 1
    # A serving host with no candidate left (drained, lost: not in `loads`) is no preference.
    assert choose_worker([load(0, "local", cpu=50), load(2, "h2", cpu=10)], {"h1"}) == 2


def test_no_candidates_is_an_error() -> None:
    with pytest.raises(ValueError):
        choose_worker([])


STATES = {"local": UP, "h1": UP, "h2": DRAINING, "h3": LOST}
LOADS = [load(0, "local", cpu=50), load(1, "h1", cpu=30), load(2, "h1", cpu=10), load(3, "h2")]


@pytest.mark.parametrize(
    ("host", "worker", "code", "words"),
    [
        (None, None, "bad_request", "needs 'host'"),
        ("nowhere", None, "not_found", "no host named 'nowhere'; the hosts are: h1, h2, h3, local"),
        ("h2", None, "unavailable", "is draining"),
        ("h3", None, "unavailable", "is lost"),
        (None, 3, "unavailable", "which is draining"),
        (None, 9, "unavailable", "worker 9 is not running"),
        ("h1", 0, "bad_request", "worker 0 is on host 'local', not 'h1'"),
        ("h2", 3, "unavailable", "is draining"),
    ],
)
def test_place_target_refusals(host: str | None, worker: int | None, code: str, words: str) -> None:
    with pytest.raises(ProtocolError) as err:
        place_target(STATES, LOADS, host, worker)
    assert err.value.code == code and words in err.value.message, err.value


def test_place_target_by_host_worker_or_both() -> None:
    assert place_target(STATES, LOADS, "h1", None) == 2  # h1's least loaded
    assert place_target(STATES, LOADS, None, 1) == 1
    assert place_target(STATES, LOADS, "h1", 1) == 1
    assert place_target(STATES, LOADS, "local", None) == 0
    with pytest.raises(ProtocolError) as err:  # up, but no running worker now
        place_target({**STATES, "h4": UP}, LOADS, "h4", None)
    assert err.value.code == "unavailable" and "no running worker" in err.value.message


# -- WorkerPool.pick over real links (remote ones: no process, no network) --------------------


def make_pool(tmp: Path) -> WorkerPool:
    async def on_death(index: int) -> None:
        return None

    return WorkerPool(Config(host_busy_cpu_percent=70.0), tmp, zmq.asyncio.Context.instance(), lambda i, e: None, on_death)


def add(pool: WorkerPool, host: str, cpu: float = 0.0) -> RemoteWorkerLink:
    session = HostSession(name=host, identity=host.encode(), send=lambda identity, message: None)
    link = pool.add_remote(lambda index: RemoteWorkerLink(index, pool, session, len(session.links), None, None))
    assert isinstance(link, RemoteWorkerLink)
    session.links[link.local] = link
    link.info = {"cpuPercent": cpu, "transports": 0}
    return link


async def test_pick_leaves_draining_hosts_and_stopping_workers_out(tmp_path: Path) -> None:
    pool = make_pool(tmp_path)
    a = add(pool, "h1", cpu=5)
    b = add(pool, "h2", cpu=40)
    c = add(pool, "h3", cpu=60)
    try:
        assert pool.pick() == a.index
        pool.drained.add("h1")
        # h1 is the room's host, but draining: its workers are never chosen.
        assert pool.pick(near=[a.index]) == b.index
        b.stopping = True
        assert pool.pick(near=[a.index]) == c.index
        # The room's host keeps the room while not busy.
        b.stopping = False
        b.placed_since_report = 0
        assert pool.pick(near=[c.index]) == c.index
        c.info["cpuPercent"] = 75.0  # h3 busy now
        assert pool.pick(near=[c.index]) == b.index
        pool.drained.update({"h2", "h3"})
        with pytest.raises(ProtocolError) as err:
            pool.pick()
        assert err.value.code == "unavailable" and "every host with a running worker is draining" in err.value.message
        assert "tureen host undrain" in err.value.message
    finally:
        await pool.stop()


async def test_pick_counts_placements_until_the_next_report(tmp_path: Path) -> None:
    pool = make_pool(tmp_path)
    a = add(pool, "h1")
    b = add(pool, "h2")
    try:
        # A burst of joins alternates instead of piling onto the one that looked idle.
        picks = [pool.pick() for _ in range(4)]
        assert sorted(picks) == sorted([a.index, b.index] * 2)
        assert pool.host_load("h1")["workers"] == [a.index]
    finally:
        await pool.stop()


