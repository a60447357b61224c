"""Every message the test suite sends and receives through TureenClient, checked against
shared/schemas/*.json (tureen.shared.schemas); a mismatch fails the test that saw it.

- A reply, an event, a protocol response or notification that its schema refuses: a
  violation (the server sends a shape the reference does not describe).
- A request the schema refuses is fine when the server refuses it too (tests send bad
  messages on purpose); when the server ACCEPTS it, the schema is stricter than the server:
  a violation as well.

The hook is the one place tests' clients encode and decode frames: TureenClient's `wire`
(shared/client.py) is replaced by a proxy that checks, then delegates.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from tureen.shared import client as client_module
from tureen.shared import wire
from tureen.shared.schemas import MessageChecker

_checker = MessageChecker()
# What this test saw that the schemas refuse (reset per test by the autouse fixture).
violations: list[str] = []
# (id of the TureenClient, request id) -> (method, inner protocol method, schema problems).
_sent: dict[tuple[int, Any], tuple[str, str | None, list[str]]] = {}


def _calling_client() -> int:
    """Which TureenClient called encode/decode (several run in one test)."""
    frame = sys._getframe(2)
    return id(frame.f_locals.get("self"))


def request_problems(method: str, params: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(the protocol method inside, what the schemas refuse in this request)."""
    message = {"id": 0, "method": method, **params}
    problems = _checker.errors("control", f"{method}.params", message)
    inner = None
    if method in ("room.request", "room.notify"):
        body = params.get("request" if method == "room.request" else "notification")
        if isinstance(body, dict) and isinstance(body.get("method"), str):
            inner = body["method"]
            kind = "request" if method == "room.request" else "notification"
            problems += _checker.errors("protocol", f"{inner}.{kind}", body)
    return inner, problems


def reply_problems(method: str, inner: str | None, reply: dict[str, Any]) -> list[str]:
    problems = _checker.errors("control", "reply", reply)
    if problems or not reply.get("ok"):
        return problems
    problems += _checker.errors("control", f"{method}.data", reply["data"])
    if method == "room.request" and inner is not None:
        problems += _checker.errors("protocol", f"{inner}.response", reply["data"])
    return problems


def event_problems(event: dict[str, Any]) -> list[str]:
    problems = _checker.errors("control", "event", event)
    if problems:
        return problems
    problems = _checker.errors("control", f"event.{event['event']}", event)
    note = event.get("notification")
    if event["event"] == "notification" and isinstance(note, dict):
        problems += _checker.errors("protocol", f"{note.get('method')}.notification", note)
    return problems


def _encode_request(request_id: Any, method: str, params: dict[str, Any]) -> bytes:
    frame = wire.encode_request(request_id, method, params)  # raises first for unencodable ones
    inner, problems = request_problems(method, params)
    _sent[(_calling_client(), request_id)] = (method, inner, problems)
    return frame


def _decode(frame: bytes) -> dict[str, Any]:
    message = wire.decode(frame)
    if "event" in message and "id" not in message:
        for problem in event_problems(message):
            violations.append(f"event {message.get('event')}: {problem}\n  {message}")
        return message
    sent = _sent.pop((_calling_client(), message.get("id")), None)
    if sent is None:
        return message
    method, inner, request_refused = sent
    what = f"{method}" + (f" {inner}" if inner else "")
    for problem in reply_problems(method, inner, message):
        violations.append(f"reply to {what}: {problem}\n  {message}")
    if message.get("ok") and request_refused:
        violations.append(
            f"the server accepted a {what} request that the schema refuses: {request_refused}"
        )
    return message


# Everything else of `wire` as it is; only the client's reference is replaced.
_proxy = types.ModuleType("tureen.shared.wire (schema-checked)")
_proxy.__dict__.update({k: v for k, v in vars(wire).items() if not k.startswith("__")})
_proxy.encode_request = _encode_request  # type: ignore[attr-defined]
_proxy.decode = _decode  # type: ignore[attr-defined]
client_module.wire = _proxy  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def schema_checked_messages() -> Iterator[None]:
    """Fails the test when a message it sent or received does not match its schema."""
    violations.clear()
    _sent.clear()
    yield
    if violations:
        found = list(violations)
        violations.clear()
        pytest.fail(
            f"{len(found)} message(s) do not match shared/schemas (docs/control-api.md):\n"
            + "\n".join(found[:20]),
            pytrace=False,
        )
