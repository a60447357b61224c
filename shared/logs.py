"""Logging set-up shared by the supervisor and the workers (docs/operations.md, "Logs").

Two formats: "text", one readable line per event (journald adds the rest), and "json", one
JSON object per line for a log pipeline. A record may carry the protocol ids it is about with
`extra={"room": ..., "peer": ..., "ids": {...}}`: the JSON lines have them as keys (the
message names them too, for the text lines: Subject). The level changes at run time with set_level (the control API's
server.setLogLevel, `tureen log-level`), for everything or for one area (a logger prefix).
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from tureen.shared.config import LOG_FORMATS

# The levels an operator may set at run time (config accepts critical too).
RUNTIME_LEVELS = ("debug", "info", "warning", "error")
# A logger name: dotted words, e.g. "tureen.room".
_LOGGER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
MAX_LOGGER_NAME = 200
# The `extra=` keys a record may carry: the protocol ids a line is about.
CONTEXT_KEYS = ("room", "peer", "ids")


def level_number(level: str) -> int:
    """The logging module's number of a level name, or ValueError saying which names work."""
    numeric = getattr(logging, level.upper(), None) if isinstance(level, str) else None
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    return numeric


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601, UTC), level, process, logger, message; room,
    peer and ids when the record carries them; exception (the traceback text) when it has one."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "process": self.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an id the caller passed as some other object still makes a line.
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "info", process: str = "supervisor", fmt: str = "text") -> None:
    """Log to stderr in `fmt` ("text" or "json") at `level`; `process` names this process
    in every line (supervisor, worker[N])."""
    numeric = level_number(level)
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use text or json")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process))
    else:  # the ids are in the message already ("room 'r1' peer 'alice' transport 3: ...")
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-7s {process} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)


def check_level_change(level: Any, logger: Any = None) -> tuple[str, str | None]:
    """A run-time level change's arguments checked: (level, logger or None), else ValueError
    saying what is allowed."""
    if not isinstance(level, str) or level.lower() not in RUNTIME_LEVELS:
        raise ValueError(f"level must be one of {', '.join(RUNTIME_LEVELS)}, got {level!r}")
    if logger is not None and (
        not isinstance(logger, str) or len(logger) > MAX_LOGGER_NAME or not _LOGGER_NAME.fullmatch(logger)
    ):
        raise ValueError(
            f"logger must be a logger name such as 'tureen.room' (dotted words, at most "
            f"{MAX_LOGGER_NAME} characters), got {logger!r:.60}"
        )
    return level.lower(), logger or None


def set_level(level: str, logger: str | None = None) -> None:
    """Set the level of everything (logger None: the root logger) or of one area (a logger
    name and every logger below it, e.g. "tureen.room" covers "tureen.room.x"); checked as
    check_level_change does."""
    level, logger = check_level_change(level, logger)
    logging.getLogger(logger).setLevel(level_number(level))


class Subject:
    """A worker's object named in the protocol's id space, for its log lines: str() is
    "room 'r1' peer 'alice' transport 3 (worker id 12)" (just "transport 12" when the
    supervisor did not say), and `extra` the room, peer and ids for logging's `extra=`
    (the JSON lines' keys)."""

    __slots__ = ("extra", "text")

    def __init__(
        self, kind: str, worker_id: int, room: str | None = None, peer: str | None = None, client_id: int | None = None
    ) -> None:
        parts = [f"room {room!r}"] if room is not None else []
        if peer is not None:
            parts.append(f"peer {peer!r}")
        if client_id is None or client_id == worker_id:
            parts.append(f"{kind} {worker_id}")
        else:  # the id the peer and the supervisor's lines use, then the worker's own
            parts.append(f"{kind} {client_id} (worker id {worker_id})")
        self.text = " ".join(parts)
        ids: dict[str, int] = {"workerId": worker_id}
        if client_id is not None:
            ids[kind] = client_id
        self.extra: dict[str, Any] = {"room": room, "peer": peer, "ids": ids}

    def __str__(self) -> str:
        return self.text
