"""Key-frame detection against real encoder output: aiortc's VP8 and H264 encoders, and RTP
payloads recorded from ffmpeg 5.1 (libx264 and libvpx with their defaults, `-f rtp`)."""

from __future__ import annotations

import fractions

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from tureen.workers.rtp.codecs import (
    StartCheck,
    h264_idr_start,
    h264_key_frame,
    key_frame_checker,
    start_check,
    vp8_key_frame,
    vp9_key_frame,
)

# RTP payloads (after the 12-byte header) recorded from ffmpeg 5.1 sending to a UDP socket:
#   ffmpeg -re -f lavfi -i testsrc=size=320x240:rate=30 -c:v libx264 -g 30 -f rtp rtp://...
#   (the same with -flags +global_header for X264_GLOBAL_*)
#   ffmpeg -re -f lavfi -i testsrc=size=320x240:rate=25 -c:v libvpx -g 25 -deadline realtime
#          -b:v 600k -f rtp rtp://...?pkt_size=1200
# Long payloads are cut after 48 bytes: the checkers read only their first bytes.

# first key frame: STAP-A of SPS, PPS and x264's SEI (seq 798, marker 0, payload 721 bytes)
X264_STAP_SPS_PPS_SEI = bytes.fromhex(
    "18001967f4000d919b28283f6022000003000200000300781e28532c000668ebe3c4484402ab0605ffffa7dc45e9bde6"
    "d948b7962cd820d923eeef78323634202d20636f7265203136342072333039352062616565343030202d20482e323634"
    "2f4d5045472d342041564320636f646563202d20436f70796c65667420323030332d32303232202d20687474703a2f2f"
    "7777772e766964656f6c616e2e6f72672f783236342e68746d6c202d206f7074696f6e733a2063616261633d31207265"
    "663d33206465626c6f636b3d313a303a3020616e616c7973653d3078333a3078313133206d653d686578207375626d65"
    "3d37207073793d31207073795f72643d312e30303a302e3030206d697865645f7265663d31206d655f72616e67653d31"
    "36206368726f6d615f6d653d31207472656c6c69733d31203878386463743d312063716d3d3020646561647a6f6e653d"
    "32312c313120666173745f70736b69703d31206368726f6d615f71705f6f66667365743d3420746872656164733d3320"
    "6c6f6f6b61686561645f746872656164733d3120736c696365645f746872656164733d30206e723d3020646563696d61"
    "74653d3120696e7465726c616365643d3020626c757261795f636f6d7061743d3020636f6e73747261696e65645f696e"
    "7472613d3020626672616d65733d3320625f707972616d69643d3220625f61646170743d3120625f626961733d302064"
    "69726563743d3120776569676874623d31206f70656e5f676f703d3020776569676874703d32206b6579696e743d3330"
    "206b6579696e745f6d696e3d33207363656e656375743d343020696e7472615f726566726573683d302072635f6c6f6f"
    "6b61686561643d33302072633d637266206d62747265653d31206372663d32332e302071636f6d703d302e3630207170"
    "6d696e3d302071706d61783d3639207170737465703d342069705f726174696f3d312e34302061713d313a312e303000"
    "80"
)
# its IDR slice, FU-A start (seq 799, marker 0, payload 1460 bytes, first 48 kept)
X264_FU_IDR_START = bytes.fromhex(
    "7c8588840037fffef687f814d95813ba7ff3d3689900021754389d3a30f1311475fba337a5b41f01471f269ed4f9d1b5"
)
# its IDR slice, FU-A end (seq 800, marker 1, payload 1387 bytes, first 48 kept)
X264_FU_IDR_END = bytes.fromhex(
    "7c45661344dfa508f37a1e7b22756441035b8245001afde93b41ece9aea89520d6da49bc288825b59899914bf9544027"
)
# next frame: a non-IDR slice (NAL 1) (seq 801, marker 1, payload 636 bytes, first 48 kept)
X264_P_SLICE = bytes.fromhex(
    "419a246c437ffea7b6e4ba6823945f9bd0700603f2c689f96d17d1765ecf1c2c43cf8171fcd5bbf420f5457642f43e2f"
)
# next key frame: STAP-A of SPS and PPS (seq 830, marker 0, payload 36 bytes)
X264_STAP_SPS_PPS = bytes.fromhex(
    "18001967f4000d919b28283f6022000003000200000300781e28532c000668ebe3c44844"
)
# -flags +global_header: x264's SEI alone before the first IDR (seq 3350, marker 0, payload 683 bytes, first 48 kept)
X264_GLOBAL_SEI = bytes.fromhex(
    "0605ffffa7dc45e9bde6d948b7962cd820d923eeef78323634202d20636f726520313634207233303935206261656534"
)
# -flags +global_header: IDR slice FU-A start, no SPS/PPS in band (seq 3351, marker 0, payload 1460 bytes, first 48 kept)
X264_GLOBAL_FU_IDR_START = bytes.fromhex(
    "7c8588840037fffef687f814d95813ba7ff3d3689900021754389d3a30f1311475fba337a5b41f01471f269ed4f9d1b5"
)
# -flags +global_header: IDR slice FU-A end (seq 3352, marker 1, payload 1387 bytes, first 48 kept)
X264_GLOBAL_FU_IDR_END = bytes.fromhex(
    "7c45661344dfa508f37a1e7b22756441035b8245001afde93b41ece9aea89520d6da49bc288825b59899914bf9544027"
)
# libvpx key frame, first packet (S=1, PID 0, P=0) (seq 3561, marker 0, payload 1188 bytes, first 48 kept)
VPX_KEY_START = bytes.fromhex(
    "90808000b05f009d012a4001f00000470885858899848802023a816217fecd684bb93fec7417c03fa0321f6f80ff01fc"
)
# the same key frame's second packet (S=0) (seq 3562, marker 0, payload 1188 bytes, first 48 kept)
VPX_KEY_TAIL = bytes.fromhex(
    "808080001c2d7d185eca351aa7cb159a00de2f5aa65d67b8c953909e3321be4699b43ccc9bd9343de1a18a37305e664d"
)
# the next frame, an inter frame (S=1, P=1) (seq 3566, marker 1, payload 141 bytes, first 48 kept)
VPX_INTER_START = bytes.fromhex(
    "908080015108000710f4001866fea3bfdbfeefeb7634af5c68c000556eea689cd878157b1e279581794afb2b5ca91891"
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
