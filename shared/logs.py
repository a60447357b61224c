"""Logging set-up shared by the supervisor and the workers: one readable line per event."""

from __future__ import annotations

import logging
import sys


def configure(level: str = "info", process: str = "supervisor") -> None:
    """Log to stderr as `time level process logger: message` (journald adds the rest)."""
    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)-7s {process} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
