"""Unit tests of tureen.shared.rtp.capabilities against the shapes real clients send.

The browser shapes are those Chromium sends (mediasoup-client 2.4.12,
Chrome70 handler); the join rtpCapabilities are what that client's ortc.js
(getExtendedRtpCapabilities + getRtpCapabilities) makes of the room below and Chrome's own
capabilities: room PTs and ids, rtcpFeedback intersected in Chrome's order, rtx where both
have it, no preferredEncrypt.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from tureen.shared.errors import BAD_REQUEST, UNSUPPORTED, ProtocolError
from tureen.shared.rtp.capabilities import (
    DYNAMIC_PAYLOAD_TYPES,
    check_peer_capabilities,
    codec_matches,
    consumer_can_receive,
    consumer_rtp_parameters,
    producer_mapping,
    room_rtp_capabilities,
)

AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
ORIENTATION = "urn:3gpp:video-orientation"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

H264_PARAMS = {"packetization-mode": 1, "profile-level-id": "42e01f", "level-asymmetry-allowed": 1}
MEDIA_CODECS = [
    {"kind": "audio", "name": "opus", "clockRate": 48000, "channels": 2,
     "parameters": {"useinbandfec": 1}},
    {"kind": "video", "name": "VP8", "clockRate": 90000},
    {"kind": "video", "name": "H264", "clockRate": 90000, "parameters": H264_PARAMS},
]  # fmt: skip

ROOM_FB = [
    {"type": "nack"},
    {"type": "nack", "parameter": "pli"},
    {"type": "ccm", "parameter": "fir"},
    {"type": "goog-remb"},
]
# Chrome lists goog-remb, transport-cc, ccm fir, nack, nack pli; the client keeps the room's
# entries in Chrome's order and drops transport-cc.
CHROME_FB = [
    {"type": "goog-remb"},
    {"type": "ccm", "parameter": "fir"},
    {"type": "nack"},
    {"type": "nack", "parameter": "pli"},
]

ROOM_EXTENSIONS = [
    ("audio", AUDIO_LEVEL, 1),
    ("video", TOFFSET, 2),
    ("audio", ABS_SEND_TIME, 3),
    ("video", ABS_SEND_TIME, 3),
    ("video", ORIENTATION, 4),
    ("audio", MID, 5),
    ("video", MID, 5),
    ("video", RID, 6),
]

CHROME_JOIN_CAPS: dict[str, Any] = {
    "codecs": [
        {"name": "opus", "mimeType": "audio/opus", "kind": "audio", "clockRate": 48000,
         "preferredPayloadType": 100, "channels": 2, "rtcpFeedback": [],
         "parameters": {"useinbandfec": 1}},
        {"name": "VP8", "mimeType": "video/VP8", "kind": "video", "clockRate": 90000,
         "preferredPayloadType": 101, "rtcpFeedback": CHROME_FB, "parameters": {}},
        {"name": "rtx", "mimeType": "video/rtx", "kind": "video", "clockRate": 90000,
         "preferredPayloadType": 102, "parameters": {"apt": 101}},
        {"name": "H264", "mimeType": "video/H264", "kind": "video", "clockRate": 90000,
         "preferredPayloadType": 103, "rtcpFeedback": CHROME_FB, "parameters": H264_PARAMS},
        {"name": "rtx", "mimeType": "video/rtx", "kind": "video", "clockRate": 90000,
         "preferredPayloadType": 104, "parameters": {"apt": 103}},
    ],
    "headerExtensions": [{"kind": k, "uri": u, "preferredId": i} for k, u, i in ROOM_EXTENSIONS],
    "fecMechanisms": [],
}  # fmt: skip

RTCP = {"cname": "Zx3bD9kqT0rQ1fYp", "reducedSize": True, "mux": True}
AUDIO_PRODUCER: dict[str, Any] = {
    "muxId": "0",
    "codecs": [
        {"name": "opus", "mimeType": "audio/opus", "clockRate": 48000, "payloadType": 111,
         "channels": 2, "rtcpFeedback": [], "parameters": {"useinbandfec": 1}},
    ],
    "headerExtensions": [
        {"uri": AUDIO_LEVEL, "id": 1}, {"uri": ABS_SEND_TIME, "id": 2}, {"uri": MID, "id": 4},
    ],
    "encodings": [{"ssrc": 3550384741}],
    "rtcp": RTCP,
}  # fmt: skip
VIDEO_PRODUCER: dict[str, Any] = {
    "muxId": "1",
    "codecs": [
        {"name": "VP8", "mimeType": "video/VP8", "clockRate": 90000, "payloadType": 96,
         "rtcpFeedback": CHROME_FB, "parameters": {}},
        {"name": "rtx", "mimeType": "video/rtx", "clockRate": 90000, "payloadType": 97,
         "parameters": {"apt": 96}},
    ],
    "headerExtensions": [
        {"uri": TOFFSET, "id": 14}, {"uri": ABS_SEND_TIME, "id": 2},
        {"uri": ORIENTATION, "id": 13}, {"uri": MID, "id": 4}, {"uri": RID, "id": 10},
    ],
    "encodings": [{"ssrc": 1111111111, "rtx": {"ssrc": 2222222222}}],
    "rtcp": RTCP,
}  # fmt: skip
SIMULCAST_PRODUCER: dict[str, Any] = {
    **VIDEO_PRODUCER,
    "encodings": [
        {"ssrc": 3000000000, "rtx": {"ssrc": 1500000000}, "profile": "low"},
        {"ssrc": 3000000001, "rtx": {"ssrc": 1500000001}, "profile": "medium"},
        {"ssrc": 3000000002, "rtx": {"ssrc": 1500000002}, "profile": "high"},
    ],
}


@pytest.fixture
def room() -> dict[str, Any]:
    return room_rtp_capabilities(copy.deepcopy(MEDIA_CODECS))


@pytest.fixture
def peer(room: dict[str, Any]) -> dict[str, Any]:
    return check_peer_capabilities(room, copy.deepcopy(CHROME_JOIN_CAPS))


def ssrc_source(start: int = 40000000):
    return itertools.count(start).__next__


DELETE = object()


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of base with the item at 'a.0.b' replaced (value DELETE removes it)."""
    result = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = result
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    key: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return result


@contextlib.contextmanager
def raises(code: str, *fragments: str) -> Iterator[Any]:
    """A ProtocolError with this code whose message holds every fragment."""
    with pytest.raises(ProtocolError) as info:
        yield info
    assert info.value.code == code, info.value
    for fragment in fragments:
        assert fragment in info.value.message, (fragment, info.value.message)


# --- room_rtp_capabilities -------------------------------------------------------------------


def test_room_opus_vp8_h264_payload_types(room):
    assert [(c["mimeType"], c["preferredPayloadType"]) for c in room["codecs"]] == [
        ("audio/opus", 100),
        ("video/VP8", 101),
        ("video/rtx", 102),
        ("video/H264", 103),
        ("video/rtx", 104),
    ]
    assert [c["parameters"].get("apt") for c in room["codecs"]] == [None, None, 101, None, 103]


def test_room_codec_shapes_are_v2s(room):
    opus, vp8, vp8_rtx, h264, _ = room["codecs"]
    assert opus == {
        "kind": "audio", "name": "opus", "mimeType": "audio/opus", "clockRate": 48000,
        "channels": 2, "rtcpFeedback": [], "parameters": {"useinbandfec": 1},
        "preferredPayloadType": 100,
    }  # fmt: skip
    assert vp8 == {
        "kind": "video", "name": "VP8", "mimeType": "video/VP8", "clockRate": 90000,
        "rtcpFeedback": ROOM_FB, "parameters": {}, "preferredPayloadType": 101,
    }  # fmt: skip
    assert vp8_rtx == {
        "kind": "video", "name": "rtx", "mimeType": "video/rtx", "preferredPayloadType": 102,
        "clockRate": 90000, "parameters": {"apt": 101},
    }  # fmt: skip
    assert h264["parameters"] == H264_PARAMS


def test_room_header_extensions_and_fec(room):
    assert room["headerExtensions"] == [
        {"kind": k, "uri": u, "preferredId": i, "preferredEncrypt": False}
        for k, u, i in ROOM_EXTENSIONS
    ]
    assert room["fecMechanisms"] == []
    assert set(room) == {"codecs", "headerExtensions", "fecMechanisms"}


def test_dynamic_payload_type_order():
    assert DYNAMIC_PAYLOAD_TYPES[:3] == (100, 101, 102)
    assert DYNAMIC_PAYLOAD_TYPES[27:30] == (127, 96, 97)
    assert DYNAMIC_PAYLOAD_TYPES[31:33] == (99, 77)
    assert DYNAMIC_PAYLOAD_TYPES[-1] == 71
    assert len(DYNAMIC_PAYLOAD_TYPES) == len(set(DYNAMIC_PAYLOAD_TYPES)) == 88


def _codec(kind: str, name: str, clock: int, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "name": name, "clockRate": clock, **extra}


OPUS = _codec("audio", "opus", 48000, channels=2)
VP8 = _codec("video", "VP8", 90000)


@pytest.mark.parametrize(
    ("media_codecs", "expected"),
    [
        # static PTs take no dynamic one
        ([_codec("audio", "PCMU", 8000), OPUS], [("audio/PCMU", 0), ("audio/opus", 100)]),
        ([_codec("audio", "PCMA", 8000)], [("audio/PCMA", 8)]),
        ([_codec("audio", "G722", 8000)], [("audio/G722", 9)]),
        ([_codec("audio", "CN", 16000), _codec("audio", "ISAC", 16000)],
         [("audio/CN", 13), ("audio/ISAC", 101 - 1)]),
        # name in any case; the room uses the table's spelling
        ([_codec("video", "vp8", 90000)], [("video/VP8", 100), ("video/rtx", 101)]),
        ([_codec("video", "VP9", 90000), VP8],
         [("video/VP9", 100), ("video/rtx", 101), ("video/VP8", 102), ("video/rtx", 103)]),
        ([_codec("video", "H265", 90000)], [("video/H265", 100), ("video/rtx", 101)]),
        # H264 packetization-mode 0 (or missing) and 1 are two codecs
        ([_codec("video", "H264", 90000),
          _codec("video", "H264", 90000, parameters={"packetization-mode": 1})],
         [("video/H264", 100), ("video/rtx", 101), ("video/H264", 102), ("video/rtx", 103)]),
        ([_codec("audio", "telephone-event", 8000), _codec("audio", "SILK", 24000)],
         [("audio/telephone-event", 100), ("audio/SILK", 101)]),
        ([_codec("audio", "iLBC", 8000, channels=1)], [("audio/iLBC", 100)]),
        # an app's mimeType is ignored, as by v2
        ([_codec("video", "VP8", 90000, mimeType="video/H264")],
         [("video/VP8", 100), ("video/rtx", 101)]),
    ],
)  # fmt: skip
def test_room_payload_type_allocation(media_codecs, expected):
    caps = room_rtp_capabilities(media_codecs)
    assert [(c["mimeType"], c["preferredPayloadType"]) for c in caps["codecs"]] == expected


def test_room_h264_modes_keep_their_parameters():
    caps = room_rtp_capabilities(
        [
            _codec("video", "H264", 90000, parameters={"profile-level-id": "42e01f"}),
            _codec("video", "H264", 90000, parameters={"packetization-mode": 1}),
        ]
    )
    assert caps["codecs"][0]["parameters"] == {
        "packetization-mode": 0,
        "profile-level-id": "42e01f",
    }
    assert caps["codecs"][2]["parameters"] == {"packetization-mode": 1}


def test_room_audio_channels_default_to_one_and_video_has_none():
    caps = room_rtp_capabilities([_codec("audio", "PCMU", 8000), VP8])
    assert caps["codecs"][0]["channels"] == 1
    assert "channels" not in caps["codecs"][1] and "channels" not in caps["codecs"][2]


def test_room_every_supported_codec_at_once():
    rows = [("audio", "opus", 48000, 2), ("audio", "PCMU", 8000, 1), ("audio", "PCMA", 8000, 1),
            ("audio", "ISAC", 32000, 1), ("audio", "ISAC", 16000, 1), ("audio", "G722", 8000, 1),
            ("audio", "iLBC", 8000, 1), ("audio", "SILK", 24000, 1), ("audio", "SILK", 16000, 1),
            ("audio", "SILK", 12000, 1), ("audio", "SILK", 8000, 1), ("audio", "CN", 32000, 1),
            ("audio", "CN", 16000, 1), ("audio", "CN", 8000, 1),
            ("audio", "telephone-event", 48000, 1), ("audio", "telephone-event", 32000, 1),
            ("audio", "telephone-event", 16000, 1), ("audio", "telephone-event", 8000, 1),
            ("video", "VP8", 90000, None), ("video", "VP9", 90000, None),
            ("video", "H264", 90000, None), ("video", "H265", 90000, None)]  # fmt: skip
    codecs = [_codec(k, n, c, **({"channels": ch} if ch else {})) for k, n, c, ch in rows]
    codecs.append(_codec("video", "H264", 90000, parameters={"packetization-mode": 1}))
    caps = room_rtp_capabilities(codecs)
    pts = [c["preferredPayloadType"] for c in caps["codecs"]]
    assert len(pts) == len(set(pts) | {13}) + 2  # CN shares the static PT 13 at three rates
    dynamic = [pt for pt in pts if pt not in (0, 8, 9, 13)]
    assert dynamic == list(range(100, 100 + len(dynamic)))


def test_room_result_is_not_shared_between_rooms():
    first = room_rtp_capabilities([VP8])
    first["codecs"][0]["rtcpFeedback"].clear()
    first["codecs"][0]["parameters"]["x"] = 1
    first["headerExtensions"][0]["preferredId"] = 99
    second = room_rtp_capabilities([VP8])
    assert second["codecs"][0]["rtcpFeedback"] == ROOM_FB
    assert second["codecs"][0]["parameters"] == {}
    assert second["headerExtensions"][0]["preferredId"] == 1


def test_room_does_not_touch_the_apps_list():
    media = copy.deepcopy(MEDIA_CODECS)
    caps = room_rtp_capabilities(media)
    caps["codecs"][0]["parameters"]["useinbandfec"] = 0
    assert media == MEDIA_CODECS


@pytest.mark.parametrize(
    ("media_codecs", "code", "fragment"),
    [
        (None, BAD_REQUEST, "must be a list"),
        ({"kind": "audio"}, BAD_REQUEST, "must be a list"),
        ("opus", BAD_REQUEST, "must be a list"),
        ([], BAD_REQUEST, "cannot be empty"),
        (["opus"], BAD_REQUEST, "mediaCodecs[0] must be an object"),
        ([OPUS, {"name": "VP8", "clockRate": 90000}], BAD_REQUEST, "mediaCodecs[1].kind"),
        ([_codec("data", "VP8", 90000)], BAD_REQUEST, "'audio' or 'video'"),
        ([{"kind": "video", "clockRate": 90000}], BAD_REQUEST, "mediaCodecs[0].name"),
        ([_codec("video", "", 90000)], BAD_REQUEST, ".name"),
        ([_codec("video", 8, 90000)], BAD_REQUEST, ".name"),
        ([{"kind": "video", "name": "VP8"}], BAD_REQUEST, ".clockRate"),
        ([_codec("video", "VP8", "90000")], BAD_REQUEST, ".clockRate"),
        ([_codec("video", "VP8", 90000.0)], BAD_REQUEST, ".clockRate"),
        ([_codec("video", "VP8", True)], BAD_REQUEST, ".clockRate"),
        ([_codec("video", "VP8", 0)], BAD_REQUEST, ".clockRate"),
        ([_codec("audio", "opus", 48000, channels="2")], BAD_REQUEST, ".channels"),
        ([_codec("audio", "opus", 48000, channels=0)], BAD_REQUEST, ".channels"),
        ([_codec("video", "VP8", 90000, parameters=[])], BAD_REQUEST, ".parameters"),
        ([_codec("video", "AV1", 90000)], UNSUPPORTED, "video/AV1 90000 is not supported"),
        ([_codec("video", "VP8", 48000)], UNSUPPORTED, "VP8"),
        ([_codec("audio", "VP8", 90000)], UNSUPPORTED, "audio/VP8"),
        ([_codec("audio", "opus", 48000)], UNSUPPORTED, "opus"),  # opus needs channels 2
        ([_codec("audio", "opus", 48000, channels=1)], UNSUPPORTED, "opus"),
        ([_codec("audio", "PCMU", 8000, channels=2)], UNSUPPORTED, "audio/PCMU 8000/2"),
        ([_codec("audio", "opus", 44100, channels=2)], UNSUPPORTED, "44100"),
        ([_codec("video", "H264", 90000, parameters={"packetization-mode": 2})], UNSUPPORTED,
         "H264"),
        ([OPUS, VP8, _codec("video", "vp8", 90000)], BAD_REQUEST, "mediaCodecs[2]: codec"),
        ([_codec("video", "H264", 90000),
          _codec("video", "H264", 90000, parameters={"packetization-mode": 0})], BAD_REQUEST,
         "listed twice"),
    ],
)  # fmt: skip
def test_room_errors(media_codecs, code, fragment):
    with raises(code, fragment):
        room_rtp_capabilities(media_codecs)


# --- codec_matches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({"kind": "audio", "name": "opus", "clockRate": 48000, "channels": 2},
         {"mimeType": "audio/OPUS", "clockRate": 48000, "channels": 2}, True),
        ({"mimeType": "audio/opus", "clockRate": 48000},
         {"kind": "audio", "name": "opus", "clockRate": 48000, "channels": 2}, False),
        ({"mimeType": "audio/PCMU", "clockRate": 8000},
         {"kind": "audio", "name": "PCMU", "clockRate": 8000, "channels": 1}, True),
        ({"kind": "video", "name": "VP8", "clockRate": 90000},
         {"kind": "audio", "name": "VP8", "clockRate": 90000}, False),
        ({"name": "VP8", "clockRate": 90000}, {"kind": "video", "name": "vp8", "clockRate": 90000},
         True),
        ({"name": "VP8", "clockRate": 90000}, {"name": "VP9", "clockRate": 90000}, False),
        ({"name": "VP8", "clockRate": 90000}, {"name": "VP8", "clockRate": 48000}, False),
        ({"name": "H264", "clockRate": 90000},
         {"name": "H264", "clockRate": 90000, "parameters": {"packetization-mode": 0}}, True),
        ({"name": "H264", "clockRate": 90000, "parameters": {"packetization-mode": 1}},
         {"name": "h264", "clockRate": 90000, "parameters": {"packetization-mode": 0}}, False),
        ({"name": "H264", "clockRate": 90000, "parameters": {"packetization-mode": 1}},
         {"name": "H264", "clockRate": 90000, "parameters": {"packetization-mode": 1}}, True),
        ({"name": "rtx", "mimeType": "video/rtx", "clockRate": 90000},
         {"kind": "video", "name": "rtx", "clockRate": 90000, "parameters": {"apt": 101}}, True),
    ],
)  # fmt: skip
def test_codec_matches(a, b, expected):
    assert codec_matches(a, b) is expected
    assert codec_matches(b, a) is expected


# --- check_peer_capabilities -----------------------------------------------------------------


def test_chrome_join_capabilities_are_accepted_and_normalized(room, peer):
    # The client's rtx entries have no rtcpFeedback and keep none (v2 passes it on as is).
    assert peer["codecs"] == CHROME_JOIN_CAPS["codecs"]
    assert peer["headerExtensions"] == CHROME_JOIN_CAPS["headerExtensions"]
    assert peer["fecMechanisms"] == []


def test_peer_capabilities_are_a_copy(room):
    caps = copy.deepcopy(CHROME_JOIN_CAPS)
    peer = check_peer_capabilities(room, caps)
    caps["codecs"][1]["rtcpFeedback"].clear()
    caps["codecs"][3]["parameters"].clear()
    assert peer["codecs"][1]["rtcpFeedback"] == CHROME_FB
    assert peer["codecs"][3]["parameters"] == H264_PARAMS
    peer["codecs"][3]["parameters"]["x"] = 1
    assert room["codecs"][3]["parameters"] == H264_PARAMS


@pytest.mark.parametrize(
    ("peer_caps", "expected_pts", "expected_ext_ids"),
    [
        ({"codecs": []}, [], []),  # a peer that can receive nothing still joins (v2 too)
        ({"codecs": [CHROME_JOIN_CAPS["codecs"][0]], "headerExtensions": None}, [100], []),
        # a Firefox-like peer without rtx
        ({"codecs": [CHROME_JOIN_CAPS["codecs"][i] for i in (0, 1, 3)]}, [100, 101, 103], []),
        # the same codec twice is kept once
        ({"codecs": [CHROME_JOIN_CAPS["codecs"][1]] * 2}, [101], []),
        # name and kind without mimeType, as some hand-written clients send
        ({"codecs": [{"kind": "video", "name": "vp8", "clockRate": 90000,
                      "preferredPayloadType": 101}]}, [101], []),
        ({"codecs": [], "headerExtensions": [{"uri": TOFFSET, "preferredId": 2}]}, [], [2]),
        # a kind-less extension stands for every kind the room lists it for
        ({"codecs": [], "headerExtensions": [{"uri": ABS_SEND_TIME, "preferredId": 3}]},
         [], [3, 3]),
    ],
)  # fmt: skip
def test_peer_capabilities_subsets(room, peer_caps, expected_pts, expected_ext_ids):
    peer = check_peer_capabilities(room, peer_caps)
    assert [c["preferredPayloadType"] for c in peer["codecs"]] == expected_pts
    assert [e["preferredId"] for e in peer["headerExtensions"]] == expected_ext_ids
    for codec in peer["codecs"]:
        assert {"kind", "name", "mimeType", "clockRate", "parameters"} <= set(codec)
        assert ("rtcpFeedback" in codec) == ("rtcpFeedback" in next(
            c for c in peer_caps["codecs"] if c["preferredPayloadType"] == codec["preferredPayloadType"]))


def test_peer_name_and_mimetype_take_the_rooms_spelling(room):
    caps = {"codecs": [{"mimeType": "VIDEO/vp8", "kind": "video", "clockRate": 90000,
                        "preferredPayloadType": 101}]}  # fmt: skip
    peer = check_peer_capabilities(room, caps)
    assert peer["codecs"][0]["mimeType"] == "video/VP8"
    assert peer["codecs"][0]["name"] == "VP8"


def _peer_codec(index: int, **changes: Any) -> dict[str, Any]:
    codec = copy.deepcopy(CHROME_JOIN_CAPS["codecs"][index])
    codec.update(changes)
    return {"codecs": [codec]}


def _peer_ext(**ext: Any) -> dict[str, Any]:
    return {"codecs": [], "headerExtensions": [ext]}


@pytest.mark.parametrize(
    ("peer_caps", "code", "fragments"),
    [
        (None, BAD_REQUEST, ["rtpCapabilities must be an object"]),
        ([], BAD_REQUEST, ["rtpCapabilities must be an object"]),
        ({}, BAD_REQUEST, ["rtpCapabilities.codecs must be a list"]),
        ({"codecs": {}}, BAD_REQUEST, ["codecs must be a list"]),
        ({"codecs": [], "headerExtensions": {}}, BAD_REQUEST, ["headerExtensions must be a list"]),
        ({"codecs": ["opus"]}, BAD_REQUEST, ["codecs[0] must be an object"]),
        ({"codecs": [{"clockRate": 48000, "preferredPayloadType": 100}]}, BAD_REQUEST,
         ["codecs[0] needs a mimeType"]),
        (_peer_codec(0, mimeType="text/opus", kind="text"), BAD_REQUEST, ["needs a mimeType"]),
        (_peer_codec(1, kind="audio"), BAD_REQUEST, ["of its kind"]),
        (_peer_codec(0, preferredPayloadType="100"), BAD_REQUEST, ["(opus)", "preferredPayloadType"]),
        (_peer_codec(0, preferredPayloadType=None), BAD_REQUEST, ["preferredPayloadType"]),
        (_peer_codec(0, preferredPayloadType=True), BAD_REQUEST, ["preferredPayloadType"]),
        (_peer_codec(0, preferredPayloadType=128), BAD_REQUEST, ["0..127"]),
        (_peer_codec(0, clockRate="48000"), BAD_REQUEST, ["(opus).clockRate"]),
        (_peer_codec(0, channels=[2]), BAD_REQUEST, ["(opus).channels"]),
        (_peer_codec(1, parameters="x"), BAD_REQUEST, ["(VP8).parameters"]),
        (_peer_codec(1, rtcpFeedback={}), BAD_REQUEST, ["rtcpFeedback must be a list"]),
        (_peer_codec(1, rtcpFeedback=[{"parameter": "pli"}]), BAD_REQUEST, ["rtcpFeedback must be a list"]),
        (_peer_codec(1, rtcpFeedback=[{"type": "nack", "parameter": 1}]), BAD_REQUEST,
         ["rtcpFeedback must be a list"]),
        # mismatches name the codec
        (_peer_codec(1, preferredPayloadType=103), UNSUPPORTED,
         ["unsupported codec video/VP8 90000", "preferredPayloadType 103"]),
        (_peer_codec(1, preferredPayloadType=96), UNSUPPORTED, ["video/VP8", "96"]),
        (_peer_codec(1, mimeType="video/VP9", name="VP9"), UNSUPPORTED, ["video/VP9"]),
        (_peer_codec(3, parameters={"packetization-mode": 0}), UNSUPPORTED, ["video/H264"]),
        (_peer_codec(3, parameters={}), UNSUPPORTED, ["video/H264"]),
        (_peer_codec(0, channels=1), UNSUPPORTED, ["audio/opus 48000"]),
        (_peer_codec(0, clockRate=44100), UNSUPPORTED, ["audio/opus 44100"]),
        (_peer_codec(2, clockRate=48000), UNSUPPORTED, ["video/rtx 48000"]),
        (_peer_codec(2, preferredPayloadType=101), UNSUPPORTED, ["video/rtx", "101"]),
        (_peer_ext(uri=TOFFSET), BAD_REQUEST, ["headerExtensions[0]", "preferredId"]),
        (_peer_ext(uri=TOFFSET, preferredId="2"), BAD_REQUEST, ["preferredId"]),
        (_peer_ext(preferredId=2), BAD_REQUEST, ["headerExtensions[0] needs a string uri"]),
        (_peer_ext(uri=TOFFSET, preferredId=14), UNSUPPORTED, [TOFFSET, "preferredId 14"]),
        (_peer_ext(uri=TRANSPORT_CC, preferredId=7), UNSUPPORTED, [TRANSPORT_CC]),
        (_peer_ext(kind="audio", uri=TOFFSET, preferredId=2), UNSUPPORTED, ["kind audio"]),
    ],
)  # fmt: skip
def test_peer_capabilities_errors(room, peer_caps, code, fragments):
    with raises(code, *fragments):
        check_peer_capabilities(room, peer_caps)


def test_rtx_is_matched_by_payload_type_only(room):
    # PT 104 is H264's rtx; an rtx entry at 104 with another apt still matches it: all room
    # rtx codecs are video/rtx 90000, so only the PT decides, as in v2.
    caps = _peer_codec(2, preferredPayloadType=104, parameters={"apt": 101})
    assert check_peer_capabilities(room, caps)["codecs"][0]["preferredPayloadType"] == 104


# --- producer_mapping ------------------------------------------------------------------------


def test_browser_audio_producer_mapping(room):
    assert producer_mapping(room, "audio", copy.deepcopy(AUDIO_PRODUCER)) == {
        "payloadTypes": [[111, 100]],
        "headerExtensionIds": [[1, 1], [2, 3], [4, 5]],
        "codecs": [
            {"payloadType": 100, "mimeType": "audio/opus", "clockRate": 48000,
             "rtxPayloadType": None, "nack": False},
        ],
        "streams": [{"ssrc": 3550384741, "rtxSsrc": None, "profile": "default"}],
        "ssrcs": [3550384741],
    }  # fmt: skip


def test_browser_video_producer_mapping(room):
    assert producer_mapping(room, "video", copy.deepcopy(VIDEO_PRODUCER)) == {
        "payloadTypes": [[96, 101], [97, 102]],
        "headerExtensionIds": [[14, 2], [2, 3], [13, 4], [4, 5], [10, 6]],
        "codecs": [
            {"payloadType": 101, "mimeType": "video/VP8", "clockRate": 90000,
             "rtxPayloadType": 102, "nack": True},
        ],
        "streams": [{"ssrc": 1111111111, "rtxSsrc": 2222222222, "profile": "default"}],
        "ssrcs": [1111111111, 2222222222],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("feedback", "nack"),
    [
        ([{"type": "nack"}], True),
        # v2 (Producer.cpp) takes any entry of type nack, "nack pli" included
        ([{"type": "nack", "parameter": "pli"}], True),
        ([{"type": "goog-remb"}, {"type": "ccm", "parameter": "fir"}], False),
        ([], False),
        (None, False),
    ],
)
def test_the_worker_nacks_the_sender_only_where_its_codec_lists_nack(room, feedback, nack):
    params = _video(codecs__0__rtcpFeedback=feedback)
    assert producer_mapping(room, "video", params)["codecs"][0]["nack"] is nack


def test_a_producer_codecs_malformed_rtcp_feedback_is_refused(room):
    with raises(BAD_REQUEST, "codecs[0] (VP8).rtcpFeedback must be a list"):
        producer_mapping(room, "video", _video(codecs__0__rtcpFeedback=[{"type": 3}]))


def test_browser_simulcast_producer_mapping(room):
    mapping = producer_mapping(room, "video", copy.deepcopy(SIMULCAST_PRODUCER))
    s, r = 3000000000, 1500000000
    assert mapping["streams"] == [
        {"ssrc": s, "rtxSsrc": r, "profile": "low"},
        {"ssrc": s + 1, "rtxSsrc": r + 1, "profile": "medium"},
        {"ssrc": s + 2, "rtxSsrc": r + 2, "profile": "high"},
    ]
    assert mapping["ssrcs"] == [s, r, s + 1, r + 1, s + 2, r + 2]


def test_simulcast_ssrcs_past_2_32_are_refused(room):
    # mediasoup-client computes S+1, S+2 without wrapping (its simulcast code); such SSRCs cannot
    # be on the wire, so the producer is refused rather than half-forwarded.
    params = copy.deepcopy(SIMULCAST_PRODUCER)
    for index, encoding in enumerate(params["encodings"]):
        encoding["ssrc"] = 2**32 - 2 + index
    with raises(BAD_REQUEST, "encodings[2].ssrc", "not 4294967296"):
        producer_mapping(room, "video", params)


def _video(**changes: Any) -> dict[str, Any]:
    params = copy.deepcopy(VIDEO_PRODUCER)
    for path, value in changes.items():
        params = with_(params, path.replace("__", "."), value)
    return params


H264_CODECS = [
    {"name": "H264", "mimeType": "video/H264", "clockRate": 90000, "payloadType": 107,
     "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f"}},
    {"name": "rtx", "mimeType": "video/rtx", "clockRate": 90000, "payloadType": 99,
     "parameters": {"apt": 107}},
]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "key", "expected"),
    [
        (_video(codecs=H264_CODECS), "payloadTypes", [[107, 103], [99, 104]]),
        (_video(codecs=H264_CODECS[:1]), "codecs",
         [{"payloadType": 103, "mimeType": "video/H264", "clockRate": 90000,
           "rtxPayloadType": 104, "nack": False}]),
        # no RTX from the producer: media PT only; the room RTX is still named for consumers
        (_video(codecs=VIDEO_PRODUCER["codecs"][:1], encodings=[{"ssrc": 7}]), "payloadTypes",
         [[96, 101]]),
        (_video(codecs__1__name="RTX"), "payloadTypes", [[96, 101], [97, 102]]),
        # rtx listed before its media codec
        (_video(codecs=VIDEO_PRODUCER["codecs"][::-1]), "payloadTypes", [[96, 101], [97, 102]]),
        # two media codecs, VP8 and H264
        (_video(codecs=VIDEO_PRODUCER["codecs"] + H264_CODECS), "payloadTypes",
         [[96, 101], [107, 103], [97, 102], [99, 104]]),
        (_video(codecs__0__name="vp8", codecs__0__mimeType="VIDEO/vp8"), "payloadTypes",
         [[96, 101], [97, 102]]),
        # extensions the room lacks, or has for the other kind only, are left out
        (_video(headerExtensions=[{"uri": TRANSPORT_CC, "id": 3}, {"uri": AUDIO_LEVEL, "id": 1},
                                  {"uri": TOFFSET, "id": 14}]),
         "headerExtensionIds", [[14, 2]]),
        (_video(headerExtensions=DELETE), "headerExtensionIds", []),
        (_video(headerExtensions=None), "headerExtensionIds", []),
        (_video(encodings__0__rtx=DELETE), "streams",
         [{"ssrc": 1111111111, "rtxSsrc": None, "profile": "default"}]),
        (_video(encodings__0__rtx={}), "ssrcs", [1111111111]),
        (_video(encodings__0__codecPayloadType=96), "ssrcs", [1111111111, 2222222222]),
        # two encodings: one may go without a profile ('default')
        (_video(encodings=[{"ssrc": 1}, {"ssrc": 2, "profile": "high"}]), "streams",
         [{"ssrc": 1, "rtxSsrc": None, "profile": "default"},
          {"ssrc": 2, "rtxSsrc": None, "profile": "high"}]),
        (_video(encodings=[{"ssrc": 2**32 - 1}]), "ssrcs", [2**32 - 1]),
        (_video(muxId=DELETE, rtcp=DELETE), "ssrcs", [1111111111, 2222222222]),
        (_video(rtcp={}), "ssrcs", [1111111111, 2222222222]),
    ],
)  # fmt: skip
def test_video_producer_mapping_variants(room, params, key, expected):
    assert producer_mapping(room, "video", params)[key] == expected


def test_producer_mapping_does_not_touch_its_input(room):
    params = copy.deepcopy(SIMULCAST_PRODUCER)
    producer_mapping(room, "video", params)
    assert params == SIMULCAST_PRODUCER


def test_producer_codec_the_room_lacks_is_unsupported():
    audio_room = room_rtp_capabilities([OPUS])
    with raises(UNSUPPORTED, "wrong RTP parameters: unsupported codec video/VP8 90000",
                "payloadType 96"):  # fmt: skip
        producer_mapping(audio_room, "video", copy.deepcopy(VIDEO_PRODUCER))


@pytest.mark.parametrize(
    ("kind", "code", "fragment"),
    [
        ("depth", UNSUPPORTED, "kind 'depth' is not supported"),
        ("data", BAD_REQUEST, "unsupported kind: 'data'"),
        (None, BAD_REQUEST, "unsupported kind: None"),
        ("Video", BAD_REQUEST, "unsupported kind: 'Video'"),
    ],
)
def test_producer_kind_errors(room, kind, code, fragment):
    with raises(code, fragment):
        producer_mapping(room, kind, copy.deepcopy(VIDEO_PRODUCER))


AUDIO_RTX = {"name": "rtx", "mimeType": "audio/rtx", "clockRate": 48000, "payloadType": 112,
             "parameters": {"apt": 111}}  # fmt: skip
VP8_AGAIN = {"name": "VP8", "mimeType": "video/VP8", "clockRate": 90000, "payloadType": 98}
RTX_AGAIN = {"name": "rtx", "mimeType": "video/rtx", "clockRate": 90000, "payloadType": 98,
             "parameters": {"apt": 96}}  # fmt: skip
LOW, MEDIUM = {"ssrc": 1, "profile": "low"}, {"ssrc": 2, "profile": "medium"}


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        (None, BAD_REQUEST, "rtpParameters must be an object"),
        ([], BAD_REQUEST, "rtpParameters must be an object"),
        (_video(muxId=""), BAD_REQUEST, "muxId"),
        (_video(muxId=1), BAD_REQUEST, "muxId"),
        (_video(rtcp="cname"), BAD_REQUEST, "rtcp must be an object"),
        (_video(rtcp__cname=""), BAD_REQUEST, "rtcp.cname"),
        (_video(codecs=DELETE), BAD_REQUEST, "codecs must be a non-empty list"),
        (_video(codecs=[]), BAD_REQUEST, "codecs must be a non-empty list"),
        (_video(codecs={}), BAD_REQUEST, "codecs must be a non-empty list"),
        (_video(codecs__0="VP8"), BAD_REQUEST, "codecs[0] must be an object"),
        (_video(codecs__0__name=DELETE), BAD_REQUEST, "codecs[0] needs a name and a mimeType"),
        (_video(codecs__0__mimeType=DELETE), BAD_REQUEST, "codecs[0] needs a name and a mimeType"),
        (_video(codecs__0__name=""), BAD_REQUEST, "needs a name"),
        (_video(codecs__0__mimeType="audio/VP8"), BAD_REQUEST, "does not fit a video codec"),
        (_video(codecs__0__mimeType="video/VP9"), BAD_REQUEST, "does not fit"),
        (_video(codecs__0__payloadType=DELETE), BAD_REQUEST, "codecs[0] (VP8) needs an integer payloadType"),
        (_video(codecs__0__payloadType="96"), BAD_REQUEST, "payloadType 0..127, not '96'"),
        (_video(codecs__0__payloadType=128), BAD_REQUEST, "payloadType 0..127"),
        (_video(codecs__0__payloadType=-1), BAD_REQUEST, "payloadType 0..127"),
        (_video(codecs__0__payloadType=False), BAD_REQUEST, "payloadType 0..127"),
        (_video(codecs__1__payloadType=96), BAD_REQUEST, "duplicated codec payloadType 96"),
        (_video(codecs__0__clockRate=DELETE), BAD_REQUEST, "codecs[0] (VP8).clockRate"),
        (_video(codecs__0__clockRate="90000"), BAD_REQUEST, ".clockRate"),
        (_video(codecs__0__channels="1"), BAD_REQUEST, "(VP8).channels"),
        (_video(codecs__0__parameters=[]), BAD_REQUEST, "(VP8).parameters"),
        (_video(codecs=VIDEO_PRODUCER["codecs"][1:]), BAD_REQUEST, "no media codecs"),
        (_video(codecs__0__clockRate=48000), UNSUPPORTED, "unsupported codec video/VP8 48000"),
        (_video(codecs__0__name="VP9", codecs__0__mimeType="video/VP9"), UNSUPPORTED,
         "unsupported codec video/VP9"),
        (_video(codecs=[{**H264_CODECS[0], "parameters": {}}]), UNSUPPORTED, "video/H264"),
        (_video(codecs=VIDEO_PRODUCER["codecs"] + [VP8_AGAIN]), BAD_REQUEST,
         "two codecs map to room codec video/VP8"),
        (_video(codecs__1__parameters={}), BAD_REQUEST, "no media codec found for RTX payloadType 97"),
        (_video(codecs__1__parameters=DELETE), BAD_REQUEST, "RTX payloadType 97 (apt None)"),
        (_video(codecs__1__parameters__apt=95), BAD_REQUEST, "RTX payloadType 97 (apt 95)"),
        (_video(codecs__1__parameters__apt="96"), BAD_REQUEST, "(apt '96')"),
        (_video(codecs__1__parameters__apt=97), BAD_REQUEST, "RTX payloadType 97 (apt 97)"),
        (_video(codecs=VIDEO_PRODUCER["codecs"] + [RTX_AGAIN]), BAD_REQUEST,
         "two RTX codecs for payloadType 96"),
        (_video(headerExtensions={}), BAD_REQUEST, "headerExtensions must be a list"),
        (_video(headerExtensions__0="toffset"), BAD_REQUEST, "headerExtensions[0] needs a string uri"),
        (_video(headerExtensions__1__uri=""), BAD_REQUEST, "headerExtensions[1] needs a string uri"),
        (_video(headerExtensions__0__id=DELETE), BAD_REQUEST, "needs an integer id 1..255"),
        (_video(headerExtensions__0__id=0), BAD_REQUEST, f"({TOFFSET}) needs an integer id"),
        (_video(headerExtensions__0__id=256), BAD_REQUEST, "id 1..255"),
        (_video(headerExtensions__0__id="14"), BAD_REQUEST, "id 1..255"),
        (_video(headerExtensions__0__id=2), BAD_REQUEST, "duplicated header extension id 2"),
        (_video(encodings=DELETE), BAD_REQUEST, "encodings must be a non-empty list"),
        (_video(encodings=[]), BAD_REQUEST, "encodings must be a non-empty list"),
        (_video(encodings={"ssrc": 1}), BAD_REQUEST, "encodings must be a non-empty list"),
        (_video(encodings=[1]), BAD_REQUEST, "encodings[0] must be an object"),
        (_video(encodings__0__ssrc=DELETE), BAD_REQUEST, "encodings[0].ssrc must be an integer"),
        (_video(encodings__0__ssrc=0), BAD_REQUEST, "encodings[0].ssrc"),
        (_video(encodings__0__ssrc=2**32), BAD_REQUEST, "1..2^32-1, not 4294967296"),
        (_video(encodings__0__ssrc=-5), BAD_REQUEST, "encodings[0].ssrc"),
        (_video(encodings__0__ssrc="1111111111"), BAD_REQUEST, "encodings[0].ssrc"),
        (_video(encodings__0__ssrc=1.5), BAD_REQUEST, "encodings[0].ssrc"),
        (_video(encodings__0__ssrc=True), BAD_REQUEST, "encodings[0].ssrc"),
        (_video(encodings__0__rtx=5), BAD_REQUEST, "encodings[0].rtx must be an object"),
        (_video(encodings__0__rtx__ssrc="2"), BAD_REQUEST, "encodings[0].rtx.ssrc"),
        (_video(encodings__0__rtx__ssrc=1111111111), BAD_REQUEST, "duplicated SSRC"),
        (_video(encodings__0__codecPayloadType=97), BAD_REQUEST,
         "encodings[0].codecPayloadType 97 is not a media codec"),
        (_video(encodings__0__codecPayloadType=100), BAD_REQUEST, "codecPayloadType 100"),
        # profiles (PROTOCOL "Profiles", v2 worker RtpEncodingParameters / ValidateEncodings)
        (_video(encodings__0__profile="low"), BAD_REQUEST, "single encoding must not carry a profile"),
        (_video(encodings__0__profile="default"), BAD_REQUEST, "not 'default'"),
        (_video(encodings__0__profile="none"), BAD_REQUEST, "not 'none'"),
        (_video(encodings=[LOW, {"ssrc": 2, "profile": "ultra"}]), BAD_REQUEST,
         "encodings[1].profile must be 'low', 'medium' or 'high', not 'ultra'"),
        (_video(encodings=[LOW, {"ssrc": 2, "profile": 1}]), BAD_REQUEST, "encodings[1].profile"),
        (_video(encodings=[LOW, {"ssrc": 2, "profile": "low"}]), BAD_REQUEST,
         "duplicated encoding profile"),
        (_video(encodings=[{"ssrc": 1}, {"ssrc": 2}]), BAD_REQUEST, "duplicated encoding profile"),
        (_video(encodings=[LOW, MEDIUM, {"ssrc": 1, "profile": "high"}]), BAD_REQUEST,
         "duplicated SSRC"),
        (_video(encodings=[{**LOW, "rtx": {"ssrc": 2}}, MEDIUM]), BAD_REQUEST, "duplicated SSRC"),
    ],
)  # fmt: skip
def test_video_producer_errors(room, params, code, fragment):
    with raises(code, "wrong RTP parameters: ", fragment):
        producer_mapping(room, "video", params)


def _audio(**changes: Any) -> dict[str, Any]:
    params = copy.deepcopy(AUDIO_PRODUCER)
    for path, value in changes.items():
        params = with_(params, path.replace("__", "."), value)
    return params


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        (_audio(codecs__0__channels=DELETE), UNSUPPORTED, "unsupported codec audio/opus 48000"),
        (_audio(codecs__0__channels=1), UNSUPPORTED, "audio/opus"),
        (_audio(codecs__0__mimeType="video/opus"), BAD_REQUEST, "does not fit a audio codec"),
        (_audio(codecs=VIDEO_PRODUCER["codecs"]), BAD_REQUEST, "does not fit a audio codec"),
        (_audio(codecs=AUDIO_PRODUCER["codecs"] + [AUDIO_RTX]), UNSUPPORTED,
         "no RTX codec in the room for audio/opus"),
        (_audio(codecs=[{**AUDIO_PRODUCER["codecs"][0], "name": "PCMU",
                         "mimeType": "audio/PCMU", "clockRate": 8000, "payloadType": 0,
                         "channels": 1}]),
         UNSUPPORTED, "unsupported codec audio/PCMU 8000 (payloadType 0)"),
    ],
)  # fmt: skip
def test_audio_producer_errors(room, params, code, fragment):
    with raises(code, "wrong RTP parameters: ", fragment):
        producer_mapping(room, "audio", params)


def test_audio_producer_extensions_map_to_audio_ids_only(room):
    params = _audio(headerExtensions=[{"uri": TOFFSET, "id": 14}, {"uri": MID, "id": 4}])
    assert producer_mapping(room, "audio", params)["headerExtensionIds"] == [[4, 5]]


# --- consumer_rtp_parameters -----------------------------------------------------------------


def _consume(room, peer, producer, kind):
    mapping = producer_mapping(room, kind, copy.deepcopy(producer))
    return consumer_rtp_parameters(room, copy.deepcopy(producer), mapping, peer, ssrc_source())


def test_chrome_consumer_of_browser_video(room, peer):
    assert _consume(room, peer, VIDEO_PRODUCER, "video") == {
        "codecs": [
            {"name": "VP8", "mimeType": "video/VP8", "clockRate": 90000, "payloadType": 101,
             "rtcpFeedback": CHROME_FB, "parameters": {}},
            {"name": "rtx", "mimeType": "video/rtx", "clockRate": 90000, "payloadType": 102,
             "parameters": {"apt": 101}},  # no rtcpFeedback: the peer's rtx has none (v2)
        ],
        "headerExtensions": [
            {"uri": TOFFSET, "id": 2}, {"uri": ABS_SEND_TIME, "id": 3},
            {"uri": ORIENTATION, "id": 4}, {"uri": RID, "id": 6},
        ],
        "encodings": [{"ssrc": 40000000, "rtx": {"ssrc": 40000001}}],
        "rtcp": RTCP,
    }  # fmt: skip


def test_chrome_consumer_of_browser_audio(room, peer):
    assert _consume(room, peer, AUDIO_PRODUCER, "audio") == {
        "codecs": [
            {"name": "opus", "mimeType": "audio/opus", "clockRate": 48000, "payloadType": 100,
             "channels": 2, "rtcpFeedback": [], "parameters": {"useinbandfec": 1}},
        ],
        "headerExtensions": [{"uri": AUDIO_LEVEL, "id": 1}, {"uri": ABS_SEND_TIME, "id": 3}],
        "encodings": [{"ssrc": 40000000}],
        "rtcp": RTCP,
    }  # fmt: skip


def test_simulcast_consumer_has_one_encoding(room, peer):
    params = _consume(room, peer, SIMULCAST_PRODUCER, "video")
    assert params["encodings"] == [{"ssrc": 40000000, "rtx": {"ssrc": 40000001}}]
    assert "muxId" not in params


def test_consumer_of_h264_uses_room_parameters(room, peer):
    params = _consume(room, peer, _video(codecs=H264_CODECS), "video")
    assert [(c["payloadType"], c["parameters"]) for c in params["codecs"]] == [
        (103, H264_PARAMS),
        (104, {"apt": 103}),
    ]


def test_consumer_gets_room_rtx_even_if_the_producer_sends_none(room, peer):
    producer = _video(codecs=VIDEO_PRODUCER["codecs"][:1], encodings=[{"ssrc": 5}])
    params = _consume(room, peer, producer, "video")
    assert [c["payloadType"] for c in params["codecs"]] == [101, 102]
    assert params["encodings"][0]["rtx"] == {"ssrc": 40000001}


def _caps_with(room, indexes, exts=()):
    return check_peer_capabilities(
        room,
        {
            "codecs": [CHROME_JOIN_CAPS["codecs"][i] for i in indexes],
            "headerExtensions": [
                e for e in CHROME_JOIN_CAPS["headerExtensions"] if e["preferredId"] in exts
            ],
        },
    )


@pytest.mark.parametrize(
    ("indexes", "exts", "pts", "ext_ids", "rtx", "receivable"),
    [
        ((0, 1, 2, 3, 4), (1, 2, 3, 4, 5, 6), [101, 102], [2, 3, 4, 6], True, True),
        ((0, 1, 3), (2, 3), [101], [2, 3], False, True),  # no rtx: none in encodings either
        ((0, 3, 4), (), [], [], False, False),  # H264 only: cannot receive VP8
        ((2,), (), [], [], False, False),  # rtx without its media codec is useless
        ((), (), [], [], False, False),
        ((1, 2), (5,), [101, 102], [], True, True),  # only sdes:mid, which is never sent
    ],
)  # fmt: skip
def test_consumer_reduced_to_the_peer(room, indexes, exts, pts, ext_ids, rtx, receivable):
    params = _consume(room, _caps_with(room, indexes, exts), VIDEO_PRODUCER, "video")
    assert [c["payloadType"] for c in params["codecs"]] == pts
    assert [e["id"] for e in params["headerExtensions"]] == ext_ids
    assert ("rtx" in params["encodings"][0]) is rtx
    assert consumer_can_receive(params) is receivable
    assert params["rtcp"] == RTCP


def test_consumer_takes_the_peers_rtcp_feedback(room):
    caps = _peer_codec(
        1, rtcpFeedback=[{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]
    )
    params = _consume(room, check_peer_capabilities(room, caps), VIDEO_PRODUCER, "video")
    assert params["codecs"][0]["rtcpFeedback"] == [
        {"type": "nack"},
        {"type": "nack", "parameter": "pli"},
    ]


def test_consumer_drops_extensions_the_producer_mapping_dropped(room, peer):
    producer = _video(headerExtensions=[{"uri": TRANSPORT_CC, "id": 3}, {"uri": TOFFSET, "id": 14}])
    params = _consume(room, peer, producer, "video")
    assert params["headerExtensions"] == [{"uri": TOFFSET, "id": 2}]


def test_consumer_without_producer_rtcp_has_none(room, peer):
    assert "rtcp" not in _consume(room, peer, _video(rtcp=DELETE), "video")


def test_consumer_parameters_share_nothing(room, peer):
    producer = copy.deepcopy(VIDEO_PRODUCER)
    mapping = producer_mapping(room, "video", producer)
    params = consumer_rtp_parameters(room, producer, mapping, peer, ssrc_source())
    params["rtcp"]["cname"] = "changed"
    params["codecs"][0]["rtcpFeedback"].clear()
    params["codecs"][1]["parameters"]["apt"] = 0
    assert producer["rtcp"] == RTCP
    assert peer["codecs"][1]["rtcpFeedback"] == CHROME_FB
    assert room["codecs"][2]["parameters"] == {"apt": 101}


def test_consumer_ssrcs_come_from_new_ssrc(room, peer):
    calls = []

    def new_ssrc() -> int:
        calls.append(len(calls))
        return 12345678 + len(calls)

    mapping = producer_mapping(room, "audio", copy.deepcopy(AUDIO_PRODUCER))
    params = consumer_rtp_parameters(room, AUDIO_PRODUCER, mapping, peer, new_ssrc)
    assert params["encodings"] == [{"ssrc": 12345679}] and len(calls) == 1


def test_the_client_would_accept_every_receivable_consumer(room, peer):
    # mediasoup-client's canReceive: the first codec's PT is a recv PT of its extended caps,
    # i.e. a media PT of its join caps.
    media_pts = {
        c["preferredPayloadType"] for c in CHROME_JOIN_CAPS["codecs"] if c["name"] != "rtx"
    }
    for producer, kind in ((AUDIO_PRODUCER, "audio"), (VIDEO_PRODUCER, "video"),
                           (_video(codecs=H264_CODECS), "video")):  # fmt: skip
        params = _consume(room, peer, producer, kind)
        assert consumer_can_receive(params)
        assert params["codecs"][0]["payloadType"] in media_pts


# --- consumer_can_receive --------------------------------------------------------------------

GOOD = {"codecs": [{"name": "VP8", "mimeType": "video/VP8", "payloadType": 101}],
        "encodings": [{"ssrc": 5}]}  # fmt: skip


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (GOOD, True),
        ({**GOOD, "codecs": []}, False),
        ({**GOOD, "codecs": [{"name": "rtx", "mimeType": "video/rtx", "payloadType": 102}]}, False),
        ({**GOOD, "encodings": []}, False),
        ({**GOOD, "encodings": [{}]}, False),
        ({"codecs": GOOD["codecs"]}, False),
        ({}, False),
        (None, False),
        ([], False),
        ({"codecs": [None], "encodings": [{"ssrc": 5}]}, False),
    ],
)  # fmt: skip
def test_consumer_can_receive(params, expected):
    assert consumer_can_receive(params) is expected
