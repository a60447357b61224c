"""JSON Schemas (draft 2020-12) of every control-API message and every protocol message.

- `control.json` (`urn:tureen:schema:control`): the envelopes (`request`, `reply`, `event`),
  per control method `<method>.params` and `<method>.data`, per event `event.<name>`.
- `protocol.json` (`urn:tureen:schema:protocol`): per mediasoup v2 message
  `<method>.request` / `<method>.response` (the six requests) and `<method>.notification`
  (the client's notifications and the server's), and the shared parts (rtpCapabilities,
  rtpParameters, stats entries, ...).

The JSON files are the source: apps in any language can load them (clients/node reads them
from this folder). `MessageChecker` validates with the `jsonschema` package, which only the
test extra installs: the test suite checks every message it sends and receives against
these schemas (tests/schema_check.py), so that the schemas, the server and
docs/control-api.md cannot drift apart.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).parent
CONTROL_ID = "urn:tureen:schema:control"
PROTOCOL_ID = "urn:tureen:schema:protocol"


@cache
def load(name: str) -> dict[str, Any]:
    """The schema document `name` ("control" or "protocol") as a dict."""
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text())


def control_methods() -> set[str]:
    """Every control method that has a schema."""
    return {key[: -len(".params")] for key in load("control")["$defs"] if key.endswith(".params")}


def control_events() -> set[str]:
    return {key[len("event.") :] for key in load("control")["$defs"] if key.startswith("event.")}


def protocol_messages(kind: str) -> set[str]:
    """Protocol methods with a schema of `kind`: "request", "response" or "notification"."""
    return {key.rsplit(".", 1)[0] for key in load("protocol")["$defs"] if key.endswith(f".{kind}")}


class MessageChecker:
    """Validates messages against a named definition: `errors("control", "room.create.params",
    message)` -> a list of readable problems (empty when the message is valid)."""

    def __init__(self) -> None:
        # Imported here: jsonschema is a test dependency, not one of the server's.
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource

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
