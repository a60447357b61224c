"""Socket-level drop counters from /proc/net/udp, to say where a lost packet was lost.

A packet the forwarder could not keep up with is dropped on its input socket; one the sink
could not keep up with is dropped on the sink's socket. Both show in the `drops` column.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

PROC_UDP = Path("/proc/net/udp")


def udp_drops(ports: Iterable[int]) -> int:
    """Sum of the drops of every IPv4 UDP socket bound to one of `ports` (a port may have
    two sockets: Tureen's open socket and its connected twin)."""
    wanted = set(ports)
    if not wanted or not PROC_UDP.exists():
        return 0
    total = 0
    for line in PROC_UDP.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        port = int(fields[1].rsplit(":", 1)[1], 16)
        if port in wanted:
            total += int(fields[-1])
    return total
