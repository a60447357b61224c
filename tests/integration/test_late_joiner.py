"""Issue 11 item 4: a consumer starts where a decoder can, checked with real ffmpeg.

An ffmpeg sender (libx264 with its defaults, libvpx VP8, libopus) sends plain RTP into a real
`tureen serve`; a second peer joins late, in the middle of a group of pictures, and an ffmpeg
receiver decodes its consumer from an SDP file. Its stderr must show no decoder complaint
(`non-existing PPS`, `no frame!`, `Keyframe missing`, `decode_slice_header error`, ...) and it
must decode frames. The same happens after the late joiner's consumer is paused and resumed.

Before the fix a consumer was fed from whatever packet came next (an IDR's FU-A tail, a VP8
inter frame, the middle of a frame), and the receiver's first seconds were errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import MEDIA_CODECS, peer_capabilities, running_server
from tureen.shared.client import TureenClient

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (scripts/install-test-deps.sh)"),
]

SENDER_SSRC = 0x1234ABCD
# What a decoder says when it was handed something it cannot start on: every line of the
# decoders themselves ("[h264 @ 0x...] non-existing PPS 0 referenced", "mmco: unref short
# failure" when it starts on a frame whose references it never got), and these from
# libavformat's RTP depacketizers; `-v warning` shows them all.
DECODER_LINE = re.compile(r"^\[(h264|vp8|opus|libopus|libvpx)[^\]]* @ ")
DECODER_COMPLAINTS = (
    "non-existing PPS",
    "no frame!",
    "decode_slice_header error",
    "Keyframe missing",
    "Discarding interframe without a prior keyframe",
    "Missed part of a keyframe",
    "Missed part of the first partition",
    "Received no start marker",
    "error while decoding",
    "Invalid data found",
    "concealing",
    "illegal",
    "corrupt",
)


@dataclass(frozen=True)
class Codec:
    kind: str
    name: str  # the room codec's name
    clock: int
    encoder: list[str]  # ffmpeg input + encoder options of the sender
    parameters: dict[str, Any]
    rtpmap: str  # the receiver's SDP rtpmap encoding name/clock[/channels]
    # The sender keeps its parameter sets out of band (ffmpeg -flags +global_header): the
    # receiver's SDP gets the sender's sprop-parameter-sets.
    out_of_band: bool = False


H264 = Codec(
    "video",
    "H264",
    90000,
    # libx264 with its defaults; only the key-frame interval is set (its default, 250 frames,
    # would make the test wait 10 s; ffmpeg does not answer PLI).
    ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-c:v", "libx264", "-g", "50"],
    {"packetization-mode": 1},
    "H264/90000",
)
# The same with the parameter sets in the SDP only: no SPS/PPS in band, ever.
H264_GLOBAL_HEADER = Codec(
    "video",
    "H264",
    90000,
    [*H264.encoder, "-flags", "+global_header"],
    {"packetization-mode": 1},
    "H264/90000",
    out_of_band=True,
)
VP8 = Codec(
    "video",
    "VP8",
    90000,
    ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-c:v", "libvpx", "-g", "50", "-deadline", "realtime",
     "-b:v", "600k"],
    {},
    "VP8/90000",
)
OPUS = Codec(
    "audio",
    "opus",
    48000,
    ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-ac", "2", "-c:a", "libopus", "-b:a", "64k"],
    {},
    "opus/48000/2",
)


def free_udp_pair() -> int:
    """An even UDP port whose successor is free too (ffmpeg binds RTP and RTCP there)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port % 2 or port >= 65534:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free UDP port pair")


def receiver_sdp(codec: Codec, port: int, consumer: dict[str, Any], fmtp: str = "") -> str:
    rtp = consumer["rtpParameters"]["codecs"][0]
    pt = rtp["payloadType"]
    lines = [
        "v=0",
        "o=- 0 0 IN IP4 127.0.0.1",
        "s=tureen late joiner",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m={codec.kind} {port} RTP/AVP {pt}",
        f"a=rtpmap:{pt} {codec.rtpmap}",
    ]
    params = [f"{k}={v}" for k, v in (rtp.get("parameters") or {}).items()] + ([fmtp] if fmtp else [])
    if params:
        lines.append(f"a=fmtp:{pt} " + ";".join(params))
    return "\r\n".join(lines) + "\r\n"


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """End an ffmpeg we started: SIGINT (it finishes its output), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Receiver:
    """ffmpeg decoding an SDP file into frame checksums (one line per decoded frame)."""

    def __init__(self, tmp: Path, name: str, codec: Codec, port: int, consumer: dict[str, Any], fmtp: str = "") -> None:
        self.sdp = tmp / f"{name}.sdp"
        self.sdp.write_text(receiver_sdp(codec, port, consumer, fmtp))
        self.out = tmp / f"{name}.crc"
        self.err_path = tmp / f"{name}.stderr"
        self._err = open(self.err_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-v", "warning", "-protocol_whitelist", "file,udp,rtp",
             "-i", str(self.sdp), "-f", "framecrc", "-flush_packets", "1", "-y", str(self.out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err,
        )

    def frames(self) -> int:
        if not self.out.exists():
            return 0
        return sum(1 for line in self.out.read_text().splitlines() if line and not line.startswith("#"))

    def wait_frames(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.frames() >= count:
                break
            time.sleep(0.2)
        return self.frames()

    def stop(self) -> str:
        stop(self.proc)
        self._err.close()
        return self.err_path.read_text(errors="replace")


async def late_joiner(tmp: Path, endpoint: str, codec: Codec) -> tuple[str, int, int]:
    """Alice's ffmpeg sends; bob joins late and his ffmpeg decodes; then bob pauses his
    consumer in the middle of a group of pictures and resumes it. Returns bob's receiver's
    stderr, the frames it decoded before the pause and those after the resume."""
    room_id = f"late-{codec.name.lower()}"
    sender: subprocess.Popen | None = None
    receivers: list[Receiver] = []
    async with TureenClient(endpoint) as client:
        await client.create_room(MEDIA_CODECS, room_id=room_id)

        async def req(peer: str | None, method: str, **data: Any) -> Any:
            target = "room" if method in ("queryRoom", "join") else "peer"
            return await client.peer_request(room_id, peer, {"method": method, "target": target, **data})

        async def notify(peer: str, method: str, **data: Any) -> None:
            await client.peer_notify(room_id, peer, {"method": method, "target": "peer", "notification": True, **data})

        try:
            room = await req(None, "queryRoom")
            caps = peer_capabilities(room["rtpCapabilities"])
            await req(None, "join", peerName="alice", rtpCapabilities=caps, spy=False)
            # ffmpeg sends RTCP from a socket of its own (RTP port + 1): the transport is told
            # its RTP address rather than latching the first datagram (comedia).
            alice_port = free_udp_pair()
            answer = await req(
                "alice", "createTransport", id=1001, direction="send", options={},
                plainRtpParameters={"ip": "127.0.0.1", "port": alice_port},
            )
            ip, port = answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"]
            await req(
                "alice", "createProducer", id=1002, kind=codec.kind, transportId=1001, paused=False,
                rtpParameters={
                    "muxId": "0",
                    "codecs": [{"name": codec.name, "mimeType": f"{codec.kind}/{codec.name}", "payloadType": 96,
                                "clockRate": codec.clock, "parameters": codec.parameters,
                                **({"channels": 2} if codec.kind == "audio" else {})}],
                    "headerExtensions": [],
                    "encodings": [{"ssrc": SENDER_SSRC}],
                    "rtcp": {"cname": "alice-ffmpeg", "reducedSize": False, "mux": True},
                },
            )
            sender_sdp = tmp / "alice.sdp"
            sender = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re", *codec.encoder, "-t", "60",
                 "-sdp_file", str(sender_sdp),
                 "-f", "rtp", "-ssrc", str(SENDER_SSRC), "-payload_type", "96",
                 f"rtp://{ip}:{port}?localrtpport={alice_port}&localrtcpport={alice_port + 1}&rtcpport={port}&pkt_size=1200"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            # Bob joins in the middle of a group of pictures (1.3 s into a 2 s one).
            await asyncio.sleep(3.3)
            assert sender.poll() is None, sender.stderr.read().decode() if sender.stderr else ""
            joined = await req(None, "join", peerName="bob", rtpCapabilities=caps, spy=False)
            consumer = next(c for p in joined["peers"] for c in p["consumers"])
            bob_port = free_udp_pair()
            fmtp = ""
            if codec.out_of_band:  # what the app would take from the sender's SDP
                fmtp = next(p for p in sender_sdp.read_text().split(";") if "sprop-parameter-sets" in p).strip()
            receiver = Receiver(tmp, f"bob-{codec.name}", codec, bob_port, consumer, fmtp)
            receivers.append(receiver)
            await req(
                "bob", "createTransport", id=2001, direction="recv", options={},
                plainRtpParameters={"ip": "127.0.0.1", "port": bob_port},
            )
            await asyncio.sleep(0.5)  # ffmpeg has bound its port: what comes next it sees
            await req("bob", "enableConsumer", id=consumer["id"], transportId=2001, paused=False,
                      preferredProfile="default")
            first = await asyncio.to_thread(receiver.wait_frames, 25, 20.0)

            # Bob pauses his consumer in the middle of a group of pictures and resumes later.
            await notify("bob", "pauseConsumer", id=consumer["id"])
            await asyncio.sleep(1.1)
            await notify("bob", "resumeConsumer", id=consumer["id"])
            total = await asyncio.to_thread(receiver.wait_frames, receiver.frames() + 25, 20.0)
            err = receiver.stop()
            return err, first, total - first
        finally:
            for r in receivers:
                with contextlib.suppress(Exception):
                    r.stop()
            if sender is not None:
                stop(sender)
                if sender.stderr is not None:
                    sender.stderr.close()
            await client.close_room(room_id)


def complaints(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if DECODER_LINE.match(line) or any(c.lower() in line.lower() for c in DECODER_COMPLAINTS)
    ]


@pytest.mark.parametrize(
    ("codec", "workers"),
    [(H264, 1), (H264, 2), (H264_GLOBAL_HEADER, 2), (VP8, 2), (OPUS, 2)],
    ids=["h264-one-worker", "h264-piped", "h264-parameter-sets-in-sdp-only", "vp8-piped", "opus-piped"],
)
def test_a_late_joiner_decodes_from_its_first_packet(tmp_path: Path, codec: Codec, workers: int) -> None:
    with running_server(tmp_path, workers=workers) as server:
        err, first, after = asyncio.run(late_joiner(tmp_path, server.endpoint, codec))
    print(f"{codec.name} workers={workers}: {first} frames, {after} more after pause/resume; stderr:\n{err}")
    assert first > 0, f"bob's ffmpeg decoded nothing:\n{err}"
    assert after > 0, f"nothing decoded after resume:\n{err}"
    assert complaints(err) == [], err
    assert os.path.getsize(tmp_path / f"bob-{codec.name}.crc") > 0
