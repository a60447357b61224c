"""The pure bounds of issue 12: frame decoding (depth, ids), whole-message checks, the
per-connection token bucket."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from tureen.shared import wire
from tureen.shared.errors import ProtocolError
from tureen.shared.protocol.validate import (
    APP_DATA_DEPTH,
    MAX_NESTING,
    MAX_STRING,
    check_app_data,
    check_message,
)
from tureen.supervisor.quotas import RateLimiter


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def deep_frame(levels: int, request_id: Any = 1) -> bytes:
    return orjson.dumps({"id": request_id, "x": "DEEP"}).replace(b'"DEEP"', b"[" * levels + b"]" * levels)


# ------------------------------------------------------------------ wire.decode


def test_decode_accepts_the_depth_bound_and_refuses_one_more_with_the_id() -> None:
    # The envelope is level 1: "x" may hold 31 levels.
    assert wire.decode(deep_frame(wire.MAX_DEPTH - 1))["id"] == 1
    with pytest.raises(wire.MessageError) as info:
        wire.decode(deep_frame(wire.MAX_DEPTH, request_id="r-7"))
    assert info.value.code == "bad_request" and info.value.request_id == "r-7"
    assert "32" in info.value.message


def test_decode_refuses_what_orjson_could_not_write_back() -> None:
    # 300 levels decode in orjson (up to 1023) but cannot be encoded (about 254).
    with pytest.raises(TypeError):
        orjson.dumps(orjson.loads(b"[" * 300 + b"]" * 300))
    with pytest.raises(wire.MessageError):
        wire.decode(deep_frame(300))
    with pytest.raises(wire.MessageError) as info:
        wire.decode(deep_frame(2000))  # past orjson's own limit: no id to give back
    assert info.value.request_id is None


def test_decode_counts_brackets_in_strings_without_refusing_them() -> None:
    frame = orjson.dumps({"id": 1, "s": "[" * 500 + "{" * 500})
    assert wire.decode(frame)["s"].startswith("[[")


def test_decode_keeps_size_type_and_syntax_checks() -> None:
    with pytest.raises(wire.MessageError, match="exceeds"):
        wire.decode(b" " * (wire.MAX_FRAME + 1))
    with pytest.raises(wire.MessageError, match="object"):
        wire.decode(b"[1]")
    with pytest.raises(wire.MessageError, match="JSON"):
        wire.decode(b"{nope")


def test_too_deep_counts_levels_of_arrays_and_objects() -> None:
    assert not wire.too_deep(5, 0)
    assert not wire.too_deep({"a": [{}]}, 3)
    assert wire.too_deep({"a": [{}]}, 2)
    assert not wire.too_deep(nested(40), 40) and wire.too_deep(nested(41), 40)


def random_json(rng: random.Random, depth: int) -> Any:
    """A random JSON value at most `depth` levels deep, with strings full of brackets,
    quotes, backslashes and non-ASCII characters (what could fool a byte-level count)."""
    pick = rng.random()
    if depth == 0 or pick < 0.3:
        return rng.choice([
            1, -2.5, True, None,
            "".join(rng.choice('[]{}"\\,:é€\u2028x') for _ in range(rng.randrange(8))),
        ])
    if pick < 0.65:
        return [random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {
        "".join(rng.choice('[{"\\k') for _ in range(rng.randrange(4))): random_json(rng, depth - 1)
        for _ in range(rng.randrange(4))
    }


def test_the_byte_level_depth_check_agrees_with_a_walk_of_the_value() -> None:
    rng = random.Random(12)
    for _ in range(3000):
        value = {"id": 1, "v": random_json(rng, rng.randrange(1, 12))}
        frame = orjson.dumps(value)
        for limit in (1, 2, 3, 5, 8):
            assert wire.frame_too_deep(frame, limit) == wire.too_deep(value, limit), (frame, limit)


@pytest.mark.parametrize(
    "value", ["", "x" * wire.MAX_ID_LENGTH, 0, -1, wire.MAX_INT_ID, wire.MIN_INT_ID]
)
def test_request_ids_that_round_trip_are_kept(value: Any) -> None:
    assert wire.check_request_id(value) == value
    assert wire.usable_id({"id": value}) == value


@pytest.mark.parametrize(
    "value",
    [None, True, 1.5, 1e19, float(2**64), wire.MAX_INT_ID + 1, wire.MIN_INT_ID - 1,
     "x" * (wire.MAX_ID_LENGTH + 1), [1], {"a": 1}],
)
def test_request_ids_that_would_not_round_trip_are_refused(value: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        wire.check_request_id(value)
    assert info.value.code == "bad_request" and "id" in info.value.message
    assert wire.usable_id({"id": value}) is None


def test_a_big_integer_id_is_read_as_a_float_by_orjson_and_refused() -> None:
    message = wire.decode(b'{"id": 18446744073709551616, "method": "server.ping"}')
    assert isinstance(message["id"], float)
    assert wire.usable_id(message) is None


# ------------------------------------------------------------------ check_message


def check(message: dict[str, Any], app_data_bytes: int = 16384) -> None:
    check_message(message, max_app_data_bytes=app_data_bytes)


def refused(message: dict[str, Any], code: str = "bad_request", app_data_bytes: int = 16384) -> str:
    with pytest.raises(ProtocolError) as info:
        check(message, app_data_bytes)
    assert info.value.code == code, info.value
    return info.value.message


def test_a_real_join_and_produce_pass(opus_join: dict[str, Any]) -> None:
    check(opus_join)


@pytest.fixture
def opus_join() -> dict[str, Any]:
    codec = {"kind": "audio", "name": "opus", "mimeType": "audio/opus", "clockRate": 48000,
             "channels": 2, "preferredPayloadType": 100, "parameters": {"useinbandfec": 1},
             "rtcpFeedback": []}
    return {"id": 1, "method": "room.request", "roomId": "r",
            "request": {"method": "join", "target": "room", "peerName": "alice",
                        "rtpCapabilities": {"codecs": [codec], "headerExtensions": [], "fecMechanisms": []},
                        "appData": {"role": "host"}}}


def test_counts_are_bounded_per_field_and_named_by_path(opus_join: dict[str, Any]) -> None:
    caps = opus_join["request"]["rtpCapabilities"]
    caps["codecs"] = caps["codecs"] * 65
    assert "'request.rtpCapabilities.codecs' has 65 items; at most 64" in refused(opus_join)
    caps["codecs"] = caps["codecs"][:1]
    caps["headerExtensions"] = [{"uri": "u", "preferredId": 1}] * 33
    assert "headerExtensions" in refused(opus_join)
    caps["headerExtensions"] = []
    caps["codecs"][0] = dict(caps["codecs"][0], parameters={f"k{i}": i for i in range(33)})
    assert "'request.rtpCapabilities.codecs[0].parameters' has 33 keys" in refused(opus_join)
    caps["codecs"][0]["parameters"] = {}
    caps["codecs"][0]["rtcpFeedback"] = [{"type": "nack"}] * 33
    assert "rtcpFeedback" in refused(opus_join)
    assert "encodings" in refused({"rtpParameters": {"encodings": [{"ssrc": 1}] * 17}})
    assert "mediaCodecs" in refused({"mediaCodecs": [{}] * 33})


def test_strings_keys_and_generic_containers_are_bounded() -> None:
    refused({"roomId": "x" * (MAX_STRING + 1)})
    check({"roomId": "x" * MAX_STRING})
    assert "key of" in refused({"k" * (MAX_STRING + 1): 1})
    assert "has 65 keys" in refused({"request": {f"k{i}": i for i in range(65)}})
    assert "has 65 items" in refused({"request": {"list": list(range(65))}})
    # Arrays in arrays get the general bound, not their holder's.
    check({"encodings": [list(range(40))]})


def test_whole_structures_are_bounded_in_bytes() -> None:
    params = {"codecs": [{"parameters": {f"k{i}": "v" * 2000 for i in range(20)}}]}
    message = refused({"request": {"rtpParameters": params}})
    assert "'request.rtpParameters' is" in message and "bytes" in message


def test_nesting_outside_app_data_is_bounded() -> None:
    check({"x": nested(MAX_NESTING - 1)})
    assert "'x[0]" in refused({"x": nested(MAX_NESTING)})
    assert "nested" in refused({"x": nested(40)})
    check({"appData": nested(APP_DATA_DEPTH)})  # appData has its own bound


def test_app_data_is_bounded_by_bytes_and_depth_not_by_shape() -> None:
    # Its shape is the app's: more than 64 items or keys, long strings are fine.
    check({"appData": {"list": list(range(1000)), "text": "t" * 5000}})
    message = refused({"request": {"appData": "x" * 20_000}}, code="limit")
    assert "'request.appData'" in message and "max_app_data_bytes" in message
    check({"appData": nested(APP_DATA_DEPTH)})
    assert "appData" in refused({"appData": nested(APP_DATA_DEPTH + 1)})
    check({"appData": "x" * 100}, app_data_bytes=102)
    refused({"appData": "x" * 101}, code="limit", app_data_bytes=102)


def test_check_app_data_refuses_values_json_cannot_hold() -> None:
    with pytest.raises(ProtocolError, match="JSON"):
        check_app_data(2**70, "appData", 1000)


# ------------------------------------------------------------------ RateLimiter


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.allow(b"a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow(b"b", 0.0)  # another connection has its own bucket
    assert not limiter.allow(b"a", 0.05)  # half a token
    assert limiter.allow(b"a", 0.1)
    assert not limiter.allow(b"a", 0.1)
    assert [limiter.allow(b"a", 100.0) for _ in range(6)] == [True] * 5 + [False]  # capped at burst


def test_rate_limiter_forgets_idle_connections() -> None:
    limiter = RateLimiter(rate=100, burst=10)
    busy = RateLimiter.PRUNE_ABOVE + 100
    for i in range(busy):  # all busy at once: all kept (the next prune waits for twice as many)
        limiter.allow(b"a%d" % i, 0.0)
    assert len(limiter) == busy
    for i in range(busy):  # later, as many others: the first ones' buckets are full, forgotten
        limiter.allow(b"b%d" % i, 10.0)
    assert len(limiter) <= busy
