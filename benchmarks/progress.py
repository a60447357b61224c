"""A one-line progress bar on stderr (no dependency): steps done of planned, elapsed time,
and what the current trial just measured."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_steps: int) -> None:
        self.total = max(1, total_steps)
        self.done = 0
        self.started = time.monotonic()
        self.enabled = sys.stderr.isatty()  # redraw in place only on a terminal
        self._width = 0

    def step(self, label: str) -> None:
        """One planned step (a search) is finished."""
        self.done += 1
        self.show(label)

    def show(self, label: str) -> None:
        elapsed = time.monotonic() - self.started
        filled = int(20 * min(self.done, self.total) / self.total)
        line = f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} {elapsed:5.0f}s  {label}"
        if self.enabled:
            pad = max(0, self._width - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            sys.stderr.flush()
            self._width = len(line)
        else:  # not a terminal (CI, a pipe): one plain line per update
            sys.stderr.write(line + "\n")

    def close(self) -> None:
        if self.enabled and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()
