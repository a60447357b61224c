"""Field checks for protocol and control-API messages: value -> typed value or ProtocolError.

Every check names the field and what was wrong, so the app can fix its message without
reading our source. Booleans are rejected where numbers are expected (JSON true is not 1).
"""

from __future__ import annotations

from typing import Any

from ..errors import bad_request

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
