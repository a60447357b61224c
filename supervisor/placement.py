"""Which worker hosts a new peer's transports: the least loaded by measured figures.

The measured part comes from each worker's `worker.info` (its own CPU use and the number of
transports it hosts); between two reports, peers placed since the last one are counted too,
so a burst of joins spreads out instead of all landing on the worker that looked idle.
"""

from __future__ import annotations

from dataclasses import dataclass

# One transport weighs as much as this many CPU percent. Transports stand for load that
# has not shown up in the CPU figure yet (a peer that just joined sends nothing yet).
TRANSPORT_WEIGHT = 5.0


@dataclass
class WorkerLoad:
    index: int
    cpu_percent: float
    transports: int
    placed_since_report: int


def score(load: WorkerLoad) -> float:
    return load.cpu_percent + TRANSPORT_WEIGHT * (load.transports + 2 * load.placed_since_report)


def choose_worker(loads: list[WorkerLoad]) -> int:
    """Index of the least loaded worker; ties go to the lowest index. `loads` non-empty."""
    if not loads:
        raise ValueError("no worker to choose from")
    return min(loads, key=lambda load: (score(load), load.index)).index
