"""The few error types of Tureen, mapped to wire errors at one boundary (control_server.py).

A ProtocolError is something the caller did wrong or asked for that cannot be done; its
message is a sentence naming the object ("producer 7 of peer 'alice' is closed"). Anything
else that escapes a handler is a bug and is reported as code "internal".
"""

from __future__ import annotations

from typing import Any

# Error codes used on both ZeroMQ links. Apps switch on the code, humans read the message.
BAD_REQUEST = "bad_request"  # malformed envelope, wrong types, missing fields
UNKNOWN_METHOD = "unknown_method"
NOT_FOUND = "not_found"  # unknown room, peer, transport, producer or consumer id
DUPLICATE = "duplicate"  # id or name already in use
INVALID_STATE = "invalid_state"  # right message at the wrong moment (closed, already enabled...)
UNSUPPORTED = "unsupported"  # codecs or parameters that cannot be served
UNAVAILABLE = "unavailable"  # no worker, worker died, timeout
LIMIT = "limit"  # a configured quota (rooms, peers, transports, appData bytes, request rate)
INTERNAL = "internal"

CODES = frozenset(
    {
        BAD_REQUEST,
        UNKNOWN_METHOD,
        NOT_FOUND,
        DUPLICATE,
        INVALID_STATE,
        UNSUPPORTED,
        UNAVAILABLE,
        LIMIT,
        INTERNAL,
    }
)


class ProtocolError(Exception):
    """A request that cannot be served; carries a wire code and a human sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_wire(cls, error: Any) -> ProtocolError:
        if isinstance(error, dict):
            code = error.get("code") if error.get("code") in CODES else INTERNAL
            return cls(code, str(error.get("message", "unknown error")))
        return cls(INTERNAL, str(error))

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r})"


def bad_request(message: str) -> ProtocolError:
    return ProtocolError(BAD_REQUEST, message)


def not_found(message: str) -> ProtocolError:
    return ProtocolError(NOT_FOUND, message)


def invalid_state(message: str) -> ProtocolError:
    return ProtocolError(INVALID_STATE, message)


def duplicate(message: str) -> ProtocolError:
    return ProtocolError(DUPLICATE, message)


def unsupported(message: str) -> ProtocolError:
    return ProtocolError(UNSUPPORTED, message)


def limit(message: str) -> ProtocolError:
    """A quota of the server's configuration was reached; the message names the config key."""
    return ProtocolError(LIMIT, message)
