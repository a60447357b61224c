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
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from tureen.shared import client as client_module
from tureen.shared import wire
from tureen.shared.schemas import CONTROL_ID, PROTOCOL_ID, load


class MessageChecker:
    """Validates messages against a named definition: `errors("control", "room.create.params",
    message)` -> a list of readable problems (empty when the message is valid)."""

    def __init__(self) -> None:
        resources = [(doc["$id"], Resource.from_contents(doc)) for doc in (load("control"), load("protocol"))]
        self._registry = Registry().with_resources(resources)
        self._validator_class = Draft202012Validator
        self._validators: dict[tuple[str, str], Any] = {}

    def has(self, document: str, definition: str) -> bool:
        return definition in load(document)["$defs"]

    def errors(self, document: str, definition: str, instance: Any) -> list[str]:
        key = (document, definition)
        validator = self._validators.get(key)
        if validator is None:
            if not self.has(document, definition):
                return [f"no schema {definition!r} in {document}.json"]
            base = CONTROL_ID if document == "control" else PROTOCOL_ID
            validator = self._validator_class({"$ref": f"{base}#/$defs/{definition}"}, registry=self._registry)
            self._validators[key] = validator
        return [
            f"{definition}: {'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
            for error in validator.iter_errors(instance)
        ]


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


def _report() -> str:
    found = list(violations)
    violations.clear()
    return f"{len(found)} message(s) do not match shared/schemas (docs/protocol/):\n" + "\n".join(found[:20])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Fails the test itself when a message it sent or received does not match."""
    result = yield
    if violations:
        raise AssertionError(_report())
    return result


@pytest.fixture(autouse=True)
def schema_checked_messages() -> Iterator[None]:
    """Starts each test with a clean slate; what only its fixtures' teardown saw (a room
    closed at the end) fails it there."""
    violations.clear()
    _sent.clear()
    yield
    if violations:
        pytest.fail(_report(), pytrace=False)
