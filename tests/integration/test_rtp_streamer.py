"""rtpStreamer.create with real ffmpeg on both ends (issue 11, item 6: v2's RtpStreamer):
ffmpeg sends VP8 (libvpx) or opus (libopus) as plain RTP into a producer; a streamer sends
that producer to a second ffmpeg, which reads the answer's SDP file as is and records to a
file; ffprobe and a decode of that file must show the frames, with no decoding error.
Bounded: each ffmpeg runs a few seconds under a subprocess timeout; loopback only.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import MEDIA_CODECS, peer_capabilities, running_server
from tureen.shared.client import TureenClient

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg"),
]

SSRC = 55_667_788
FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]

# (kind, ffmpeg input and encoder, producer codec, output file)
CASES = {
    "vp8": (
        "video",
        ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-c:v", "libvpx", "-deadline", "realtime",
         "-b:v", "400k", "-g", "15", "-pix_fmt", "yuv420p"],
        {"name": "VP8", "mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000},
        "out.webm",
    ),
    "opus": (
        "audio",
        ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-ac", "2", "-c:a", "libopus", "-b:a", "64k"],
        {"name": "opus", "mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2},
        "out.ogg",
    ),
}


def free_udp_pair() -> int:
    """An even UDP port whose successor is free too (ffmpeg's RTP sender takes both)."""
    for _ in range(50):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        if port % 2 == 0 and port < 65534:
            b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                b.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                pass
            finally:
                b.close()
        a.close()
    raise RuntimeError("no free UDP port pair")


async def join_sender(client: TureenClient, room_id: str, kind: str, codec: dict[str, Any], local_port: int) -> int:
    """alice sends `codec` from 127.0.0.1:`local_port` (ffmpeg) into a plain transport;
    returns the server's port for it."""
    caps = await client.peer_request(room_id, None, {"method": "queryRoom", "target": "room"})
    await client.peer_request(room_id, None, {
        "method": "join", "target": "room", "peerName": "alice",
        "rtpCapabilities": peer_capabilities(caps["rtpCapabilities"]), "spy": False,
    })
    answer = await client.peer_request(room_id, "alice", {
        "method": "createTransport", "target": "peer", "id": 1001, "direction": "send", "options": {},
        "plainRtpParameters": {"ip": "127.0.0.1", "port": local_port},
    })
    await client.peer_request(room_id, "alice", {
        "method": "createProducer", "target": "peer", "id": 2001, "kind": kind, "transportId": 1001, "paused": False,
        "rtpParameters": {"codecs": [codec], "headerExtensions": [], "encodings": [{"ssrc": SSRC}],
                          "rtcp": {"cname": "ffmpeg-sender", "reducedSize": True, "mux": True}},
    })
    return int(answer["plainRtpParameters"]["port"])


@pytest.mark.parametrize("case", list(CASES))
async def test_ffmpeg_records_a_streamed_producer_from_the_streamers_sdp(tmp_path: Path, case: str) -> None:
    kind, encoder, codec, out_name = CASES[case]
    sender_port, receiver_port = free_udp_pair(), free_udp_pair()
    with running_server(tmp_path, workers=1) as server:
        async with TureenClient(server.endpoint) as client:
            await client.create_room(MEDIA_CODECS, room_id="rec")
            server_port = await join_sender(client, "rec", kind, codec, sender_port)
            sender = subprocess.Popen(
                [*FFMPEG, "-re", *encoder, "-t", "12", "-ssrc", str(SSRC), "-payload_type", str(codec["payloadType"]),
                 "-f", "rtp", f"rtp://127.0.0.1:{server_port}?localport={sender_port}&pkt_size=1200"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            try:
                answer = await client.request(
                    "rtpStreamer.create", roomId="rec", producerId=2001, remoteIP="127.0.0.1", remotePort=receiver_port
                )
                sdp_path = tmp_path / "streamer.sdp"
                sdp_path.write_text(answer["sdp"])
                out = tmp_path / out_name
                receiver = await asyncio.create_subprocess_exec(
                    *FFMPEG, "-protocol_whitelist", "file,udp,rtp", "-i", str(sdp_path), "-t", "4", "-c", "copy",
                    "-y", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )
                try:
                    _, err = await asyncio.wait_for(receiver.communicate(), 30)
                except TimeoutError:
                    receiver.kill()
                    await receiver.wait()
                    raise
                assert receiver.returncode == 0, err.decode(errors="replace")
            finally:
                sender.kill()
                sender.wait(timeout=10)
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(out)],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout)
    stream = probe["streams"][0]
    frames = int(stream["nb_read_frames"])
    decoded = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", str(out), "-f", "null", "-"],
        capture_output=True, text=True, timeout=30,
    )
    print(f"\n{case}: {stream['codec_name']} {frames} frames in {out.stat().st_size} bytes; "
          f"decode errors: {decoded.stderr.strip() or 'none'}", file=sys.stderr)
    assert stream["codec_name"] == case
    if kind == "video":
        assert (stream["width"], stream["height"]) == (320, 240)
        assert frames >= 60  # 4 s at 30 fps, less what came before the first key frame
    else:
        assert frames >= 150  # 4 s of 20 ms opus frames, give or take the start
    assert decoded.returncode == 0 and decoded.stderr.strip() == ""
