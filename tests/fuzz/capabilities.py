"""RTP capability negotiation: shared/rtp/capabilities.py with arbitrary JSON-like input.

An input is either a JSON text {"mediaCodecs", "rtpCapabilities", "kind", "rtpParameters"}
(any part missing is taken from shapes.py) or bytes that steer edits of those valid shapes
(harness.mutate). Properties, stage by stage (room caps, join caps, producer mapping,
consumer parameters): each raises ProtocolError or returns a result that is consistent with
the room (payload types the room has, RTX right after its codec, extension ids the room
has, distinct 32-bit SSRCs, a consumer only with codecs the peer declared); no stage changes
its input; a result encodes to JSON.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from tureen.shared.errors import ProtocolError
from tureen.shared.rtp import capabilities as caps

from . import shapes
from .harness import Draw, json_text, mutate, over_the_wire
from .wire import NEST_LIMIT, depth


def _inputs(data: bytes) -> dict[str, Any]:
    base = {
        "mediaCodecs": shapes.MEDIA_CODECS,
        "rtpCapabilities": shapes.JOIN_CAPS,
        "kind": "video",
        "rtpParameters": shapes.VIDEO_PRODUCER,
    }
    if data[:1] == b"{":
        try:
            given = orjson.loads(data)
        except orjson.JSONDecodeError:
            given = None
        if isinstance(given, dict):
            return {key: given.get(key, value) for key, value in base.items()}
    draw = Draw(data)
    base["kind"], base["rtpParameters"] = draw.choice(
        (
            ("video", shapes.VIDEO_PRODUCER),
            ("video", shapes.SIMULCAST_PRODUCER),
            ("audio", shapes.AUDIO_PRODUCER),
        )
    )
    try:
        return over_the_wire(mutate(base, draw, steps=4))
    except ValueError:  # deeper than orjson decodes: such a message never reaches them
        return {}


def _call(fn: Any, *args: Any) -> Any:
    """fn(*args), or None for a ProtocolError; the arguments must come back unchanged."""
    data = [a for a in args if not callable(a)]
    before = json_text(data)  # not deepcopy: it recurses, and inputs nest 1000 levels
    try:
        result = fn(*args)
    except ProtocolError as exc:
        assert exc.code in ("bad_request", "unsupported") and exc.message
        result = None
    assert json_text(data) == before, f"{fn.__name__} changed its input"
    return result


def _check_room(room: dict[str, Any]) -> None:
    pts = [c["preferredPayloadType"] for c in room["codecs"]]
    assert len(set(pts)) == len(pts) and all(0 <= pt <= 127 for pt in pts)
    for codec, after in itertools.pairwise([*room["codecs"], None]):
        if codec["kind"] == "video" and codec["name"] != "rtx":
            assert after is not None and after["name"] == "rtx"
            assert after["parameters"]["apt"] == codec["preferredPayloadType"]


def fuzz_one(data: bytes) -> None:
    given = _inputs(data)
    room = _call(caps.room_rtp_capabilities, given.get("mediaCodecs"))
    if room is None:
        return
    _check_room(room)
    room_pts = {c["preferredPayloadType"]: c for c in room["codecs"]}
    room_ext_ids = {e["preferredId"] for e in room["headerExtensions"]}
    peer = _call(caps.check_peer_capabilities, room, given.get("rtpCapabilities"))
    if peer is not None:
        for codec in peer["codecs"]:
            assert caps.codec_matches(codec, room_pts[codec["preferredPayloadType"]])
        assert {e["preferredId"] for e in peer["headerExtensions"]} <= room_ext_ids
    kind = given.get("kind")
    mapping = _call(caps.producer_mapping, room, kind, given.get("rtpParameters"))
    if mapping is None:
        return
    for _, room_pt in mapping["payloadTypes"]:
        assert room_pt in room_pts and room_pts[room_pt]["kind"] == kind
    assert {room_id for _, room_id in mapping["headerExtensionIds"]} <= room_ext_ids
    assert len(set(mapping["ssrcs"])) == len(mapping["ssrcs"])
    assert all(type(s) is int and 0 <= s <= 0xFFFFFFFF for s in mapping["ssrcs"])
    shallow = depth(given) <= NEST_LIMIT
    if shallow:
        orjson.dumps(mapping)
    if peer is None:
        return
    ssrcs = itertools.count(1000)
    consumer = _call(
        caps.consumer_rtp_parameters, room, given["rtpParameters"], mapping, peer, lambda: next(ssrcs)
    )
    assert consumer is not None, "consumer_rtp_parameters refused what the earlier stages accepted"
    peer_pts = {c["preferredPayloadType"] for c in peer["codecs"]}
    assert {c["payloadType"] for c in consumer["codecs"]} <= peer_pts
    assert isinstance(caps.consumer_can_receive(consumer), bool)
    if shallow:
        orjson.dumps(consumer)
