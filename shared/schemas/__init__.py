"""JSON Schemas (draft 2020-12) of every control-API message and every protocol message.

- `control.json` (`urn:tureen:schema:control`): the envelopes (`request`, `reply`, `event`),
  per control method `<method>.params` and `<method>.data`, per event `event.<name>`.
- `protocol.json` (`urn:tureen:schema:protocol`): per mediasoup v2 message
  `<method>.request` / `<method>.response` (the six requests) and `<method>.notification`
  (the client's notifications and the server's), and the shared parts (rtpCapabilities,
  rtpParameters, stats entries, ...).

The JSON files are the source: apps in any language can load them (clients/node can read
them from this folder) and validate with any JSON Schema library. The test suite checks
every message it sends and receives against them (tests/schema_check.py, with the
`jsonschema` package of the test extra), so that the schemas, the server and the reference
(docs/protocol/) cannot drift apart. This module only reads them: the server does not
depend on a validator.
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
