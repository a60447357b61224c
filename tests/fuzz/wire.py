"""Control-message decoding and field validation: shared/wire.py, shared/protocol/validate.py.

The input is one frame as a ZeroMQ socket would deliver it. Properties: decode() returns a
dict or raises ProtocolError (bad_request), nothing else; what it returns nests at most
wire.MAX_DEPTH levels (its byte-level check agrees with a walk of the value) and encodes back
to an equal object; a request id check_request_id accepts comes back exactly; every validate.get_*
on any field of it, with any bounds, returns a value of its type inside the bounds, the
default, or raises ProtocolError naming the field.
"""

from __future__ import annotations

from typing import Any

import orjson
from tureen.shared import wire
from tureen.shared.errors import BAD_REQUEST, ProtocolError
from tureen.shared.protocol import validate

from .harness import Draw

# orjson decodes 1024 levels but encodes 254 (issue 12, finding 1): a value nested deeper
# cannot be echoed. decode() refuses past wire.MAX_DEPTH; the capabilities target, which
# calls the library directly, checks encodability only up to this.
NEST_LIMIT = 254


def depth(value: Any) -> int:
    """Nesting levels of arrays and objects in a decoded JSON value (a scalar is 0)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _check_fields(msg: dict[str, Any], draw: Draw) -> None:
    keys = list(msg) + ["id", "method", "missing"]
    for _ in range(draw.below(8) + 1):
        key = draw.choice(keys)
        which = draw.u8() % 7
        present = msg.get(key) is not None
        try:
            if which == 0:
                lo, hi = draw.u32() - (1 << 31), draw.u32()
                got = validate.get_int(msg, key, required=draw.flag(), default=7, minimum=lo, maximum=hi)
                assert got == 7 and not present or (type(got) is int and lo <= got <= hi)
            elif which == 1:
                got = validate.get_id(msg, key)
                assert type(got) is int and 0 <= got < 1 << 53
            elif which == 2:
                limit = draw.u8()
                got = validate.get_str(msg, key, required=draw.flag(), default=None, max_length=limit)
                assert got is None and not present or (type(got) is str and len(got) <= limit)
            elif which == 3:
                choices = ("send", "recv")
                got = validate.get_str(msg, key, required=True, choices=choices)
                assert got in choices
            elif which == 4:
                got = validate.get_bool(msg, key, default=False)
                assert got is False and not present or type(got) is bool
            elif which == 5:
                got = validate.get_obj(msg, key, required=draw.flag())
                assert got is None and not present or isinstance(got, dict)
            else:
                got = validate.get_list(msg, key, required=draw.flag())
                assert got is None and not present or isinstance(got, list)
        except ProtocolError as exc:
            assert exc.code == BAD_REQUEST and f"'{key}'" in exc.message, exc


def fuzz_one(data: bytes) -> None:
    try:
        msg = wire.decode(data)
    except ProtocolError as exc:
        assert exc.code == BAD_REQUEST and exc.message
        return
    assert isinstance(msg, dict)
    assert depth(msg) <= wire.MAX_DEPTH
    assert orjson.loads(wire.encode(msg)) == msg
    try:
        request_id = wire.check_request_id(msg.get("id"))
    except ProtocolError as exc:
        assert exc.code == BAD_REQUEST
    else:
        assert orjson.loads(wire.encode(wire.reply_ok(request_id)))["id"] == msg["id"]
    _check_fields(msg, Draw(data[::-1]))
