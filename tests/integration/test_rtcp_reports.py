"""Issue 11, item 3: RTCP exactly right, with a real `tureen serve` and real UDP sockets.

A plain-RTP producer (opus, 20 ms packets of varied sizes, some padded) and a plain consumer
that receives RTP and RTCP on one socket, on one worker and across two (the consumer fed by a
pipe). Every RTCP datagram the consumer gets is a compound SR + SDES whose CNAME is its
rtpParameters.rtcp.cname; each SR counts exactly the RTP packets that reached the socket
before it (packet count) and their payload bytes (octet count: no header, no padding), and its
RTP timestamp and NTP time agree with the packets' own timestamps within one packet interval.
The sender, in turn, gets its receiver reports as RR + SDES (the worker's CNAME) + REMB-less
compound packets.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from support import MEDIA_CODECS, opus_parameters, peer_capabilities, running_server
from tureen.shared.client import TureenClient
from tureen.workers.rtp import rtcp

pytestmark = pytest.mark.timeout(120)

SSRC = 0x0BADCAFE
CNAME = "alice@tureen.test"
PACKETS = 60
INTERVAL = 0.02  # s: 20 ms of opus per packet
CLOCK = 48000
TS0 = 1_234_567


def blocking_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def receive_until(sock: socket.socket, deadline: float) -> list[tuple[float, bytes]]:
    """(wall-clock time of arrival, datagram) of everything until `deadline` (monotonic),
    with blocking reads: the arrival times are taken as the datagrams come."""
    got: list[tuple[float, bytes]] = []
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            break
        got.append((time.time(), data))
    return got


def payload_size(data: bytes) -> int:
    """RTP payload bytes of a plain packet: no header (CSRCs, extension), no padding."""
    b0 = data[0]
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    return len(data) - offset - (data[-1] if b0 & 0x20 else 0)


async def session(endpoint: str, expect_piped: bool) -> tuple[list[tuple[float, bytes]], list[bytes], int]:
    """Run the session; returns what the consumer's socket got, the RTCP datagrams the sender
    got, and the consumer's SSRC."""
    alice, bob = blocking_socket(), blocking_socket()
    try:
        async with TureenClient(endpoint, timeout=20.0) as client:
            created = await client.create_room(MEDIA_CODECS, room_id="rtcp")
            caps = peer_capabilities(created["rtpCapabilities"])

            async def req(peer: str | None, method: str, **data: Any) -> Any:
                target = "room" if method == "join" else "peer"
                return await client.peer_request("rtcp", peer, {"method": method, "target": target, **data})

            await req(None, "join", peerName="alice", rtpCapabilities=caps)
            await req(None, "join", peerName="bob", rtpCapabilities=caps)
            answer = await req("alice", "createTransport", id=1, direction="send", options={},
                               plainRtpParameters={"ip": "127.0.0.1", "port": alice.getsockname()[1]})
            server = (answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"])
            await req("bob", "createTransport", id=2, direction="recv", options={},
                      plainRtpParameters={"ip": "127.0.0.1", "port": bob.getsockname()[1]})
            parameters = opus_parameters(SSRC)
            parameters["rtcp"]["cname"] = CNAME
            await req("alice", "createProducer", id=3, kind="audio", transportId=1,
                      rtpParameters=parameters, paused=False)
            consumer = await client.next_notification("bob", "newConsumer")
            assert consumer["rtpParameters"]["rtcp"]["cname"] == CNAME
            await req("bob", "enableConsumer", id=consumer["id"], transportId=2, paused=False)
            dump = await client.dump_room("rtcp")
            workers = {p["name"]: p["transports"][0]["worker"] for p in dump["peers"]}
            assert (workers["alice"] != workers["bob"]) is expect_piped, workers

            # The consumer's socket is read in a thread, the sender paces in the loop.
            end = time.monotonic() + PACKETS * INTERVAL + 3.0  # then two SRs after the last packet
            reading = asyncio.ensure_future(asyncio.to_thread(receive_until, bob, end))
            rng = random.Random(11)
            t0 = time.time()
            for seq in range(PACKETS):
                # The packet's timestamp is its send time on the 48 kHz clock: the SR's
                # NTP -> RTP mapping must continue that line.
                ts = TS0 + round((time.time() - t0) * CLOCK)
                pad = rng.choice((0, 0, 0, 4, 7))
                body = bytes(rng.randrange(256) for _ in range(rng.randrange(10, 200)))
                if pad:
                    body += bytes(pad - 1) + bytes([pad])
                header = struct.pack("!BBHII", 0x80 | (0x20 if pad else 0), 111, 100 + seq, ts, SSRC)
                alice.sendto(header + body, server)
                await asyncio.sleep(INTERVAL)
            received = await reading
            alice.settimeout(0.2)
            to_sender: list[bytes] = []
            while True:
                try:
                    to_sender.append(alice.recv(65535))
                except TimeoutError:
                    break
            return received, to_sender, consumer["rtpParameters"]["encodings"][0]["ssrc"]
    finally:
        alice.close()
        bob.close()


@pytest.mark.parametrize(
    ("workers", "fanout"), [(1, "auto"), (2, "auto"), (2, "python")], ids=["one-worker", "piped", "python-core"]
)
def test_sender_reports_count_what_the_consumer_got_and_carry_its_cname(
    tmp_path: Path, workers: int, fanout: str
) -> None:
    with running_server(tmp_path, workers=workers, extra=["--fanout", fanout]) as server:
        received, to_sender, consumer_ssrc = asyncio.run(session(server.endpoint, expect_piped=workers == 2))

    rtp_seen = 0
    payload_seen = 0
    last_rtp: tuple[float, int] | None = None  # (arrival, timestamp) of the newest packet
    reports = []
    for arrival, data in received:
        if not 192 <= data[1] <= 223:
            assert struct.unpack_from("!I", data, 8)[0] == consumer_ssrc
            rtp_seen += 1
            payload_seen += payload_size(data)
            last_rtp = (arrival, struct.unpack_from("!I", data, 4)[0])
            continue
        # Every compound datagram: SR then SDES, the CNAME of the consumer's rtpParameters.
        assert [pt for pt, _, _, _ in rtcp.iter_compound(data)] == [rtcp.SR, rtcp.SDES], data.hex()
        assert rtcp.sdes_cnames(data) == [(consumer_ssrc, CNAME)]
        ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", data, 4)
        assert ssrc == consumer_ssrc
        # Counts: exactly what reached the socket before this report (loopback loses none).
        assert (packets, octets) == (rtp_seen, payload_seen)
        assert last_rtp is not None
        # RTP time of the report's NTP instant, from the newest packet's timestamp and the
        # time it arrived: within one packet interval (960 at 48 kHz) of the SR's.
        expected = last_rtp[1] + round((rtcp.ntp_to_unix(ntp) - last_rtp[0]) * CLOCK)
        drift = (rtp_ts - expected + 0x80000000) % 0x100000000 - 0x80000000
        assert abs(drift) <= INTERVAL * CLOCK, (drift, packets)
        reports.append((packets, octets))
    assert rtp_seen == PACKETS
    assert reports and reports[-1] == (PACKETS, payload_seen), reports
    # Towards the sender: every compound packet starts with an RR and carries the worker's CNAME.
    assert to_sender, "the sender got no receiver report"
    for data in to_sender:
        kinds = [pt for pt, _, _, _ in rtcp.iter_compound(data)]
        assert kinds[:2] == [rtcp.RR, rtcp.SDES], kinds
        ((sdes_ssrc, cname),) = rtcp.sdes_cnames(data)
        assert sdes_ssrc == struct.unpack_from("!I", data, 4)[0] and cname.startswith("tureen-")
