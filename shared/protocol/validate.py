"""Field checks for protocol and control-API messages: value -> typed value or ProtocolError.

Every check names the field and what was wrong, so the app can fix its message without
reading our source. Booleans are rejected where numbers are expected (JSON true is not 1).
"""

from __future__ import annotations

from typing import Any

from tureen.shared import wire
from tureen.shared.errors import bad_request, limit

_MISSING = object()


def _get(msg: dict[str, Any], key: str, required: bool) -> Any:
    value = msg.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise bad_request(f"missing field '{key}'")
        return _MISSING
    return value


def get_int(
    msg: dict[str, Any],
    key: str,
    *,
    required: bool = True,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    value = _get(msg, key, required)
    if value is _MISSING:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"field '{key}' must be an integer, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise bad_request(f"field '{key}' must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise bad_request(f"field '{key}' must be <= {maximum}, got {value}")
    return value


def get_id(msg: dict[str, Any], key: str = "id") -> int:
    """A protocol object id: a positive integer below 2^53 (what JavaScript numbers hold)."""
    value = get_int(msg, key, minimum=0, maximum=(1 << 53) - 1)
    assert value is not None
    return value


def get_str(
    msg: dict[str, Any],
    key: str,
    *,
    required: bool = True,
    default: str | None = None,
    choices: tuple[str, ...] | None = None,
    max_length: int = 1024,
) -> str | None:
    value = _get(msg, key, required)
    if value is _MISSING:
        return default
    if not isinstance(value, str):
        raise bad_request(f"field '{key}' must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise bad_request(f"field '{key}' is longer than {max_length} characters")
    if choices is not None and value not in choices:
        raise bad_request(f"field '{key}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def get_bool(msg: dict[str, Any], key: str, *, default: bool = False) -> bool:
    value = _get(msg, key, False)
    if value is _MISSING:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"field '{key}' must be a boolean, got {type(value).__name__}")
    return value


def get_obj(
    msg: dict[str, Any], key: str, *, required: bool = True
) -> dict[str, Any] | None:
    value = _get(msg, key, required)
    if value is _MISSING:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"field '{key}' must be an object, got {type(value).__name__}")
    return value


def get_list(msg: dict[str, Any], key: str, *, required: bool = True) -> list[Any] | None:
    value = _get(msg, key, required)
    if value is _MISSING:
        return None
    if not isinstance(value, list):
        raise bad_request(f"field '{key}' must be an array, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------ bounds of a whole message
#
# Checked once per control request, before anything is looked up or changed
# (Server.dispatch), so that no handler ever sees an unbounded value. Sized for what
# mediasoup-client and a real app send (a room has at most 27 codecs with RTX, 8 header
# extensions; simulcast has 3-4 encodings) with room to spare. Beyond them the message is a
# bad_request naming the path of the value; appData past max_app_data_bytes is a `limit`.

MAX_STRING = 2048  # characters of any string or object key (outside appData)
MAX_KEYS = 64  # keys of any object, unless OBJECT_KEYS says less
MAX_ITEMS = 64  # items of any array, unless ARRAY_ITEMS says otherwise
ARRAY_ITEMS = {
    "codecs": 64,
    "mediaCodecs": 32,
    "encodings": 16,
    "headerExtensions": 32,
    "rtcpFeedback": 32,
    "fecMechanisms": 8,
    "fingerprints": 16,
}
OBJECT_KEYS = {"parameters": 32}
# Whole structures the supervisor keeps (a producer's rtpParameters) or hands to a worker,
# as JSON bytes.
ENCODED_BYTES = {
    "rtpParameters": 32 * 1024,
    "rtpCapabilities": 64 * 1024,
    "mediaCodecs": 16 * 1024,
    "dtlsParameters": 4 * 1024,
}
# Nesting outside appData (the message is level 1). mediasoup messages need 7 (join's
# rtpCapabilities.codecs[i].rtcpFeedback[j]); what a client sends is kept and sent back
# inside dumps and notifications several levels down, so this bound, like APP_DATA_DEPTH,
# keeps every message Tureen writes within wire.MAX_DEPTH.
MAX_NESTING = 12
APP_DATA_KEY = "appData"
# appData goes out again inside replies, events and dumps, several levels down: keeping it
# at most 16 deep keeps every message that carries it within wire.MAX_DEPTH.
APP_DATA_DEPTH = 16


def check_message(message: dict[str, Any], *, max_app_data_bytes: int) -> None:
    """Raise ProtocolError unless every part of a control request is within the bounds above.

    `appData` anywhere is opaque to Tureen: it is bounded by its size as JSON
    (`max_app_data_bytes`, code `limit`) and by APP_DATA_DEPTH, not by its shape.
    """
    _walk(message, [], 1, max_app_data_bytes)


def check_app_data(value: Any, where: str, max_bytes: int) -> None:
    """appData: at most APP_DATA_DEPTH levels and `max_bytes` bytes as JSON."""
    if wire.too_deep(value, APP_DATA_DEPTH):
        raise bad_request(
            f"'{where}' is nested too deep: at most {APP_DATA_DEPTH} levels of arrays and objects"
        )
    try:
        size = len(wire.encode(value))
    except TypeError:  # only from Python callers: decoded JSON always encodes at this depth
        raise bad_request(f"'{where}' cannot be written as JSON") from None
    if size > max_bytes:
        raise limit(
            f"'{where}' is {size} bytes as JSON; at most {max_bytes} are allowed "
            "(max_app_data_bytes): keep large data in the app and send a reference"
        )


def _path(parts: list[str]) -> str:
    text = ""
    for part in parts:
        text += part if part.startswith("[") or not text else f".{part}"
    return text or "message"


def _walk(value: Any, path: list[str], depth: int, app_data_bytes: int) -> None:
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise bad_request(
                f"'{_path(path)}' is a string of {len(value)} characters; at most {MAX_STRING}"
            )
        return
    if not isinstance(value, dict | list):
        return
    if depth > MAX_NESTING:
        raise bad_request(
            f"'{_path(path)}' is nested too deep: a message may have at most {MAX_NESTING} "
            "levels of arrays and objects outside appData"
        )
    # The bound of a container comes from the key that holds it ("codecs", "parameters");
    # items of arrays (path "[3]") and the message itself get the general bound.
    holder = path[-1] if path and not path[-1].startswith("[") else ""
    if isinstance(value, list):
        most = ARRAY_ITEMS.get(holder, MAX_ITEMS)
        if len(value) > most:
            raise bad_request(f"'{_path(path)}' has {len(value)} items; at most {most} are allowed")
        for index, item in enumerate(value):
            path.append(f"[{index}]")
            _walk(item, path, depth + 1, app_data_bytes)
            path.pop()
        return
    most = OBJECT_KEYS.get(holder, MAX_KEYS)
    if len(value) > most:
        raise bad_request(f"'{_path(path)}' has {len(value)} keys; at most {most} are allowed")
    for key, item in value.items():
        if len(key) > MAX_STRING:
            raise bad_request(f"'{_path(path)}' has a key of {len(key)} characters; at most {MAX_STRING}")
        path.append(key)
        if key == APP_DATA_KEY:
            check_app_data(item, _path(path), app_data_bytes)
        else:
            _walk(item, path, depth + 1, app_data_bytes)
            most_bytes = ENCODED_BYTES.get(key)
            if most_bytes is not None and isinstance(item, dict | list):
                size = len(wire.encode(item))
                if size > most_bytes:
                    raise bad_request(
                        f"'{_path(path)}' is {size} bytes as JSON; at most {most_bytes} are allowed"
                    )
        path.pop()
