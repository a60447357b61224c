"""RTP capabilities and parameters as mediasoup v2 negotiates them (pure; no I/O).

Per room room_rtp_capabilities(); per join check_peer_capabilities(); per producer
producer_mapping() (what a worker needs to rewrite PTs and extension ids into the room's); per
(producer, receiving peer) consumer_rtp_parameters(). Facts from mediasoup 2.6.19 (lib/ortc.js,
supportedRtpCapabilities.js, worker RtpDictionaries) and mediasoup-client 2.4.12 (the
messages are docs/protocol/messages.md); each docstring says where we are stricter than v2.

Why one module over 600 lines: it is one negotiation in four stages (room, join, producer,
consumer), each reading what the stage before produced, and all four share the private
checks at the top (codec_matches, _describe, _kind_and_name, the nesting and field checks),
as mediasoup v2 keeps them in one lib/ortc.js. Split per stage, those checks would become a
public API of their own for four callers; the sections below are the seams if it grows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tureen.shared.contract import KINDS
from tureen.shared.contract import PROFILES as ALL_PROFILES
from tureen.shared.errors import BAD_REQUEST, UNSUPPORTED, ProtocolError, bad_request, unsupported

# The profiles an encoding may name (simulcast); "default" is the single stream's.
PROFILES = tuple(p for p in ALL_PROFILES if p != "default")
SDES_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

# Dynamic PTs in the order v2 hands them out (ortc.js): apps and tests rely on Opus, VP8 ->
# 100, 101 exactly, so the order is part of the protocol.
DYNAMIC_PAYLOAD_TYPES = (*range(100, 128), *range(96, 100), *range(77, 96), *range(35, 72))

_VIDEO_FEEDBACK = (
    {"type": "nack"},
    {"type": "nack", "parameter": "pli"},
    {"type": "ccm", "parameter": "fir"},
    {"type": "goog-remb"},
)

# v2's supported codecs as (kind, name, clockRates, static PT, row parameters); one row per
# clock rate. Audio rows have channels 1 except opus (2); video rows carry _VIDEO_FEEDBACK.
# (v2 lists CN/32000 twice and leaves channels out of two telephone-event rows; neither
# changes a match or a result.)
_SUPPORTED_CODECS: tuple[tuple[str, str, tuple[int, ...], int | None, dict[str, Any]], ...] = (
    ("audio", "opus", (48000,), None, {}),
    ("audio", "PCMU", (8000,), 0, {}),
    ("audio", "PCMA", (8000,), 8, {}),
    ("audio", "ISAC", (32000, 16000), None, {}),
    ("audio", "G722", (8000,), 9, {}),
    ("audio", "iLBC", (8000,), None, {}),
    ("audio", "SILK", (24000, 16000, 12000, 8000), None, {}),
    ("audio", "CN", (32000, 16000, 8000), 13, {}),
    ("audio", "telephone-event", (48000, 32000, 16000, 8000), None, {}),
    ("video", "VP8", (90000,), None, {}),
    ("video", "VP9", (90000,), None, {}),
    ("video", "H264", (90000,), None, {"packetization-mode": 0}),
    ("video", "H264", (90000,), None, {"packetization-mode": 1}),
    ("video", "H265", (90000,), None, {}),
)

# The room's id of the ssrc-audio-level extension (RFC 6464): producers' ids are mapped to it
# on ingest, so a worker reads audio levels under this id (room.audioLevels).
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
AUDIO_LEVEL_ID = 1

# (kind, uri, preferredId); one entry per kind, as v2 lists them (no transport-cc in v2).
_HEADER_EXTENSIONS: tuple[tuple[str, str, int], ...] = (
    ("audio", AUDIO_LEVEL_URI, AUDIO_LEVEL_ID),
    ("video", "urn:ietf:params:rtp-hdrext:toffset", 2),
    ("audio", "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", 3),
    ("video", "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", 3),
    ("video", "urn:3gpp:video-orientation", 4),
    ("audio", SDES_MID_URI, 5),
    ("video", SDES_MID_URI, 5),
    ("video", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", 6),
)


# --- small checks -------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    # bool is an int in Python but never a valid PT, id or SSRC on the wire.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_params(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _kind_and_name(codec: dict[str, Any]) -> tuple[str | None, str]:
    """(kind, name) of a codec dict: the mimeType's name, else `name`; `kind`, else the
    mimeType's type (producer codecs have no kind)."""
    kind, name = codec.get("kind"), codec.get("name")
    mime = codec.get("mimeType")
    if isinstance(mime, str) and "/" in mime:
        mime_kind, name = mime.split("/", 1)
        kind = kind or mime_kind.lower()
    return kind, str(name or "")


def _describe(codec: dict[str, Any]) -> str:
    kind, name = _kind_and_name(codec)
    text = f"{kind}/{name}" if kind else name
    text += f" {codec.get('clockRate')}"
    if codec.get("channels") not in (None, 1):
        text += f"/{codec.get('channels')}"
    return text


def _is_rtx(codec: dict[str, Any]) -> bool:
    return _kind_and_name(codec)[1].lower() == "rtx"


def codec_matches(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two codec dicts denote the same codec, by v2's rule (ortc.js matchCodecs).

    Kind (when both known, from `kind` or the mimeType), name in any case, clockRate,
    channels (audio: if either side gives a value other than 1, both must be equal; so opus
    needs channels 2) and, for H264, packetization-mode (missing = 0). Payload types are not
    compared.
    """
    a_kind, a_name = _kind_and_name(a)
    b_kind, b_name = _kind_and_name(b)
    if a_kind and b_kind and a_kind != b_kind:
        return False
    if a_name.lower() != b_name.lower() or a.get("clockRate") != b.get("clockRate"):
        return False
    a_ch, b_ch = a.get("channels"), b.get("channels")
    if "audio" in (a_kind, b_kind) and (a_ch not in (None, 1) or b_ch not in (None, 1)):
        if a_ch != b_ch:
            return False
    if a_name.lower() == "h264":
        a_pm = (a.get("parameters") or {}).get("packetization-mode") or 0
        b_pm = (b.get("parameters") or {}).get("packetization-mode") or 0
        if a_pm != b_pm:
            return False
    return True


# --- room ---------------------------------------------------------------------------------


def _supported_rows() -> list[dict[str, Any]]:
    rows = []
    for kind, name, clock_rates, pt, params in _SUPPORTED_CODECS:
        for clock in clock_rates:
            row: dict[str, Any] = {"kind": kind, "name": name, "mimeType": f"{kind}/{name}"}
            row["clockRate"] = clock
            if kind == "audio":
                row["channels"] = 2 if name == "opus" else 1
            row["parameters"] = dict(params)
            row["rtcpFeedback"] = [dict(fb) for fb in _VIDEO_FEEDBACK] if kind == "video" else []
            if pt is not None:
                row["preferredPayloadType"] = pt
            rows.append(row)
    return rows


# Codec parameters and rtcp are flat objects in every real client. Their nesting is bounded
# because they are deep-copied here (copy.deepcopy recurses: ~330 levels exhaust Python's
# recursion limit, and orjson decodes 1024) and echoed back to clients.
MAX_NESTING = 16


def _nesting(value: Any) -> int:
    """Levels of objects and arrays in a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_NESTING:  # deeper is refused anyway: stop looking
                children = node.values() if isinstance(node, dict) else node
                stack.extend((child, level + 1) for child in children)
    return deepest


def _check_nesting(value: Any, where: str, error: Callable) -> None:
    if _nesting(value) > MAX_NESTING:
        raise error(f"{where} is nested more than {MAX_NESTING} levels deep; send a flat object")


def _check_codec_fields(codec: dict[str, Any], where: str, error: Callable) -> None:
    """clockRate, channels and parameters, common to every codec shape we are sent."""
    if not _is_int(codec.get("clockRate")) or codec["clockRate"] <= 0:
        raise error(f"{where}.clockRate must be a positive integer")
    channels = codec.get("channels")
    if channels is not None and (not _is_int(channels) or channels <= 0):
        raise error(f"{where}.channels must be a positive integer")
    if codec.get("parameters") is not None and not _is_params(codec["parameters"]):
        raise error(f"{where}.parameters must be an object")
    _check_nesting(codec.get("parameters"), f"{where}.parameters", error)


def _check_media_codec(codec: Any, index: int) -> None:
    where = f"mediaCodecs[{index}]"
    if not isinstance(codec, dict):
        raise bad_request(f"{where} must be an object")
    if codec.get("kind") not in KINDS:
        raise bad_request(f"{where}.kind must be 'audio' or 'video', not {codec.get('kind')!r}")
    if not _is_name(codec.get("name")):
        raise bad_request(f"{where}.name must be a non-empty string")
    _check_codec_fields(codec, where, bad_request)


def room_rtp_capabilities(media_codecs: list) -> dict[str, Any]:
    """The room's rtpCapabilities from the app's mediaCodecs, as v2's generateRoomRtpCapabilities.

    Returns `{codecs, headerExtensions, fecMechanisms: []}`. Each codec is the supported row
    (kind, name, mimeType, clockRate, channels for audio, rtcpFeedback) with `parameters` =
    row's overlaid with the app's and `preferredPayloadType` = static PT or the next dynamic
    one; each video codec is followed by its RTX. Unlike v2, a codec listed twice is refused
    (the second could never be matched). Raises ProtocolError (bad_request, unsupported).
    """
    if not isinstance(media_codecs, list):
        raise bad_request("mediaCodecs must be a list of codecs")
    if not media_codecs:
        raise bad_request("mediaCodecs cannot be empty")
    rows = _supported_rows()
    # Duplicates are refused, so at most 22 of the 88 dynamic PTs are ever taken.
    dynamic = iter(DYNAMIC_PAYLOAD_TYPES)
    codecs: list[dict[str, Any]] = []
    for index, media_codec in enumerate(media_codecs):
        _check_media_codec(media_codec, index)
        # v2 ignores an app's mimeType: match on kind and name alone.
        media_codec = {k: v for k, v in media_codec.items() if k != "mimeType"}
        row = next((r for r in rows if codec_matches(media_codec, r)), None)
        if row is None:
            raise unsupported(
                f"mediaCodecs[{index}]: codec {_describe(media_codec)} is not supported"
            )
        if any(codec_matches(row, c) for c in codecs):
            raise bad_request(f"mediaCodecs[{index}]: codec {_describe(row)} is listed twice")
        codec = copy.deepcopy(row)
        codec["parameters"].update(copy.deepcopy(media_codec.get("parameters") or {}))
        if "preferredPayloadType" not in codec:
            codec["preferredPayloadType"] = next(dynamic)
        codecs.append(codec)
        if codec["kind"] == "video":
            codecs.append(
                {
                    "kind": "video",
                    "name": "rtx",
                    "mimeType": "video/rtx",
                    "preferredPayloadType": next(dynamic),
                    "clockRate": codec["clockRate"],
                    "parameters": {"apt": codec["preferredPayloadType"]},
                }
            )
    extensions = [
        {"kind": kind, "uri": uri, "preferredId": ext_id, "preferredEncrypt": False}
        for kind, uri, ext_id in _HEADER_EXTENSIONS
    ]
    return {"codecs": codecs, "headerExtensions": extensions, "fecMechanisms": []}


# --- join ---------------------------------------------------------------------------------


def _check_feedback(value: Any, where: str) -> list[dict[str, Any]]:
    entries = [] if value is None else value
    if not isinstance(entries, list) or not all(
        isinstance(fb, dict)
        and _is_name(fb.get("type"))
        and isinstance(fb.get("parameter") or "", str)
        for fb in entries
    ):
        raise bad_request(f"{where}.rtcpFeedback must be a list of {{type, parameter?}} strings")
    # An empty parameter is how SDP parsers say "none"; keep one spelling.
    return [
        {"type": fb["type"], **({"parameter": fb["parameter"]} if fb.get("parameter") else {})}
        for fb in entries
    ]


def _check_peer_codec(codec: Any, index: int) -> dict[str, Any]:
    where = f"rtpCapabilities.codecs[{index}]"
    if not isinstance(codec, dict):
        raise bad_request(f"{where} must be an object")
    kind, name = _kind_and_name(codec)
    mime = codec.get("mimeType")
    if (
        kind not in KINDS
        or not name
        or (isinstance(mime, str) and not mime.lower().startswith(f"{kind}/"))
    ):
        raise bad_request(f"{where} needs a mimeType 'audio/<name>' or 'video/<name>' of its kind")
    where += f" ({name})"
    pt = codec.get("preferredPayloadType")
    if not _is_int(pt) or not 0 <= pt <= 127:
        raise bad_request(f"{where} needs an integer preferredPayloadType 0..127")
    _check_codec_fields(codec, where, bad_request)
    checked = {
        **codec,
        "kind": kind,
        "name": name,
        "parameters": codec.get("parameters") or {},
    }
    # Absent stays absent (mediasoup-client's RTX entries have none): v2 gives a consumer
    # codec the peer's rtcpFeedback as it is, so an RTX entry carries no rtcpFeedback key.
    if codec.get("rtcpFeedback") is not None:
        checked["rtcpFeedback"] = _check_feedback(codec["rtcpFeedback"], where)
    else:
        checked.pop("rtcpFeedback", None)
    return checked


def check_peer_capabilities(room_caps: dict[str, Any], peer_caps: Any) -> dict[str, Any]:
    """Validate join's rtpCapabilities against the room's (v2's assertCapabilitiesSubset).

    Every codec must match a room codec (codec_matches) with the same preferredPayloadType;
    every header extension one with the same uri, preferredId and (if given) kind. Returns a
    normalized copy `{codecs, headerExtensions, fecMechanisms: []}`: codecs with the room's
    kind/name/mimeType/clockRate (channels for audio) and the peer's rtcpFeedback (when given) and
    parameters; repeated PTs kept once; extensions as `{kind, uri, preferredId}`.
    Raises ProtocolError (bad_request for shapes, unsupported for a mismatch).
    """
    if not isinstance(peer_caps, dict):
        raise bad_request("rtpCapabilities must be an object")
    if not isinstance(peer_caps.get("codecs"), list):
        raise bad_request("rtpCapabilities.codecs must be a list")
    exts = peer_caps.get("headerExtensions")
    exts = [] if exts is None else exts
    if not isinstance(exts, list):
        raise bad_request("rtpCapabilities.headerExtensions must be a list")

    codecs: list[dict[str, Any]] = []
    for index, raw in enumerate(peer_caps["codecs"]):
        codec = _check_peer_codec(raw, index)
        pt = codec["preferredPayloadType"]
        room = next(
            (
                r
                for r in room_caps["codecs"]
                if r["preferredPayloadType"] == pt and codec_matches(codec, r)
            ),
            None,
        )
        if room is None:
            raise unsupported(
                f"rtpCapabilities: unsupported codec {_describe(codec)} with preferredPayloadType"
                f" {pt} (no room codec matches it with that payload type)"
            )
        if any(c["preferredPayloadType"] == pt for c in codecs):
            continue
        out = {key: room[key] for key in ("kind", "name", "mimeType", "clockRate")}
        out["preferredPayloadType"] = pt
        if room["kind"] == "audio":
            out["channels"] = room["channels"]
        if "rtcpFeedback" in codec:
            out["rtcpFeedback"] = copy.deepcopy(codec["rtcpFeedback"])
        out["parameters"] = copy.deepcopy(codec["parameters"])
        codecs.append(out)

    extensions: list[dict[str, Any]] = []
    for index, ext in enumerate(exts):
        where = f"rtpCapabilities.headerExtensions[{index}]"
        if not isinstance(ext, dict) or not _is_name(ext.get("uri")):
            raise bad_request(f"{where} needs a string uri")
        if not _is_int(ext.get("preferredId")):
            raise bad_request(f"{where} ({ext['uri']}) needs an integer preferredId")
        matches = [
            r
            for r in room_caps["headerExtensions"]
            if r["uri"] == ext["uri"]
            and r["preferredId"] == ext["preferredId"]
            and ext.get("kind") in (None, "", r["kind"])
        ]
        if not matches:
            raise unsupported(
                f"rtpCapabilities: unsupported header extension {ext['uri']} with preferredId"
                f" {ext['preferredId']} (kind {ext.get('kind')})"
            )
        for room_ext in matches:  # a kind-less entry stands for every kind the room lists
            entry = {key: room_ext[key] for key in ("kind", "uri", "preferredId")}
            if entry not in extensions:
                extensions.append(entry)
    return {"codecs": codecs, "headerExtensions": extensions, "fecMechanisms": []}


# --- producer -----------------------------------------------------------------------------


def _wrong(message: str, code: str = BAD_REQUEST) -> ProtocolError:
    # v2 wraps every mapping error this way (Peer._createProducer); apps grep for it.
    return ProtocolError(code, f"wrong RTP parameters: {message}")


def _check_ssrc(value: Any, where: str) -> int:
    if not _is_int(value) or not 0 < value < 2**32:
        raise _wrong(f"{where} must be an integer SSRC in 1..2^32-1, not {value!r}")
    return value


def _check_producer_codecs(kind: str, codecs: Any) -> list[dict[str, Any]]:
    if not isinstance(codecs, list) or not codecs:
        raise _wrong("codecs must be a non-empty list")
    seen: set[int] = set()
    for index, codec in enumerate(codecs):
        where = f"codecs[{index}]"
        if not isinstance(codec, dict):
            raise _wrong(f"{where} must be an object")
        name, mime = codec.get("name"), codec.get("mimeType")
        if not _is_name(name) or not _is_name(mime):
            raise _wrong(f"{where} needs a name and a mimeType")
        # v2 matches by name only; a mimeType of the other kind would be forwarded blindly.
        if mime.lower() != f"{kind}/{name}".lower():
            raise _wrong(f"{where}: mimeType {mime!r} does not fit a {kind} codec named {name!r}")
        pt = codec.get("payloadType")
        if not _is_int(pt) or not 0 <= pt <= 127:
            raise _wrong(f"{where} ({name}) needs an integer payloadType 0..127, not {pt!r}")
        if pt in seen:
            raise _wrong(f"duplicated codec payloadType {pt}")
        seen.add(pt)
        _check_codec_fields(codec, f"{where} ({name})", _wrong)
    return codecs


def _check_encodings(encodings: Any, media_pts: set[int]) -> list[dict[str, Any]]:
    if not isinstance(encodings, list) or not encodings:
        raise _wrong("encodings must be a non-empty list")
    streams: list[dict[str, Any]] = []
    for index, enc in enumerate(encodings):
        where = f"encodings[{index}]"
        if not isinstance(enc, dict):
            raise _wrong(f"{where} must be an object")
        ssrc = _check_ssrc(enc.get("ssrc"), f"{where}.ssrc")
        rtx_ssrc = None
        if enc.get("rtx") is not None:
            if not isinstance(enc["rtx"], dict):
                raise _wrong(f"{where}.rtx must be an object")
            if enc["rtx"].get("ssrc") is not None:
                rtx_ssrc = _check_ssrc(enc["rtx"]["ssrc"], f"{where}.rtx.ssrc")
        profile = enc.get("profile")
        # 'default' and 'none' are states of a consumer, never of an encoding (v2 worker).
        if profile is not None and profile not in PROFILES:
            raise _wrong(f"{where}.profile must be 'low', 'medium' or 'high', not {profile!r}")
        cpt = enc.get("codecPayloadType")
        if cpt is not None and cpt not in media_pts:
            raise _wrong(f"{where}.codecPayloadType {cpt!r} is not a media codec of the producer")
        streams.append({"ssrc": ssrc, "rtxSsrc": rtx_ssrc, "profile": profile or "default"})
    profiles = [s["profile"] for s in streams]
    if len(set(profiles)) != len(profiles):
        # Two encodings without a profile are both 'default': a repeat, as in v2.
        raise _wrong(f"duplicated encoding profile in {profiles}")
    if len(streams) == 1 and profiles[0] != "default":
        raise _wrong("a single encoding must not carry a profile")
    ssrcs = [s for stream in streams for s in (stream["ssrc"], stream["rtxSsrc"]) if s is not None]
    if len(set(ssrcs)) != len(ssrcs):
        raise _wrong(f"duplicated SSRC in encodings {ssrcs}")
    return streams


def producer_mapping(room_caps: dict[str, Any], kind: str, rtp_parameters: Any) -> dict[str, Any]:
    """Validate createProducer's rtpParameters and map them onto the room's capabilities.

    Returns `{payloadTypes: [[producerPt, roomPt], ...] (media then RTX), headerExtensionIds:
    [[producerId, roomId], ...], codecs: [{payloadType, mimeType, clockRate, rtxPayloadType,
    nack}] (room values, one per producer media codec; rtxPayloadType = the room RTX for it,
    None for audio; nack = the producer's codec lists rtcpFeedback nack), streams: [{ssrc, rtxSsrc, profile}], ssrcs: [every media and RTX SSRC]}`.

    Stricter than v2: SSRCs are required (we demux by SSRC), mimeType must fit kind and name,
    two producer codecs may not map to one room codec; extensions of unknown uris are dropped
    (v2 refuses them). Raises ProtocolError 'wrong RTP parameters: ...' (bad_request, or
    unsupported for codecs the room lacks); kind 'depth' (v2 accepts it) is unsupported.
    """
    if kind == "depth":
        raise unsupported("kind 'depth' is not supported: Tureen forwards audio and video only")
    if kind not in KINDS:
        raise bad_request(f"unsupported kind: {kind!r}")
    if not isinstance(rtp_parameters, dict):
        raise _wrong("rtpParameters must be an object")
    params = rtp_parameters
    mux_id = params.get("muxId")
    if mux_id is not None and not _is_name(mux_id):
        raise _wrong("muxId must be a non-empty string")
    rtcp = params.get("rtcp")
    if rtcp is not None and not isinstance(rtcp, dict):
        raise _wrong("rtcp must be an object")
    _check_nesting(rtcp, "rtcp", _wrong)
    if rtcp and rtcp.get("cname") is not None and not _is_name(rtcp["cname"]):
        raise _wrong("rtcp.cname must be a non-empty string")
    if rtcp and isinstance(rtcp.get("cname"), str) and len(rtcp["cname"].encode()) > 255:
        # An SDES item's length is one octet (RFC 3550 6.5): Tureen sends it in every SR.
        raise _wrong("rtcp.cname must be at most 255 bytes of UTF-8 (RFC 3550 SDES)")

    codecs = _check_producer_codecs(kind, params.get("codecs"))
    room_codecs = [c for c in room_caps["codecs"] if c["kind"] == kind]
    media = [c for c in codecs if not _is_rtx(c)]
    if not media:
        raise _wrong("no media codecs")
    to_room: dict[int, dict[str, Any]] = {}  # producer media PT -> room media codec
    feedback: dict[int, list[dict[str, Any]]] = {}  # producer media PT -> its rtcpFeedback
    for codec in media:
        where = f"codecs[{next(i for i, x in enumerate(codecs) if x is codec)}] ({codec['name']})"
        feedback[codec["payloadType"]] = _check_feedback(codec.get("rtcpFeedback"), where)
        room = next((r for r in room_codecs if not _is_rtx(r) and codec_matches(codec, r)), None)
        if room is None:
            raise _wrong(
                f"unsupported codec {_describe(codec)} (payloadType {codec['payloadType']})",
                UNSUPPORTED,
            )
        if any(r is room for r in to_room.values()):
            raise _wrong(f"two codecs map to room codec {room['mimeType']}")
        to_room[codec["payloadType"]] = room

    # room media PT -> room RTX PT
    room_rtx = {
        r["parameters"]["apt"]: r["preferredPayloadType"] for r in room_codecs if _is_rtx(r)
    }
    rtx_pairs: list[list[int]] = []
    for codec in codecs:
        if not _is_rtx(codec):
            continue
        pt, apt = codec["payloadType"], (codec.get("parameters") or {}).get("apt")
        if not _is_int(apt) or apt not in to_room:
            raise _wrong(f"no media codec found for RTX payloadType {pt} (apt {apt!r})")
        room_pt = to_room[apt]["preferredPayloadType"]
        if room_pt not in room_rtx:
            raise _wrong(f"no RTX codec in the room for {to_room[apt]['mimeType']}", UNSUPPORTED)
        if any(pair[1] == room_rtx[room_pt] for pair in rtx_pairs):
            raise _wrong(f"two RTX codecs for payloadType {apt}")
        rtx_pairs.append([pt, room_rtx[room_pt]])

    exts = params.get("headerExtensions")
    exts = [] if exts is None else exts
    if not isinstance(exts, list):
        raise _wrong("headerExtensions must be a list")
    room_ids = {
        e["uri"]: e["preferredId"] for e in room_caps["headerExtensions"] if e["kind"] == kind
    }
    ext_pairs: list[list[int]] = []
    seen_ids: set[int] = set()
    for index, ext in enumerate(exts):
        if not isinstance(ext, dict) or not _is_name(ext.get("uri")):
            raise _wrong(f"headerExtensions[{index}] needs a string uri")
        ext_id = ext.get("id")
        if not _is_int(ext_id) or not 1 <= ext_id <= 255:
            raise _wrong(f"headerExtensions[{index}] ({ext['uri']}) needs an integer id 1..255")
        if ext_id in seen_ids:
            raise _wrong(f"duplicated header extension id {ext_id}")
        seen_ids.add(ext_id)
        # An extension the room does not know is left out: the worker strips it on ingest.
        if ext["uri"] in room_ids:
            ext_pairs.append([ext_id, room_ids[ext["uri"]]])

    streams = _check_encodings(params.get("encodings"), set(to_room))
    return {
        "payloadTypes": [[pt, r["preferredPayloadType"]] for pt, r in to_room.items()] + rtx_pairs,
        "headerExtensionIds": ext_pairs,
        "codecs": [
            {
                "payloadType": r["preferredPayloadType"],
                "mimeType": r["mimeType"],
                "clockRate": r["clockRate"],
                "rtxPayloadType": room_rtx.get(r["preferredPayloadType"]),
                # v2 (Producer.cpp): any rtcpFeedback of type "nack" (also "nack pli") makes
                # the worker NACK the sender for what it misses.
                "nack": any(fb["type"] == "nack" for fb in feedback[pt]),
            }
            for pt, r in to_room.items()
        ],
        "streams": streams,
        "ssrcs": [s for st in streams for s in (st["ssrc"], st["rtxSsrc"]) if s is not None],
    }


# --- consumer -----------------------------------------------------------------------------


def consumer_rtp_parameters(
    room_caps: dict[str, Any],
    producer_rtp_parameters: dict[str, Any],
    mapping: dict[str, Any],
    peer_caps: dict[str, Any],
    new_ssrc: Callable[[], int],
) -> dict[str, Any]:
    """The rtpParameters of a consumer of this producer for a peer with `peer_caps`.

    `mapping` is producer_mapping()'s result, `peer_caps` check_peer_capabilities()'s.
    Codecs: per producer media codec the room codec (room PT, parameters, channels for audio,
    the peer's rtcpFeedback, absent where the peer's codec has none) then the room RTX, each kept if the peer has that PT; unlike v2 an
    RTX is only kept with its media codec. headerExtensions: the producer's as {uri, id} with
    room ids, minus sdes:mid, kept if the peer has the id. encodings: [{ssrc, rtx: {ssrc}}]
    from new_ssrc() (rtx only when an RTX codec is kept). rtcp: a copy of the producer's.
    Codecs may be empty: see consumer_can_receive().
    """
    room_by_pt = {c["preferredPayloadType"]: c for c in room_caps["codecs"]}
    peer_by_pt = {c["preferredPayloadType"]: c for c in peer_caps.get("codecs", [])}
    codecs: list[dict[str, Any]] = []
    rtx_kept = False
    for entry in mapping["codecs"]:
        wanted = [room_by_pt[entry["payloadType"]]]
        if entry.get("rtxPayloadType") is not None:
            wanted.append(room_by_pt[entry["rtxPayloadType"]])
        for room in wanted:
            peer = peer_by_pt.get(room["preferredPayloadType"])
            if peer is None:
                break  # the peer cannot decode it, so its RTX is useless too
            codec = {
                "name": room["name"],
                "mimeType": room["mimeType"],
                "clockRate": room["clockRate"],
                "payloadType": room["preferredPayloadType"],
            }
            if room["kind"] == "audio":
                codec["channels"] = room["channels"]
            if "rtcpFeedback" in peer:  # the peer's, as given; none given: none (v2)
                codec["rtcpFeedback"] = copy.deepcopy(peer["rtcpFeedback"])
            codec["parameters"] = copy.deepcopy(room.get("parameters") or {})
            codecs.append(codec)
            rtx_kept = rtx_kept or _is_rtx(room)

    id_map = {pid: rid for pid, rid in mapping["headerExtensionIds"]}
    room_uri = {e["preferredId"]: e["uri"] for e in room_caps["headerExtensions"]}
    peer_ids = {e["preferredId"] for e in peer_caps.get("headerExtensions", [])}
    extensions = []
    for ext in producer_rtp_parameters.get("headerExtensions") or []:
        room_id = id_map.get(ext["id"])
        # The client signals the mid itself (a<id>/v<id>); the server never sends ours.
        if ext["uri"] == SDES_MID_URI or room_id is None or room_id not in peer_ids:
            continue
        extensions.append({"uri": room_uri[room_id], "id": room_id})

    encoding: dict[str, Any] = {"ssrc": new_ssrc()}
    if rtx_kept:
        encoding["rtx"] = {"ssrc": new_ssrc()}
    result: dict[str, Any] = {
        "codecs": codecs,
        "headerExtensions": extensions,
        "encodings": [encoding],
    }
    if isinstance(producer_rtp_parameters.get("rtcp"), dict):
        result["rtcp"] = copy.deepcopy(producer_rtp_parameters["rtcp"])
    return result


def consumer_can_receive(consumer_rtp_parameters: dict[str, Any]) -> bool:
    """Whether the receiving peer can decode it: as the client's canReceive, the first codec
    must exist and be a media codec (its PT is then one the peer declared)."""
    try:
        first, encoding = (
            consumer_rtp_parameters["codecs"][0],
            consumer_rtp_parameters["encodings"][0],
        )
        return not _is_rtx(first) and _is_int(encoding["ssrc"])
    except (TypeError, KeyError, IndexError, AttributeError):
        return False  # no codec or no encoding: nothing the peer could decode
