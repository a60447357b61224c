"""The worker's scheduler slice (workers/sched_slice.py): sched_setattr's sched_runtime, read
back with sched_getattr, the nice value kept, and a kernel that refuses changing nothing.

Each change runs in a thread of its own: a slice is a per-thread attribute, so the test
process's main thread keeps its scheduling."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from tureen.workers import sched_slice

DEFAULT = sched_slice.slice_us()
needs_slices = pytest.mark.skipif(
    not DEFAULT, reason="sched_getattr reports no slice for normal tasks here (Linux < 6.12)"
)


def in_thread(fn: Callable[[], Any]) -> Any:
    """fn() in a fresh thread (bounded wait); its result, or its exception raised here."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the caller
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the thread did not finish within 10 s"
    if "error" in out:
        raise out["error"]
    return out["value"]


@needs_slices
def test_a_slice_asked_for_is_read_back_and_threads_started_later_inherit_it() -> None:
    def ask() -> tuple[int | None, int | None, int | None]:
        sched_slice.set_slice(300)
        child = in_thread(sched_slice.slice_us)
        return sched_slice.slice_us(), child, sched_slice.apply(0, "test")

    mine, child, untouched = in_thread(ask)
    assert (mine, child, untouched) == (300, 300, 300)  # apply(0) asks nothing, reports


@needs_slices
def test_the_nice_value_is_kept_and_0_returns_to_the_default() -> None:
    def ask() -> tuple[int, int | None, int, bool]:
        sched_slice.set_slice(0)
        kernel_default = sched_slice.slice_us()  # this process may have asked for one before
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 7)  # this thread only
        sched_slice.set_slice(2000)
        asked = (os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), sched_slice.slice_us())
        sched_slice.set_slice(0)
        back = sched_slice.slice_us() == kernel_default
        return *asked, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), back

    assert in_thread(ask) == (7, 2000, 7, True)


@needs_slices
def test_the_kernel_clamps_to_its_range() -> None:
    def ask() -> list[int | None]:
        out = []
        for us in (1, 10**7):
            sched_slice.set_slice(us)
            out.append(sched_slice.slice_us())
        return out

    assert in_thread(ask) == [100, 100_000]


def test_a_thread_that_is_gone_is_an_oserror_naming_the_call() -> None:
    tid = 2**22 + 12345  # above pid_max's usual 4194304: no such thread
    with pytest.raises(OSError, match=r"sched_getattr\(4206649\)"):
        sched_slice.set_slice(300, tid=tid)
    assert sched_slice.slice_us(tid) is None


class RefusingLibc:
    """libc whose sched_setattr fails with `err`, as an old kernel (ENOSYS) or a seccomp
    filter (EPERM) would; every other call goes to the real libc. A kernel that refuses
    cannot be had on this 6.18 machine, hence this stand-in."""

    def __init__(self, err: int) -> None:
        self.err = err
        self.calls = 0
        self.real = sched_slice._libc

    def syscall(self, number: ctypes.c_long, *args: Any) -> int:
        if number.value == sched_slice._numbers()[0]:
            self.calls += 1
            ctypes.set_errno(self.err)
            return -1
        return self.real.syscall(number, *args)


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM, errno.EINVAL])
def test_a_refusal_is_logged_once_at_info_and_changes_nothing(monkeypatch, caplog, err) -> None:
    libc = RefusingLibc(err)
    monkeypatch.setattr(sched_slice, "_libc", libc)
    with caplog.at_level(logging.INFO, logger=sched_slice.__name__):
        before, effective = in_thread(lambda: (sched_slice.slice_us(), sched_slice.apply(300, "worker 4")))
    assert libc.calls == 1
    assert effective == before and effective is not None
    lines = [r for r in caplog.records if r.name == sched_slice.__name__]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    message = lines[0].getMessage()
    assert "worker 4" in message and "300 µs" in message and os.strerror(err) in message
    assert "worker_slice_us" in message
