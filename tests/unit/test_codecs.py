"""Key-frame detection against real encoder output (aiortc's VP8 and H264 encoders)."""

from __future__ import annotations

import fractions

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from tureen.workers.rtp.codecs import (
    h264_key_frame,
    key_frame_checker,
    vp8_key_frame,
    vp9_key_frame,
)


def frames(count: int):
    for i in range(count):
        frame = av.VideoFrame(width=320, height=240)
        for plane in frame.planes:
            plane.update(bytes([(i * 7) % 256]) * plane.buffer_size)
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        yield frame


@pytest.mark.parametrize(
    ("mime", "check"),
    [("video/VP8", vp8_key_frame), ("video/H264", h264_key_frame)],
)
def test_only_the_first_packet_of_a_key_frame_is_one(mime: str, check) -> None:
    params = {"packetization-mode": "1", "level-asymmetry-allowed": "1", "profile-level-id": "42e01f"}
    encoder = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96, parameters=params))
    results = []
    for i, frame in enumerate(frames(6)):
        payloads, _ = encoder.encode(frame, force_keyframe=i in (0, 4))
        results.append([check(p, 0, len(p)) for p in payloads])
    for i, flags in enumerate(results):
        if i in (0, 4):
            assert flags[0], f"frame {i}: key frame not seen"
            assert not any(flags[1:]) or mime == "video/H264"  # H264 STAP-A/SPS may repeat
        else:
            assert not any(flags), f"frame {i} is a delta frame"


def test_vp8_descriptor_variants() -> None:
    # X=1 with I (15-bit picture id), L, T: descriptor 5 bytes, then P=0 -> key frame.
    assert vp8_key_frame(bytes([0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0x00]), 0, 7)
    assert not vp8_key_frame(bytes([0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0x01]), 0, 7)  # P=1
    assert not vp8_key_frame(bytes([0x00, 0x00]), 0, 2)  # not a partition start
    assert not vp8_key_frame(bytes([0x90, 0xE0]), 0, 2)  # truncated: never raises


def test_vp9_and_h264_bits() -> None:
    assert vp9_key_frame(bytes([0x08]), 0, 1) and not vp9_key_frame(bytes([0x48]), 0, 1)
    assert h264_key_frame(bytes([0x65]), 0, 1)  # IDR
    assert h264_key_frame(bytes([0x18, 0x00, 0x02, 0x67, 0x42]), 0, 5)  # STAP-A with SPS
    assert h264_key_frame(bytes([0x7C, 0x85]), 0, 2)  # FU-A start of an IDR
    assert not h264_key_frame(bytes([0x7C, 0x05]), 0, 2)  # FU-A middle
    assert key_frame_checker("video/rtx") is None and key_frame_checker("VIDEO/VP8") is vp8_key_frame
