"""Micro-benchmark: SRTP protect/unprotect through pylibsrtp's bytes API vs in place.

    .venv/bin/python scripts/bench_srtp.py [--count 100000] [--size 1200] [--reps 3]

Prints us/packet (best of --reps runs, CPU time of this process) for each profile:
- `Session.protect(bytes)`: pylibsrtp as aiortc uses it (copy in, slice out);
- `SrtpContext.protect_rtp`: our bytes wrapper over it;
- `protect_rtp_into`: in place on a reused bytearray (workers/transport/srtp.py);
- `copy + protect_rtp_into`: the fan-out case, plaintext copied into a scratch buffer first;
- the same two ways for unprotect (the in-place one includes the copy of the packet into
  the receive buffer, which recv_into does in the real path).
Pin it (`taskset -c 1`) for steadier figures: unpinned, the scheduler's moves between cores
show up as noise of the same size as the differences measured.
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from collections.abc import Callable

from pylibsrtp import Policy, Session
from tureen.workers.transport.srtp import PROFILES, SrtpContext

MAX_COUNT = 2_000_000
MAX_UNPROTECT = 50_000  # pre-protected packets kept in memory for the unprotect runs


def rtp_packet(seq: int, size: int) -> bytes:
    header = struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, 1000 + seq, 0x11223344)
    return header + bytes((seq + i) & 0xFF for i in range(size - len(header)))


def best_us(fn: Callable[[int], None], count: int, reps: int) -> float:
    """Best per-iteration CPU time over `reps` runs of `fn(count)`, in microseconds."""
    best = float("inf")
    for _ in range(reps):
        start = time.process_time_ns()
        fn(count)
        best = min(best, (time.process_time_ns() - start) / count / 1000)
    return best


def bench_profile(name: str, count: int, size: int, reps: int) -> list[tuple[str, float]]:
    profile = PROFILES[name]
    key = os.urandom(profile.key_salt_length)
    ctx = SrtpContext(name, key, key)
    policy = Policy(
        key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile.libsrtp_profile
    )
    policy.allow_repeat_tx = True
    session = Session(policy)
    plain = rtp_packet(1, size)
    src = bytearray(plain)
    scratch = bytearray(1500)
    scratch[:size] = plain

    def session_protect(n: int) -> None:
        protect = session.protect
        for _ in range(n):
            protect(plain)

    def wrapper_protect(n: int) -> None:
        protect = ctx.protect_rtp
        for _ in range(n):
            protect(plain)

    def into(n: int) -> None:
        protect = ctx.protect_rtp_into
        for _ in range(n):
            protect(scratch, size)

    def copy_into(n: int) -> None:
        protect = ctx.protect_rtp_into
        for _ in range(n):
            scratch[:size] = src
            protect(scratch, size)

    # Unprotect needs a new sequence number per packet (replay protection).
    m = min(count, MAX_UNPROTECT)
    sender = SrtpContext(name, key, key)
    protected = [sender.protect_rtp(rtp_packet(seq, size)) for seq in range(m)]

    def session_unprotect(n: int) -> None:
        rx = SrtpContext(name, key, key)._rx
        unprotect = rx.unprotect
        for packet in protected[:n]:
            unprotect(packet)

    def unprotect_into(n: int) -> None:
        rx = SrtpContext(name, key, key)
        unprotect = rx.unprotect_rtp_into
        recv = bytearray(1500)
        for packet in protected[:n]:
            recv[: len(packet)] = packet
            unprotect(recv, len(packet))

    return [
        ("Session.protect(bytes)", best_us(session_protect, count, reps)),
        ("SrtpContext.protect_rtp", best_us(wrapper_protect, count, reps)),
        ("protect_rtp_into", best_us(into, count, reps)),
        ("copy + protect_rtp_into", best_us(copy_into, count, reps)),
        ("Session.unprotect(bytes)", best_us(session_unprotect, m, reps)),
        ("copy + unprotect_rtp_into", best_us(unprotect_into, m, reps)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="packets per run")
    parser.add_argument("--size", type=int, default=1200, help="RTP packet size in bytes")
    parser.add_argument("--reps", type=int, default=3, help="runs per figure (best is kept)")
    args = parser.parse_args()
    count = max(1, min(args.count, MAX_COUNT))
    size = max(12, min(args.size, 1400))
    reps = max(1, min(args.reps, 10))

    print(f"{size}-byte RTP packets, {count} per run, best of {reps} (us/packet, CPU time)")
    for name in PROFILES:
        for label, us in bench_profile(name, count, size, reps):
            print(f"  {name:24} {label:28} {us:6.2f}")


if __name__ == "__main__":
    main()
