"""Key-frame detection against real encoder output: aiortc's VP8 and H264 encoders, and RTP
payloads recorded from ffmpeg 5.1 (libx264 and libvpx with their defaults, `-f rtp`)."""

from __future__ import annotations

import fractions

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from rtp_captures import (
    VPX_INTER_START,
    VPX_KEY_START,
    VPX_KEY_TAIL,
    X264_FU_IDR_END,
    X264_FU_IDR_START,
    X264_GLOBAL_FU_IDR_END,
    X264_GLOBAL_FU_IDR_START,
    X264_GLOBAL_SEI,
    X264_P_SLICE,
    X264_STAP_SPS_PPS,
    X264_STAP_SPS_PPS_SEI,
)
from tureen.workers.rtp.codecs import (
    StartCheck,
    h264_idr_start,
    h264_key_frame,
    key_frame_checker,
    start_check,
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
    assert h264_key_frame(bytes([0x67, 0x42]), 0, 2)  # SPS alone
    assert h264_key_frame(bytes([0x18, 0x00, 0x02, 0x67, 0x42]), 0, 5)  # STAP-A with SPS
    assert h264_key_frame(bytes([0x7C, 0x87]), 0, 2)  # FU-A start of an SPS
    assert not h264_key_frame(bytes([0x68, 0xCE]), 0, 2)  # PPS alone: it names an SPS
    assert not h264_key_frame(bytes([0x65]), 0, 1)  # an IDR slice: its SPS went by before
    assert not h264_key_frame(bytes([0x7C, 0x85]), 0, 2)  # FU-A start of an IDR slice
    assert h264_idr_start(bytes([0x65, 0x88]), 0, 2) and h264_idr_start(bytes([0x7C, 0x85]), 0, 2)
    assert not h264_idr_start(bytes([0x7C, 0x05]), 0, 2)  # FU-A middle
    assert h264_idr_start(bytes([0x18, 0x00, 0x01, 0x06, 0x00, 0x02, 0x65, 0x88]), 0, 8)  # STAP-A
    assert not h264_key_frame(bytes([0x18, 0x00, 0x09, 0x67]), 0, 4)  # STAP-A size past the end
    assert key_frame_checker("video/rtx") is None and key_frame_checker("VIDEO/VP8") is vp8_key_frame
    assert start_check("audio/opus") is None and start_check("video/rtx") is None
    assert start_check("video/VP8") == StartCheck(vp8_key_frame, None)
    assert start_check("Video/H264") == StartCheck(h264_key_frame, h264_idr_start)


def check(fn, payload: bytes) -> bool:
    return fn(payload, 0, len(payload))


def test_libx264_defaults_start_on_the_stap_a_with_sps_and_pps() -> None:
    """libx264 with its defaults over RTP: SPS and PPS (and on the first key frame x264's
    SEI) in a STAP-A before each IDR, whose slice follows in FU-A fragments. Only the STAP-A
    is a start; the IDR's FU-A start is not (a decoder fed from it has no parameter sets)."""
    assert check(h264_key_frame, X264_STAP_SPS_PPS_SEI)
    assert check(h264_key_frame, X264_STAP_SPS_PPS)
    for payload in (X264_FU_IDR_START, X264_FU_IDR_END, X264_P_SLICE):
        assert not check(h264_key_frame, payload)
    assert check(h264_idr_start, X264_FU_IDR_START)
    for payload in (X264_STAP_SPS_PPS_SEI, X264_FU_IDR_END, X264_P_SLICE):
        assert not check(h264_idr_start, payload)


def test_libx264_global_header_has_no_sps_in_band() -> None:
    """-flags +global_header: the parameter sets live in the SDP only; no packet carries an
    SPS, the IDR's FU-A start is the only candidate (the forwarder's bare key frame rule)."""
    for payload in (X264_GLOBAL_SEI, X264_GLOBAL_FU_IDR_START, X264_GLOBAL_FU_IDR_END):
        assert not check(h264_key_frame, payload)
    assert check(h264_idr_start, X264_GLOBAL_FU_IDR_START)
    assert not check(h264_idr_start, X264_GLOBAL_SEI) and not check(h264_idr_start, X264_GLOBAL_FU_IDR_END)


def test_libvpx_key_frame_starts_only_at_its_first_packet() -> None:
    """ffmpeg's VP8 packetizer: X=1, I=1 with a 15-bit picture id. The key frame's first
    packet (S=1, PID 0, P=0) is the start; its tail (S=0) and an inter frame (P=1) are not."""
    assert check(vp8_key_frame, VPX_KEY_START)
    assert not check(vp8_key_frame, VPX_KEY_TAIL)
    assert not check(vp8_key_frame, VPX_INTER_START)
