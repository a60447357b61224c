"""The envelope shared by both ZeroMQ links (app <-> supervisor, supervisor <-> worker).

One JSON object per message (orjson):
  request  {"id": ID, "method": NAME, ...params}
  reply    {"id": ID, "ok": true, "data": ...} | {"id": ID, "ok": false, "error": {code, message}}
  event    {"event": NAME, ...}          (no id)
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import ProtocolError, bad_request

# Frames above this are refused before parsing: a protocol message is a few KiB at most.
MAX_FRAME = 1 << 20


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


# orjson encodes at most this many levels of arrays and objects (it decodes 1024).
ENCODE_DEPTH = 254


def encode_request(request_id: Any, method: str, params: dict[str, Any]) -> bytes:
    """A request frame {"id", "method", **params}; ProtocolError(bad_request) where orjson
    cannot encode the parameters (nested past ENCODE_DEPTH levels, an integer beyond 64 bits),
    so that a caller's undo path, written for ProtocolError, runs (a client's value passed on
    to a worker must not leave half-made state behind a TypeError)."""
    try:
        return orjson.dumps({"id": request_id, "method": method, **params})
    except orjson.JSONEncodeError as exc:
        raise bad_request(
            f"{method}: the parameters cannot be encoded ({exc}): a value is nested more than "
            f"{ENCODE_DEPTH} levels deep or a number does not fit 64 bits; send a shallower value"
        ) from None


def decode(frame: bytes) -> dict[str, Any]:
    """Parse one frame into a JSON object or raise ProtocolError(bad_request)."""
    if len(frame) > MAX_FRAME:
        raise bad_request(f"message of {len(frame)} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise bad_request(f"message must be a JSON object, got {type(obj).__name__}")
    return obj


def reply_ok(request_id: Any, data: Any = None) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "data": data}


def reply_error(request_id: Any, error: ProtocolError) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": error.to_wire()}


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {"event": name, **fields}
