"""Issue 11 item 2: Tureen NACKs a sender itself (RFC 4585 generic NACK), as mediasoup v2's
NackGenerator does. A real `tureen serve` with two workers; a plain-RTP VP8 sender (a Python
UDP socket, its codec with rtcpFeedback nack) skips sequence numbers mid-stream and across the
65535 wrap; it must get NACKs for exactly those, and what it resends (on its RTX stream and on
the media SSRC) must reach both plain-RTP receivers in their own numbering. Its opus producer,
without nack in its rtcpFeedback, skips some too and gets no NACK."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from support import (
    MEDIA_CODECS,
    drain,
    opus_parameters,
    peer_capabilities,
    rtp_packet,
    running_server,
    udp_socket,
)
from tureen.shared.client import TureenClient
from tureen.workers.rtp import rtcp

pytestmark = pytest.mark.timeout(120)

SSRC = 0x0A0B0C0D
RTX_SSRC = 0x0A0B0C0E
AUDIO_SSRC = 0x0A0B0C0F
PT, RTX_PT = 96, 97
FIRST = 65500
LAST = 20  # after the wrap
MID_GAP = [65510, 65511]  # 65510 comes back on RTX, 65511 on the media SSRC
WRAP_GAP = [65535, 0]  # across the wrap, both on the media SSRC
NACK_WAIT = 1.0  # s: the "within a second"; a bounded wait, each gap


def all_seqs() -> list[int]:
    return [s & 0xFFFF for s in range(FIRST, 0x10000 + LAST + 1)]


def payload(seq: int) -> bytes:
    """VP8: the first packet begins a key frame (consumers may start there), the others are
    inter frames; the sender's sequence number rides in the payload to match copies later."""
    descriptor = b"\x10" + (b"\x00" if seq == FIRST else b"\x01")
    return descriptor + struct.pack("!H", seq) + b"\x00" * 200


def media(seq: int) -> bytes:
    ts = 1000 + 3000 * ((seq - FIRST) & 0xFFFF)  # one packet a frame
    return rtp_packet(seq, ts, SSRC, PT, payload(seq), marker=True)


def rtx(seq: int, rtx_seq: int) -> bytes:
    """RFC 4588: the RTX stream's own seq, SSRC and PT; the original seq first in its payload."""
    ts = 1000 + 3000 * ((seq - FIRST) & 0xFFFF)
    return rtp_packet(rtx_seq, ts, RTX_SSRC, RTX_PT, struct.pack("!H", seq) + payload(seq), marker=True)


def nacked(sock: socket.socket, duration: float, until: set[int] | None = None) -> set[int]:
    """Sequence numbers NACKed for SSRC in the RTCP reaching `sock` within `duration` s
    (or once all of `until` were)."""
    seen: set[int] = set()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if len(data) < 8 or not 192 <= data[1] <= 223:
            continue
        for ssrc, seqs in rtcp.parse(data).nacks:
            assert ssrc == SSRC, f"NACK for an unknown SSRC {ssrc}"
            seen.update(seqs)
        if until is not None and until <= seen:
            break
    return seen


class NackSession:
    def __init__(self, client: TureenClient) -> None:
        self.client = client
        self.alice = udp_socket()
        self.receivers = {"bob": udp_socket(), "carol": udp_socket()}
        self.server: tuple[str, int] = ("", 0)

    async def req(self, peer: str | None, method: str, **data: Any) -> Any:
        target = "room" if method in ("queryRoom", "join") else "peer"
        return await self.client.peer_request("nack", peer, {"method": method, "target": target, **data})

    async def setup(self) -> None:
        room = await self.req(None, "queryRoom")
        caps = peer_capabilities(room["rtpCapabilities"])
        for name in ("alice", *self.receivers):
            await self.req(None, "join", peerName=name, rtpCapabilities=caps, spy=False)
        answer = await self.req(
            "alice", "createTransport", id=1, direction="send", options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": self.alice.getsockname()[1]},
        )
        self.server = (answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"])
        for i, (name, sock) in enumerate(self.receivers.items()):
            await self.req(
                name, "createTransport", id=10 + i, direction="recv", options={},
                plainRtpParameters={"ip": "127.0.0.1", "port": sock.getsockname()[1]},
            )
        params = {
            "muxId": "1",
            "codecs": [
                {"name": "VP8", "mimeType": "video/VP8", "payloadType": PT, "clockRate": 90000,
                 "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]},
                {"name": "rtx", "mimeType": "video/rtx", "payloadType": RTX_PT, "clockRate": 90000,
                 "parameters": {"apt": PT}},
            ],
            "headerExtensions": [],
            "encodings": [{"ssrc": SSRC, "rtx": {"ssrc": RTX_SSRC}}],
            "rtcp": {"cname": "alice-cam", "reducedSize": True, "mux": True},
        }
        await self.req("alice", "createProducer", id=2, kind="video", transportId=1, rtpParameters=params, paused=False)
        for i, name in enumerate(self.receivers):
            consumer = await self.client.next_notification(name, "newConsumer")
            await self.req(
                name, "enableConsumer", id=consumer["id"], transportId=10 + i, paused=False,
                preferredProfile="default",
            )
        # Audio without nack in its rtcpFeedback (opus as mediasoup-client sends it): its
        # gaps are never NACKed (mediasoup v2's rule). `nacked` fails on a NACK for its SSRC.
        await self.req(
            "alice", "createProducer", id=3, kind="audio", transportId=1,
            rtpParameters=opus_parameters(AUDIO_SSRC), paused=False,
        )

    def send(self, data: bytes) -> None:
        self.alice.sendto(data, self.server)

    def close(self) -> None:
        self.alice.close()
        for sock in self.receivers.values():
            sock.close()


def check_receiver(name: str, packets: list[bytes]) -> None:
    """Every packet the sender sent, resent ones included, reached the receiver once with one
    consumer SSRC and one constant offset between the sender's numbering and the consumer's."""
    media_packets = [p for p in packets if len(p) >= 12 and not 192 <= p[1] <= 223]
    got: dict[int, int] = {}
    ssrcs = set()
    for p in media_packets:
        _, _, out_seq, _, ssrc = struct.unpack_from("!BBHII", p)
        ssrcs.add(ssrc)
        got[struct.unpack_from("!H", p, 14)[0]] = out_seq
    assert len(ssrcs) == 1, f"{name}: copies on several SSRCs {ssrcs}"
    missing = sorted(set(all_seqs()) - set(got))
    assert not missing, f"{name} never got {missing}"
    offsets = {(out - seq) & 0xFFFF for seq, out in got.items()}
    assert len(offsets) == 1, f"{name}: the resent packets were renumbered inconsistently: {offsets}"


async def run(endpoint: str) -> dict[str, Any]:
    async with TureenClient(endpoint) as client:
        await client.create_room(MEDIA_CODECS, room_id="nack")
        s = NackSession(client)
        try:
            await s.setup()
            gaps = set(MID_GAP + WRAP_GAP)
            sent = [seq for seq in all_seqs() if seq not in gaps]
            # First half: up to just before the wrap gap (the mid gap is in it).
            head = [seq for seq in sent if seq >= FIRST]
            for seq in (*range(1, 5), *range(8, 12)):  # audio: 5, 6 and 7 missing
                s.send(rtp_packet(seq, seq * 960, AUDIO_SSRC, 111))
            for seq in head:
                s.send(media(seq))
            got = await asyncio.to_thread(nacked, s.alice, NACK_WAIT, set(MID_GAP))
            assert got == set(MID_GAP), f"NACKed {sorted(got)}, missing were {MID_GAP}"
            for seq in (s for s in sent if s < FIRST):  # past the wrap
                s.send(media(seq))
            got = await asyncio.to_thread(nacked, s.alice, NACK_WAIT, set(WRAP_GAP))
            # Retries of the mid gap may still be under way; nothing else may be asked for.
            assert set(WRAP_GAP) <= got <= gaps, f"NACKed {sorted(got)}, missing were {WRAP_GAP}"
            # The sender repairs: one on RTX, the rest on the media SSRC.
            s.send(rtx(MID_GAP[0], 7))
            for seq in (MID_GAP[1], *WRAP_GAP):
                s.send(media(seq))
            received = {
                name: await asyncio.to_thread(drain, sock, 3.0, len(all_seqs()) + 20)
                for name, sock in s.receivers.items()
            }
            for name, packets in received.items():
                check_receiver(name, packets)
            # Once repaired, nothing is NACKed again (retries of a repaired packet stop).
            await asyncio.to_thread(nacked, s.alice, 0.2)  # what was under way
            late = await asyncio.to_thread(nacked, s.alice, 0.5)
            assert late == set(), f"NACKed {sorted(late)} after the repair"
            dump = await client.dump_room("nack")
            worker = {p["name"]: p["worker"] for p in dump["peers"]}["alice"]
            state = await client.dump_worker(worker)
            local = [p for p in state["producers"] if p["transportId"] is not None]
            audio = next(p for p in local if p["kind"] == "audio")["streams"][0]
            assert audio["nack"] is None and audio["lost"] == 3, audio
            return next(p for p in local if p["kind"] == "video")["streams"][0]
        finally:
            s.close()
            await client.close_room("nack")


def test_the_sender_gets_nacks_for_exactly_its_gaps_and_every_consumer_the_repairs(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2) as server:
        stream = asyncio.run(run(server.endpoint))
    assert stream["nack"] is not None, "no NACK generator on a codec with rtcpFeedback nack"
    counters = stream["nack"]
    assert counters["recovered"] == 4 and counters["pending"] == 0, counters
    assert counters["requested"] >= 4 and counters["resets"] == 0, counters
