"""The supervisor's run directory (the worker-N.ipc and pipe-N.ipc sockets): claimed with a
lock so that two supervisors never share one, and cleaned of what a killed one left.

The lock is `supervisor.lock` in the directory: a file holding the owner's pid, with an
exclusive flock(2) on it for the supervisor's life. The kernel drops the lock when the
process ends however it ends (`kill -9` included), so a held lock means a live owner and a
free one a stale directory; the pid is there for the error message.

- A configured `run_dir` is locked (refused when another live supervisor holds it), then
  stale `worker-*.ipc` / `pipe-*.ipc` files in it are removed.
- Without one, older `tureen-*` temp directories of this user whose lock is free are removed,
  then a fresh one is made and locked. A directory without a lock file is never touched (a
  supervisor of an older version, or one that is starting: the lock file appears already
  locked, linked in place after the flock), nor one configured as a `run_dir` (only temp
  dirs' lock files carry TEMP_MARK).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("tureen.run_dir")

LOCK_NAME = "supervisor.lock"
TEMP_PREFIX = "tureen-"
TEMP_MARK = "temporary"
STALE_SOCKETS = ("worker-*.ipc", "pipe-*.ipc")


class RunDirBusy(RuntimeError):
    """Another live supervisor holds the run directory."""


class RunDir:
    """A claimed run directory; `release()` at the end (removes it when it was a temp one)."""

    def __init__(self, path: Path, lock_fd: int, temporary: bool) -> None:
        self.path = path
        self.temporary = temporary
        self._fd: int | None = lock_fd

    def release(self) -> None:
        if self._fd is None:
            return
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self.path / LOCK_NAME)
        os.close(self._fd)  # the lock goes with the descriptor
        self._fd = None


def claim(configured: str) -> RunDir:
    """Lock the configured run dir (or a fresh temp one) and clean what was stale."""
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        fd = _lock(path, temporary=False)
        removed = remove_stale_sockets(path)
        if removed:
            log.warning("run dir %s: removed %d stale sockets of a supervisor that died: %s",
                        path, len(removed), ", ".join(p.name for p in removed))
        return RunDir(path, fd, temporary=False)
    base = Path(tempfile.gettempdir())
    for stale in remove_stale_temp_dirs(base):
        log.warning("removed %s, the run dir of a supervisor that died", stale)
    path = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    return RunDir(path, _lock(path, temporary=True), temporary=True)


def _lock(path: Path, temporary: bool) -> int:
    """The locked descriptor of `path`/supervisor.lock; RunDirBusy when a live owner has it."""
    lock = path / LOCK_NAME
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            fd = _create_locked(path, lock, temporary)
            if fd is None:
                continue  # another supervisor created it meanwhile: try its lock
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(fd)
            os.close(fd)
            raise RunDirBusy(
                f"run dir {path} is in use by another tureen supervisor (pid {owner}); stop it "
                "or give this one another run_dir (--run-dir)"
            ) from None
        # Ours, unless its owner removed it between our open and our flock.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        _write_pid(fd, temporary)
        return fd
    raise RunDirBusy(f"run dir {path}: could not take its lock {lock}; is another supervisor starting?")


def _create_locked(path: Path, lock: Path, temporary: bool) -> int | None:
    """Make the lock file already locked: a private file, flocked, then linked in place."""
    private = path / f".{LOCK_NAME}.{os.getpid()}"
    fd = os.open(private, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _write_pid(fd, temporary)
        os.link(private, lock)
    except FileExistsError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(private)
    return fd


def _write_pid(fd: int, temporary: bool) -> None:
    """The owner's pid, and TEMP_MARK on a second line when the directory is a temp one of
    ours (only those are ever removed whole)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{TEMP_MARK if temporary else ''}".encode(), 0)


def _read_lock(fd: int) -> list[str]:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return os.pread(fd, 64, 0).decode().split()
    return []


def _read_pid(fd: int) -> str:
    words = _read_lock(fd)
    return words[0] if words and words[0].isdigit() else "unknown"


def remove_stale_sockets(path: Path) -> list[Path]:
    """The ipc socket files in a run dir we hold the lock of: all left by a dead owner."""
    removed = []
    for pattern in STALE_SOCKETS:
        for entry in sorted(path.glob(pattern)):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def remove_stale_temp_dirs(base: Path) -> list[Path]:
    """`tureen-*` directories of this user in `base` whose lock is free (owner gone)."""
    removed = []
    uid = os.getuid()
    for entry in sorted(base.glob(f"{TEMP_PREFIX}*")):
        try:
            if entry.is_symlink() or not entry.is_dir() or entry.stat().st_uid != uid:
                continue
            fd = os.open(entry / LOCK_NAME, os.O_RDWR)
        except OSError:
            continue  # no lock file: not a run dir of this version, or not ours to judge
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            ours = TEMP_MARK in _read_lock(fd)
        except BlockingIOError:
            continue  # its supervisor is alive
        finally:
            os.close(fd)
        if not ours:
            continue  # a configured run_dir that happens to be named so: not ours to remove
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed
