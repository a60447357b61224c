"""The envelope shared by both ZeroMQ links (app <-> supervisor, supervisor <-> worker).

One JSON object per message (orjson):
  request  {"id": ID, "method": NAME, ...params}
  reply    {"id": ID, "ok": true, "data": ...} | {"id": ID, "ok": false, "error": {code, message}}
  event    {"event": NAME, ...}          (no id)

`decode` is the one door in: a frame that is too big, not JSON, not an object, or nested
deeper than MAX_DEPTH never gets past it. The depth bound matters because orjson reads
nesting up to 1023 levels but writes only about 254: anything deeper that got in could never
be sent back out (a reply or an event about it would fail to encode).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from tureen.shared.errors import BAD_REQUEST, ProtocolError, bad_request

# Frames above this are refused before parsing: a protocol message is a few KiB at most.
MAX_FRAME = 1 << 20
# Deepest nesting of arrays/objects a message may have (the envelope counts: {} is 1).
MAX_DEPTH = 32
# Request ids: a string of at most this many characters, or a signed 64-bit integer. Both
# come back exactly as sent (orjson reads larger integers as floats, which would not).
MAX_ID_LENGTH = 256
MIN_INT_ID, MAX_INT_ID = -(1 << 63), (1 << 63) - 1


class MessageError(ProtocolError):
    """A frame refused by `decode` (always bad_request). `request_id` is the message's id
    when the frame was a JSON object with a usable one, so the refusal can still be matched."""

    def __init__(self, message: str, request_id: Any = None) -> None:
        super().__init__(BAD_REQUEST, message)
        self.request_id = request_id


def encode(message: dict[str, Any]) -> bytes:
    """orjson bytes of `message`. Raises TypeError (orjson.JSONEncodeError) on what JSON cannot
    hold: nesting past about 254 levels, integers beyond 64 bits, non-string keys."""
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
        raise cannot_encode(method, exc) from None


def cannot_encode(method: str, exc: orjson.JSONEncodeError) -> ProtocolError:
    """The bad_request for parameters of `method` that orjson refused to write."""
    return bad_request(
        f"{method}: the parameters cannot be encoded ({exc}): a value is nested more than "
        f"{ENCODE_DEPTH} levels deep or a number does not fit 64 bits; send a shallower value"
    )


def decode(frame: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse one frame into a JSON object or raise MessageError (code bad_request)."""
    if len(frame) > MAX_FRAME:
        raise MessageError(f"message of {len(frame)} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MessageError(f"message must be a JSON object, got {type(obj).__name__}")
    if frame_too_deep(frame, max_depth):
        raise MessageError(
            f"message is nested too deep: at most {max_depth} levels of arrays and objects",
            usable_id(obj),
        )
    return obj


# What frame_too_deep strips: JSON strings (escapes included), then every byte but brackets.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def frame_too_deep(frame: bytes, max_depth: int) -> bool:
    """Whether a frame of valid JSON nests arrays/objects more than `max_depth` levels.

    Works on the bytes, at C speed (a walk of the parsed value costs Python time per node):
    strip the strings, keep the brackets, then remove innermost pairs "()" once per level;
    whatever is left after `max_depth` rounds was deeper. UTF-8 never hides a quote or a
    backslash inside a multi-byte character, so stripping strings on bytes is exact.
    """
    if frame.count(b"[") + frame.count(b"{") <= max_depth:  # most frames stop here
        return False
    brackets = _STRING.sub(b"", frame).translate(_OPEN_CLOSE, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


def too_deep(value: Any, max_depth: int) -> bool:
    """Whether `value` nests arrays/objects more than `max_depth` levels ([] is 1 level).
    Recursion stops at max_depth + 1, so any input is safe."""
    return _depth_exceeds(value, max_depth, 1) if isinstance(value, dict | list) else 0 > max_depth


def _depth_exceeds(container: dict[str, Any] | list[Any], limit: int, depth: int) -> bool:
    if depth > limit:
        return True
    children = container.values() if isinstance(container, dict) else container
    for child in children:
        if type(child) in (dict, list) and _depth_exceeds(child, limit, depth + 1):
            return True
    return False


def check_request_id(value: Any) -> str | int:
    """The id of a request, if it can be echoed back exactly; else ProtocolError(bad_request)."""
    if value is None:
        raise bad_request("every request needs an 'id' (a string or an integer)")
    if isinstance(value, str):
        if len(value) > MAX_ID_LENGTH:
            raise bad_request(f"request 'id' is a string of {len(value)} characters; at most {MAX_ID_LENGTH}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not MIN_INT_ID <= value <= MAX_INT_ID:
            raise bad_request("request 'id' must be an integer in -2^63..2^63-1 (or a string)")
        return value
    if isinstance(value, float):
        raise bad_request(
            "request 'id' must be a string or an integer in -2^63..2^63-1, not a fraction or "
            "a number beyond 64 bits"
        )
    raise bad_request(f"request 'id' must be a string or an integer, got {type(value).__name__}")


def usable_id(message: dict[str, Any]) -> str | int | None:
    """The message's id when it is usable (check_request_id accepts it), else None."""
    try:
        return check_request_id(message.get("id"))
    except ProtocolError:
        return None


def reply_ok(request_id: Any, data: Any = None) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "data": data}


def reply_error(request_id: Any, error: ProtocolError) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": error.to_wire()}


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {"event": name, **fields}
