"""shared/logs.py: the JSON and text formatters, configure() and run-time level changes."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from tureen.shared import logs


class Buffer(io.StringIO):
    def configure(self, *args: str) -> None:
        """logs.configure(*args), its handler then writing here instead of stderr (which
        pytest swaps between a test's phases)."""
        logs.configure(*args)
        logging.getLogger().handlers[0].setStream(self)  # type: ignore[attr-defined]


@pytest.fixture
def captured() -> Iterator[Buffer]:
    """A buffer to configure() into; the root logger's handlers and the levels of every
    tureen logger are restored after it. During the test those levels are unset: another
    module of the same test process may have quieted them (tests/fuzz/room.py does)."""
    buffer = Buffer()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    names = {"tureen", "tureen.room", "tureen.server", "tureen.workers", "tureen.workers.webrtc"}
    names |= {n for n in logging.Logger.manager.loggerDict if n.startswith("tureen")}
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield buffer
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def lines(buffer: Buffer) -> list[str]:
    return [line for line in buffer.getvalue().splitlines() if line]


def test_json_line_has_every_key(captured: Buffer) -> None:
    captured.configure("info", "worker[3]", "json")
    logging.getLogger("tureen.room").info(
        "peer %r joined", "alice", extra={"room": "r1", "peer": "alice", "ids": {"transport": 12}}
    )
    [line] = lines(captured)
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["process"] == "worker[3]"
    assert entry["logger"] == "tureen.room"
    assert entry["message"] == "peer 'alice' joined"
    assert (entry["room"], entry["peer"], entry["ids"]) == ("r1", "alice", {"transport": 12})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"]), entry["ts"]
    assert "exception" not in entry


def test_json_leaves_out_ids_a_record_has_not(captured: Buffer) -> None:
    captured.configure("info", "supervisor", "json")
    logging.getLogger("tureen.server").warning("plain %s", "line")
    entry = json.loads(lines(captured)[0])
    assert set(entry) == {"ts", "level", "process", "logger", "message"}
    assert entry["level"] == "warning" and entry["message"] == "plain line"


def test_json_carries_the_exception_on_one_line(captured: Buffer) -> None:
    captured.configure("info", "supervisor", "json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("tureen.server").exception("it failed")
    [line] = lines(captured)  # the traceback is inside the object, not extra lines
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert "RuntimeError: boom" in entry["exception"] and "Traceback" in entry["exception"]


def test_json_survives_ids_that_are_not_json(captured: Buffer) -> None:
    captured.configure("info", "supervisor", "json")
    logging.getLogger("tureen.server").info("odd", extra={"ids": {"set": {1}}, "room": b"r"})
    entry = json.loads(lines(captured)[0])
    assert entry["ids"] == {"set": "{1}"} and entry["room"] == "b'r'"


def test_text_line(captured: Buffer) -> None:
    captured.configure("info", "worker[0]", "text")
    logging.getLogger("tureen.room").info("peer %r joined", "bob", extra={"room": "r1", "peer": "bob"})
    [line] = lines(captured)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    worker\[0\] tureen.room: peer 'bob' joined", line), line


def test_configure_refuses_unknown_level_and_format(captured: Buffer) -> None:
    with pytest.raises(ValueError, match="use debug, info, warning or error"):
        logs.configure("loud")
    with pytest.raises(ValueError, match="use text or json"):
        logs.configure("info", fmt="xml")


def test_set_level_for_everything_and_for_one_area(captured: Buffer) -> None:
    captured.configure("info", "supervisor", "text")
    logging.getLogger("tureen.room.sub").debug("hidden")
    logs.set_level("debug", "tureen.room")
    logging.getLogger("tureen.room.sub").debug("room debug shown")
    logging.getLogger("tureen.server").debug("server debug hidden")
    logs.set_level("warning")
    logging.getLogger("tureen.server").info("server info hidden")
    text = captured.getvalue()
    assert "room debug shown" in text
    assert "hidden" not in text


@pytest.mark.parametrize(
    ("level", "logger", "why"),
    [
        ("loud", None, "level must be one of debug, info, warning, error"),
        (3, None, "level must be one of"),
        ("critical", None, "level must be one of"),
        ("info", "tureen..room", "logger must be a logger name"),
        ("info", "", "logger must be a logger name"),
        ("info", "x" * 201, "at most 200"),
        ("info", 5, "logger must be a logger name"),
    ],
)
def test_level_change_is_checked(level: object, logger: object, why: str) -> None:
    before = logging.getLogger().level
    with pytest.raises(ValueError, match=why):
        logs.set_level(level, logger)  # type: ignore[arg-type]
    assert logging.getLogger().level == before


def test_level_change_normalises() -> None:
    assert logs.check_level_change("DEBUG", None) == ("debug", None)
    assert logs.check_level_change("info", "tureen.room") == ("info", "tureen.room")


def test_subject_names_an_object_in_the_protocol_id_space(captured: Buffer) -> None:
    named = logs.Subject("transport", 12, room="r1", peer="alice", client_id=3)
    assert str(named) == "room 'r1' peer 'alice' transport 3 (worker id 12)"
    assert named.extra == {"room": "r1", "peer": "alice", "ids": {"workerId": 12, "transport": 3}}
    assert str(logs.Subject("producer", 9)) == "producer 9"  # the supervisor did not say
    assert str(logs.Subject("consumer", 9, room="r1", peer="b", client_id=9)) == "room 'r1' peer 'b' consumer 9"
    captured.configure("info", "worker[0]", "json")
    logging.getLogger("tureen.workers.webrtc").info("%s: DTLS connected", named, extra=named.extra)
    entry = json.loads(lines(captured)[0])
    assert entry["message"] == "room 'r1' peer 'alice' transport 3 (worker id 12): DTLS connected"
    assert (entry["room"], entry["peer"], entry["ids"]) == ("r1", "alice", {"workerId": 12, "transport": 3})
