"""The scheduler slice a worker asks for: sched_setattr(2)'s `sched_runtime` for a normal task.

Since Linux 6.12 (EEVDF) a normal task may ask for a shorter slice than the default
(`sched_attr.sched_runtime`, clamped by the kernel to 0.1..100 ms). A task with a short slice
gets an earlier virtual deadline when it wakes, so it preempts the running task sooner instead
of waiting out that task's slice. Workers are woken by packets and run briefly: the
cross-worker pipe's destination worker is exactly such a task (docs/benchmarks.md, "The pipe
hop"). No privilege is needed; the policy (SCHED_OTHER, BATCH or IDLE) and the nice value are kept.

Only Linux has the call; on older kernels it is refused or ignored (reads back the default),
which changes nothing else: the worker runs as before.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

SCHED_OTHER, SCHED_BATCH, SCHED_IDLE = 0, 3, 5
FAIR_POLICIES = (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE)  # the ones EEVDF schedules, with a slice
# struct sched_attr as of Linux 4.13+ (SCHED_ATTR_SIZE_VER1): the kernel takes a smaller or
# equal size from user space, so this layout works on every kernel that has the call.
_NR = {  # (sched_setattr, sched_getattr) syscall numbers by machine
    "x86_64": (314, 315),
    "aarch64": (274, 275),
    "arm64": (274, 275),
}


class SchedAttr(ctypes.Structure):
    """struct sched_attr (include/uapi/linux/sched/types.h)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
        ("sched_util_min", ctypes.c_uint32),
        ("sched_util_max", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
log = logging.getLogger(__name__)


def _numbers() -> tuple[int, int]:
    numbers = _NR.get(platform.machine())
    if numbers is None:
        raise OSError(0, f"sched_setattr: syscall numbers unknown for machine {platform.machine()!r}")
    return numbers


def get_attr(tid: int = 0) -> SchedAttr:
    """sched_getattr(2) of thread `tid` (0: the calling thread); OSError if refused."""
    attr = SchedAttr()
    rc = _libc.syscall(ctypes.c_long(_numbers()[1]), ctypes.c_int(tid), ctypes.byref(attr),
                       ctypes.c_uint(ctypes.sizeof(attr)), ctypes.c_uint(0))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sched_getattr({tid}): {os.strerror(err)}")
    return attr


def slice_us(tid: int = 0) -> int | None:
    """The slice the scheduler gives thread `tid` now, in µs (on kernels before 6.12 the field
    reads 0 for normal tasks); None where it cannot be read or the task is real-time."""
    try:
        attr = get_attr(tid)
    except OSError:
        return None
    if attr.sched_policy not in FAIR_POLICIES:
        return None
    return attr.sched_runtime // 1000


def set_slice(us: int, tid: int = 0) -> None:
    """Ask for a slice of `us` µs (0: the kernel's default) for thread `tid` (0: the calling
    one; threads it starts afterwards inherit it). Keeps the policy (SCHED_OTHER, or BATCH
    or IDLE) and the nice value: sched_setattr sets both, so they are read first. OSError
    (errno from the kernel) where refused: not Linux, a real-time policy (an operator's
    chrt: left alone), a kernel that lacks sched_setattr, a seccomp filter."""
    attr = get_attr(tid)
    if attr.sched_policy not in FAIR_POLICIES:
        raise OSError(0, f"thread {tid or 'self'} runs real-time scheduling policy {attr.sched_policy}; left alone")
    new = SchedAttr(size=ctypes.sizeof(SchedAttr), sched_policy=attr.sched_policy, sched_nice=attr.sched_nice,
                    sched_runtime=us * 1000)
    rc = _libc.syscall(ctypes.c_long(_numbers()[0]), ctypes.c_int(tid), ctypes.byref(new), ctypes.c_uint(0))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sched_setattr({tid}, sched_runtime={us} µs): {os.strerror(err)}")


def apply(us: int, who: str) -> int | None:
    """At a worker's start, before it starts threads: ask for a slice of `us` µs (0: leave
    the kernel's default, ask nothing). A refusal is logged once at info and changes nothing
    else. Returns the slice in effect afterwards (slice_us()), None where unreadable."""
    if us:
        try:
            set_slice(us)
        except OSError as exc:
            log.info("%s: the kernel refused a %d µs scheduler slice (%s); running with its default "
                     "(worker_slice_us needs Linux >= 6.12 for an effect; 0 turns the request off)",
                     who, us, exc.strerror or exc)
    return slice_us()
