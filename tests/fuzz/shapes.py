"""Valid messages as real clients send them (mediasoup-client 2.4.12 in Chromium, the shapes
of tests/unit/test_capabilities.py and tests/msclient.py): the starting points that the
JSON-driven targets mutate, so that their inputs get past the first check."""

from __future__ import annotations

from typing import Any

AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
ORIENTATION = "urn:3gpp:video-orientation"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"

H264_PARAMS = {"packetization-mode": 1, "profile-level-id": "42e01f", "level-asymmetry-allowed": 1}
MEDIA_CODECS: list[dict[str, Any]] = [
    {"kind": "audio", "name": "opus", "clockRate": 48000, "channels": 2, "parameters": {"useinbandfec": 1}},
    {"kind": "video", "name": "VP8", "clockRate": 90000},
    {"kind": "video", "name": "H264", "clockRate": 90000, "parameters": H264_PARAMS},
]
CHROME_FB = [
    {"type": "goog-remb"},
    {"type": "ccm", "parameter": "fir"},
    {"type": "nack"},
    {"type": "nack", "parameter": "pli"},
]
EXTENSIONS = [
    ("audio", AUDIO_LEVEL, 1),
    ("video", TOFFSET, 2),
    ("audio", ABS_SEND_TIME, 3),
    ("video", ABS_SEND_TIME, 3),
    ("video", ORIENTATION, 4),
    ("audio", MID, 5),
    ("video", MID, 5),
    ("video", RID, 6),
]
JOIN_CAPS: dict[str, Any] = {
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
    "headerExtensions": [{"kind": k, "uri": u, "preferredId": i} for k, u, i in EXTENSIONS],
    "fecMechanisms": [],
}  # fmt: skip
RTCP = {"cname": "Zx3bD9kqT0rQ1fYp", "reducedSize": True, "mux": True}
AUDIO_PRODUCER: dict[str, Any] = {
    "muxId": "0",
    "codecs": [
        {"name": "opus", "mimeType": "audio/opus", "clockRate": 48000, "payloadType": 111,
         "channels": 2, "rtcpFeedback": [], "parameters": {"useinbandfec": 1}},
    ],
    "headerExtensions": [{"uri": AUDIO_LEVEL, "id": 1}, {"uri": ABS_SEND_TIME, "id": 2}, {"uri": MID, "id": 4}],
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
        {"ssrc": 1001, "rtx": {"ssrc": 1002}, "profile": "low"},
        {"ssrc": 1003, "rtx": {"ssrc": 1004}, "profile": "medium"},
        {"ssrc": 1005, "rtx": {"ssrc": 1006}, "profile": "high"},
    ],
}
DTLS_PARAMETERS: dict[str, Any] = {
    "role": "client",
    "fingerprints": [
        {"algorithm": "sha-256", "value": ":".join(["AB"] * 32)},
    ],
}
