"""Real worker processes driven over ZeroMQ exactly as the supervisor drives them
(docs/internals.md), with real RTP over UDP on 127.0.0.1. Every wait is bounded; every
process is stopped by pid at the end of its test."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
import zmq
from tureen.shared.config import Config
from tureen.shared.rtp.packet import RtpPacket, is_rtcp_pt
from tureen.workers import native_loop
from tureen.workers.rtp import rtcp

pytestmark = pytest.mark.timeout(60)

PRODUCER_PT, ROOM_PT = 100, 101
SOURCE_SSRC = 0x11111111


class WorkerProcess:
    """One `python -m tureen.workers.main` with the supervisor's end of its channel."""

    def __init__(self, ctx: zmq.Context, run_dir: Path, index: int, **config: Any) -> None:
        self.index = index
        self.run_dir = run_dir
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(f"ipc://{run_dir}/worker-{index}.ipc")
        cfg = Config(rtc_ipv4="127.0.0.1", log_level="debug").updated(**config)
        self.log_path = run_dir / f"worker-{index}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "tureen.workers.main",
                "--index", str(index), "--run-dir", str(run_dir),
                "--config", orjson.dumps(cfg.to_dict()).decode(),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        ready = self.wait_event("worker.ready", timeout=15)
        assert ready == {"event": "worker.ready", "index": index, "pid": self.proc.pid}

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        if self.sock.poll(int(timeout * 1000)):
            return orjson.loads(self.sock.recv())
        return None

    def wait_event(self, name: str, timeout: float = 5, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev["event"] == name and all(ev.get(k) == v for k, v in match.items()):
                    self.events.remove(ev)
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event {name} {match} within {timeout} s; got {self.events}\n{self.log()}")
            msg = self._recv(left)
            if msg is not None:
                assert "event" in msg, f"unexpected reply {msg}"
                self.events.append(msg)

    def send_raw(self, frame: bytes, timeout: float = 5) -> dict[str, Any]:
        """Send any frame; return the next reply (events are kept aside)."""
        self.sock.send(frame)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._recv(left)
            if msg is None:
                break
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg
        raise AssertionError(f"no reply within {timeout} s\n{self.log()}")

    def request(self, method: str, **params: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        reply = self.send_raw(orjson.dumps({"id": request_id, "method": method, **params}))
        assert reply["id"] == request_id, reply
        return reply

    def ok(self, method: str, **params: Any) -> Any:
        reply = self.request(method, **params)
        assert reply["ok"] is True, f"{method} failed: {reply}"
        return reply["data"]

    def error(self, method: str, **params: Any) -> dict[str, Any]:
        reply = self.request(method, **params)
        assert reply["ok"] is False, f"{method} should have failed: {reply}"
        return reply["error"]

    def counters(self) -> dict[str, int]:
        return self.ok("worker.dump")["counters"]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.sock.close()
        self._log.close()


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)  # never hang teardown on a socket a failed test left open


@pytest.fixture
def spawn(ctx: zmq.Context, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(index: int = 0, **config: Any) -> WorkerProcess:
        worker = WorkerProcess(ctx, tmp_path, index, **config)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def udp() -> Iterator[Callable[[], socket.socket]]:
    sockets: list[socket.socket] = []

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        return sock

    yield make
    for sock in sockets:
        sock.close()


def receive(sock: socket.socket, count: int, timeout: float = 3.0) -> list[RtpPacket]:
    """Exactly `count` RTP packets (fails on fewer within timeout). RTCP on the same port
    (the consumer's sender reports, sent on their own clock) is skipped: read as RTP, an SR's
    length field looked like a stray sequence number 6."""
    out: list[RtpPacket] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(out)} of {count} packets within {timeout} s")
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            continue
        if len(data) > 1 and not is_rtcp_pt(data[1]):
            out.append(RtpPacket.parse(data))
    return out


def nothing_arrives(sock: socket.socket, wait: float = 0.3) -> bool:
    """No RTP packet within `wait` seconds (RTCP is skipped, as in `receive`)."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return True
        if len(data) > 1 and not is_rtcp_pt(data[1]):
            return False
    return True


# Each packet is the first of a VP8 key frame (descriptor S=1, PID 0; payload header P=0):
# a video consumer starts only at one (docs/media-quality.md), so here at any packet.
PAYLOAD = bytes([0x10, 0x00]) + b"\xab" * 98


def rtp(seq: int, ssrc: int = SOURCE_SSRC, pt: int = PRODUCER_PT, ext: list | None = None) -> bytes:
    packet = RtpPacket(payload_type=pt, sequence_number=seq & 0xFFFF, timestamp=seq * 3000, ssrc=ssrc,
                       payload=PAYLOAD)
    if ext is not None:
        packet.set_extensions(ext)
    return packet.serialize()


def send(sock: socket.socket, dest: tuple[str, int], seqs: range, **kw: Any) -> None:
    for seq in seqs:
        sock.sendto(rtp(seq, **kw), dest)


def producer_params(producer_id: int, transport_id: int | None, **over: Any) -> dict[str, Any]:
    return {
        "producerId": producer_id,
        "kind": "video",
        "transportId": transport_id,
        "paused": False,
        "streams": [{"ssrc": SOURCE_SSRC, "rtxSsrc": SOURCE_SSRC + 1, "profile": "default"}],
        "payloadTypes": [[PRODUCER_PT, ROOM_PT], [PRODUCER_PT + 1, ROOM_PT + 1]],
        "headerExtensionIds": [[3, 5], [6, 6]],
        "codecs": [{"payloadType": ROOM_PT, "mimeType": "video/VP8", "clockRate": 90000, "rtxPayloadType": ROOM_PT + 1}],
        **over,
    }


def consumer_params(consumer_id: int, producer_id: int, transport_id: int, ssrc: int, **over: Any) -> dict[str, Any]:
    return {
        "consumerId": consumer_id,
        "producerId": producer_id,
        "transportId": transport_id,
        "kind": "video",
        "ssrc": ssrc,
        "rtxSsrc": None,
        "paused": False,
        "preferredProfile": "default",
        **over,
    }


def assert_continuous(packets: list[RtpPacket], start: int | None = None) -> None:
    seqs = [p.sequence_number for p in packets]
    first = seqs[0] if start is None else start
    assert seqs == [(first + i) & 0xFFFF for i in range(len(seqs))], seqs


class Session:
    """Worker 0: producer transport 1 (sender), consumer transports 2 and 3 (receivers A, B)."""

    def __init__(self, worker: WorkerProcess, udp: Callable[[], socket.socket]) -> None:
        self.w = worker
        self.sender, self.rx_a, self.rx_b = udp(), udp(), udp()
        src = self.sender.getsockname()
        local = worker.ok("transport.createPlain", transportId=1, remoteIp=src[0], remotePort=src[1], comedia=False)
        self.dest = (local["ip"], local["port"])
        self.ports = {}
        for tid, rx in ((2, self.rx_a), (3, self.rx_b)):
            info = worker.ok("transport.createPlain", transportId=tid)
            worker.ok("transport.connectPlain", transportId=tid, remoteIp="127.0.0.1", remotePort=rx.getsockname()[1])
            self.ports[tid] = info["port"]
        worker.ok("producer.create", **producer_params(10, 1))
        worker.ok("consumer.create", **consumer_params(20, 10, 2, ssrc=0xAAAA0001))
        worker.ok("consumer.create", **consumer_params(21, 10, 3, ssrc=0xBBBB0001))

    def send(self, seqs: range, **kw: Any) -> None:
        send(self.sender, self.dest, seqs, **kw)


# -- one worker ---------------------------------------------------------------------------


def test_worker_starts_reports_ready_and_info(spawn: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    worker = spawn(0)
    info = worker.ok("worker.info")
    assert info["index"] == 0 and info["pid"] == worker.proc.pid
    for key in ("transports", "producers", "consumers", "packetsIn", "packetsOut"):
        assert info[key] == 0
    assert isinstance(info["cpuPercent"], float)
    assert (tmp_path / "pipe-0.ipc").exists()


def test_worker_slice_us_is_asked_for_at_start_by_every_thread_and_reported(spawn) -> None:
    assert Config().worker_slice_us == 100  # the default (docs/benchmarks.md, "The pipe hop")
    from tureen.workers import sched_slice

    default = sched_slice.slice_us()
    if not default:
        pytest.skip("sched_getattr reports no slice for normal tasks here (Linux < 6.12)")
    worker = spawn(0, worker_slice_us=300)
    plain = spawn(1, worker_slice_us=0)
    assert worker.ok("worker.info")["sliceUs"] == 300
    assert worker.ok("worker.dump")["sched"] == {"sliceUs": 300, "askedSliceUs": 300}
    # Read back from outside, per thread: ZeroMQ's I/O threads started after the call too.
    tids = [int(t) for t in os.listdir(f"/proc/{worker.proc.pid}/task")]
    assert len(tids) > 1
    assert {sched_slice.slice_us(tid) for tid in tids} == {300}
    # 0 asks nothing: the kernel's own slice.
    assert plain.ok("worker.info")["sliceUs"] == default
    assert plain.ok("worker.dump")["sched"] == {"sliceUs": default, "askedSliceUs": 0}


def test_producer_packets_reach_both_consumers_rewritten(spawn, udp) -> None:
    s = Session(spawn(0, rtc_min_port=41000, rtc_max_port=41999), udp)
    assert 41000 <= s.dest[1] <= 41999
    s.send(range(65530, 65550), ext=[(3, b"\x01"), (4, b"\x02\x03"), (6, b"\x04")])
    for rx, ssrc in ((s.rx_a, 0xAAAA0001), (s.rx_b, 0xBBBB0001)):
        got = receive(rx, 20)
        assert {p.ssrc for p in got} == {ssrc}
        assert {p.payload_type for p in got} == {ROOM_PT}
        assert_continuous(got)
        # extension 3 -> 5, unmapped 4 dropped (padding), 6 kept
        assert got[0].extensions == [(5, b"\x01"), (6, b"\x04")]
        assert got[0].payload == PAYLOAD
        assert [p.timestamp for p in got] == [(seq * 3000) & 0xFFFFFFFF for seq in range(65530, 65550)]
    assert {s.w.wait_event("consumer.effectiveProfile")["consumerId"] for _ in range(2)} == {20, 21}
    assert s.w.events == []
    info = s.w.ok("worker.info")
    assert (info["transports"], info["producers"], info["consumers"]) == (3, 1, 2)
    assert info["packetsIn"] == 20 and info["packetsOut"] == 40
    dump = s.w.ok("worker.dump")
    assert {c["consumerId"]: c["packets"] for c in dump["consumers"]} == {20: 20, 21: 20}
    assert {c["consumerId"]: c["effectiveProfile"] for c in dump["consumers"]} == {20: "default", 21: "default"}


def test_consumer_pause_resume_keeps_its_sequence_continuous(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    s.send(range(100, 110))
    first_a = receive(s.rx_a, 10)
    all_b = receive(s.rx_b, 10)
    s.w.ok("consumer.pause", consumerId=20)
    s.send(range(110, 130))
    all_b += receive(s.rx_b, 20)
    assert nothing_arrives(s.rx_a)
    s.w.ok("consumer.resume", consumerId=20)
    s.send(range(130, 140))
    assert_continuous(first_a + receive(s.rx_a, 10))  # 10 before the pause, 10 after
    assert_continuous(all_b + receive(s.rx_b, 10))  # B never paused: all 40
    # effectiveProfile is reported once per consumer, not again on resume
    s.w.wait_event("consumer.effectiveProfile", consumerId=20)
    s.w.wait_event("consumer.effectiveProfile", consumerId=21)
    s.w.ok("worker.info")
    assert s.w.events == []


def no_rtp(sock: socket.socket, wait: float = 0.3) -> bool:
    """No RTP packet (RTCP may come) within `wait` s."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return True
        if not 192 <= data[1] <= 223:
            return False
    return True


def test_a_late_packet_lands_in_place_and_never_reuses_a_number_after_a_resume(spawn, udp) -> None:
    """A late packet (the sender's answer to a NACK, or reordered) goes to each consumer with
    that consumer's offset; a consumer that resumed after it must not get it (its number there
    was already given to another packet before the pause), nor one that starts on it."""
    s = Session(spawn(0), udp)
    s.send(range(100, 110))
    before_a = receive(s.rx_a, 10)
    receive(s.rx_b, 10)
    s.w.ok("consumer.pause", consumerId=20)
    s.send(range(110, 120))
    s.send(range(121, 130))  # 120 is late
    b = receive(s.rx_b, 19)
    s.w.ok("consumer.resume", consumerId=20)
    s.send(range(130, 135))
    after_a = receive(s.rx_a, 5)
    assert_continuous(before_a + after_a)
    b += receive(s.rx_b, 5)
    s.send(range(120, 121))  # 120 arrives
    s.send(range(132, 133))  # and a late copy of a packet A got after its resume
    late_b = receive(s.rx_b, 2)
    offset_b = (b[0].sequence_number - 110) & 0xFFFF
    assert [p.sequence_number for p in late_b] == [(120 + offset_b) & 0xFFFF, (132 + offset_b) & 0xFFFF]
    late_a = receive(s.rx_a, 1)  # 132 again, in its place; 120 not at all
    assert late_a[0].sequence_number == after_a[2].sequence_number
    assert no_rtp(s.rx_a)
    # A consumer that starts now does not start on a late packet.
    rx_c = udp()
    s.w.ok("transport.createPlain", transportId=4)
    s.w.ok("transport.connectPlain", transportId=4, remoteIp="127.0.0.1", remotePort=rx_c.getsockname()[1])
    s.w.ok("consumer.create", **consumer_params(22, 10, 4, ssrc=0xCCCC0001))
    s.send(range(131, 132))
    assert no_rtp(rx_c)
    key = RtpPacket(payload_type=PRODUCER_PT, sequence_number=135, timestamp=135 * 3000, ssrc=SOURCE_SSRC,
                    payload=b"\x10\x00" + b"\x9d\x01\x2a" * 30)  # VP8: a key frame begins here
    s.sender.sendto(key.serialize(), s.dest)
    assert [p.sequence_number for p in receive(rx_c, 1)] == [135]  # it started here, offset 0
    receive(s.rx_a, 1)
    receive(s.rx_b, 1)
    # A sender that jumps far back (it restarted its numbering) sends no late packet: all
    # get it, the consumer that just started too.
    s.send(range(40135, 40136))
    for rx in (s.rx_a, s.rx_b, rx_c):
        assert len(receive(rx, 1)) == 1


def test_producer_pause_stops_all_and_resume_restarts_continuously(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    s.send(range(5000, 5005))
    before_a, before_b = receive(s.rx_a, 5), receive(s.rx_b, 5)
    s.w.ok("producer.pause", producerId=10)
    s.w.ok("producer.pause", producerId=10)  # idempotent
    s.send(range(5005, 5055))
    assert nothing_arrives(s.rx_a) and nothing_arrives(s.rx_b, 0.05)
    assert s.w.counters()["dropProducerPaused"] == 50
    s.w.ok("producer.resume", producerId=10)
    s.send(range(5055, 5060))
    assert_continuous(before_a + receive(s.rx_a, 5))
    assert_continuous(before_b + receive(s.rx_b, 5))


def test_consumer_created_paused_forwards_only_after_resume(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    rx = udp()
    s.w.ok("transport.createPlain", transportId=4, remoteIp="127.0.0.1", remotePort=rx.getsockname()[1])
    s.w.ok("consumer.create", **consumer_params(22, 10, 4, ssrc=0xCCCC0001, paused=True))
    s.send(range(10))
    receive(s.rx_a, 10)
    assert nothing_arrives(rx)
    s.w.ok("consumer.resume", consumerId=22)
    s.send(range(10, 15))
    got = receive(rx, 5)
    assert [p.ssrc for p in got] == [0xCCCC0001] * 5
    assert_continuous(got)
    s.w.wait_event("consumer.effectiveProfile", consumerId=22)


def test_strangers_are_dropped_and_counted(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    stranger = udp()
    send(stranger, s.dest, range(7))
    s.send(range(100, 103))
    assert len(receive(s.rx_a, 3)) == 3
    assert nothing_arrives(s.rx_a, 0.1)
    dump = s.w.ok("worker.dump")
    assert dump["counters"]["dropStranger"] == 7
    assert next(t for t in dump["transports"] if t["transportId"] == 1)["strangers"] == 7
    assert dump["counters"]["rtpIn"] == 3


def test_comedia_latches_first_source_and_drops_the_rest(spawn, udp) -> None:
    w = spawn(0)
    rx, first, second = udp(), udp(), udp()
    local = w.ok("transport.createPlain", transportId=1, comedia=True)
    dest = (local["ip"], local["port"])
    w.ok("transport.createPlain", transportId=2, remoteIp="127.0.0.1", remotePort=rx.getsockname()[1])
    w.ok("producer.create", **producer_params(10, 1))
    w.ok("consumer.create", **consumer_params(20, 10, 2, ssrc=77))
    first.sendto(b"\x00\x01garbage does not latch", dest)
    send(first, dest, range(1, 4))
    assert len(receive(rx, 3)) == 3
    send(second, dest, range(4, 8))
    send(first, dest, range(8, 10))
    assert [p.sequence_number for p in receive(rx, 2)] == [8, 9]  # only `first`'s packets
    counters = w.counters()
    assert counters["dropStranger"] == 5  # the garbage (before latching) and `second`'s 4
    transport = next(t for t in w.ok("worker.dump")["transports"] if t["transportId"] == 1)
    assert transport["remote"] == ["127.0.0.1", first.getsockname()[1]]


def test_garbage_rtcp_unknown_ssrc_are_counted_and_harmless(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    good = rtp(1)
    datagrams = {
        "dropTruncated": [b"", b"\x80", good[:11]],
        "dropNotRtp": [b"\x00\x01" + bytes(18), b"\x16\xfe\xff" + bytes(20), b"\x40" + bytes(20)],
        "rtcpIn": [bytes([0x80, 200]) + bytes(26), bytes([0x81, 201, 0, 1]) + bytes(4)],
        "dropUnknownSsrc": [rtp(1, ssrc=1234)],
        # An RTX packet with nothing but padding (a sender's bandwidth probe): no original.
        "dropRtx": [bytes([0xA0]) + rtp(1, ssrc=SOURCE_SSRC + 1, pt=PRODUCER_PT + 1)[1:12] + bytes(99) + b"\x64"],
        "dropUnknownPt": [rtp(1, pt=96)],
        "dropMalformed": [
            bytes([0x8F]) + good[1:20],  # 15 CSRCs claimed in 20 bytes
            bytes([0x90]) + good[1:12] + b"\xbe\xde\x00\x09" + bytes(4),  # extension overruns
            bytes([0xA0]) + good[1:-1] + b"\xff",  # padding longer than the packet
            bytes([0xA0]) + good[1:-1] + b"\x00",  # padding count 0
            bytes([0x90]) + good[1:12] + b"\xbe\xde\x00\x01" + b"\x3f\x00\x00\x00",  # element overruns
        ],
    }
    noise = [os.urandom(n) for n in (1, 5, 12, 13, 100, 1400)]
    for group in datagrams.values():
        for d in group:
            s.sender.sendto(d, s.dest)
    for d in noise:
        s.sender.sendto(d, s.dest)
    s.send(range(10, 13))
    assert len(receive(s.rx_a, 3)) == 3
    counters = s.w.counters()
    for name, group in datagrams.items():
        assert counters[name] >= len(group), (name, counters)
    assert counters["rtpIn"] >= 3 and counters["rtpOut"] >= 6
    assert s.w.ok("worker.info")["packetsIn"] == sum(len(g) for g in datagrams.values()) + len(noise) + 3
    assert s.w.proc.poll() is None


def test_rtx_from_the_sender_is_unwrapped_and_forwarded_as_the_original(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    s.send(range(100, 103))
    first = receive(s.rx_a, 3)
    # The retransmission of seq 101 over RTX: own seq 7, original seq first in the payload.
    original = RtpPacket.parse(rtp(101))
    rtx = RtpPacket(
        payload_type=PRODUCER_PT + 1, sequence_number=7, timestamp=original.timestamp,
        ssrc=SOURCE_SSRC + 1, payload=(101).to_bytes(2, "big") + original.payload,
    )
    s.sender.sendto(rtx.serialize(), s.dest)
    (got,) = receive(s.rx_a, 1)
    assert got.ssrc == 0xAAAA0001 and got.payload_type == ROOM_PT
    assert got.payload == original.payload
    assert (got.sequence_number, got.timestamp) == (first[1].sequence_number, first[1].timestamp)
    assert s.w.counters()["rtxIn"] == 1


def test_nack_is_served_from_the_store_and_the_rest_asked_from_the_sender(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    s.send(range(200, 210))
    got = receive(s.rx_a, 10)
    receive(s.rx_b, 10)
    lost = [got[3].sequence_number, got[7].sequence_number]
    never = (got[-1].sequence_number + 5) & 0xFFFF  # not sent yet: not in the store
    # Receiver A's NACK comes from its own address, the consumer transport's remote.
    s.rx_a.sendto(rtcp.nack(0x99, 0xAAAA0001, [*lost, never]), ("127.0.0.1", s.ports[2]))
    again = receive(s.rx_a, 2)
    assert [p.sequence_number for p in again] == lost
    assert [p.payload for p in again] == [got[3].payload, got[7].payload]
    assert {p.ssrc for p in again} == {0xAAAA0001}
    # The sender is asked for the one Tureen does not have, in its own numbering.
    s.sender.settimeout(3)
    asked: list = []
    for _ in range(10):  # receiver reports (RR + REMB) come every second too
        asked = rtcp.parse(s.sender.recv(2048)).nacks
        if asked:
            break
    assert asked == [(SOURCE_SSRC, [(209 + 5) & 0xFFFF])]
    consumer = next(c for c in s.w.ok("worker.dump")["consumers"] if c["consumerId"] == 20)
    assert (consumer["nackServed"], consumer["nackForwarded"]) == (2, 1)


def test_sender_gets_receiver_reports_and_remb(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    s.send([*range(300, 305), *range(306, 310)])  # 305 lost
    s.sender.settimeout(3)
    for _ in range(10):
        data = s.sender.recv(2048)
        kinds = [pt for pt, _, _, _ in rtcp.iter_compound(data)]
        if rtcp.parse(data).report_blocks:  # (a PLI or NACK comes with an empty RR)
            break
    # A full compound packet (RFC 3550 6.1): RR, SDES with the worker's CNAME, then REMB.
    assert kinds == [rtcp.RR, rtcp.SDES, rtcp.PSFB]
    ((sdes_ssrc, cname),) = rtcp.sdes_cnames(data)
    assert sdes_ssrc == int.from_bytes(data[4:8], "big") and cname.startswith("tureen-")
    ssrc, lost_word, ext_seq = struct.unpack_from("!III", data, 8)
    assert ssrc == SOURCE_SSRC and ext_seq == 309
    assert lost_word & 0xFFFFFF == 1 and lost_word >> 24 == 256 // 10  # 1 of 10 in the interval


def test_stats_get_reports_counts_feedback_loss_and_rtt(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    s.send(range(400, 410))
    got = receive(s.rx_a, 10)
    receive(s.rx_b, 10)
    # Tureen's SR for A's SSRC (every second); A answers 0.3 s later with an RR echoing it
    # (DLSR 0), so the round trip Tureen sees is about 300 ms.
    s.rx_a.settimeout(3)
    for _ in range(20):
        data = s.rx_a.recv(2048)
        if 192 <= data[1] <= 223 and rtcp.parse(data).sender_reports:
            break
    ((ssrc, ntp, _),) = rtcp.parse(data).sender_reports
    assert ssrc == 0xAAAA0001
    time.sleep(0.3)
    lsr = (ntp >> 16) & 0xFFFFFFFF
    feedback = (
        rtcp.rr(0x99, [(0xAAAA0001, 64, 3, 409, 0, lsr, 0)])
        + rtcp.pli(0x99, 0xAAAA0001)
        + rtcp.fir(0x99, 0xAAAA0001, 1)
        + rtcp.nack(0x99, 0xAAAA0001, [got[2].sequence_number])
    )
    s.rx_a.sendto(feedback, ("127.0.0.1", s.ports[2]))
    receive(s.rx_a, 1)  # the retransmission: the feedback was handled
    stats = s.w.ok("stats.get", transportIds=[1, 999], producerIds=[10], consumerIds=[20, 21])
    assert stats["missing"] == [999]
    assert isinstance(stats["timestamp"], int)
    assert stats["transports"] == [{"transportId": 1, "kind": "plain"}]
    (producer,) = stats["producers"]
    (stream,) = producer["streams"]
    assert (stream["ssrc"], stream["packets"], stream["packetsLost"]) == (SOURCE_SSRC, 10, 0)
    assert stream["octets"] > 0 and stream["pliCount"] >= 1 and stream["firCount"] == 0
    a, b = stats["consumers"]
    assert (a["consumerId"], a["ssrc"], a["packets"]) == (20, 0xAAAA0001, 11)  # 10 + 1 resent
    assert (a["pliCount"], a["firCount"], a["nackCount"], a["packetsRepaired"]) == (1, 1, 1, 1)
    assert (a["fractionLost"], a["packetsLost"]) == (64, 3)
    assert 250 <= a["roundTripTime"] <= 1500, a
    assert a["inbound"]["ssrc"] == SOURCE_SSRC and a["inbound"]["packets"] == 10
    assert (b["packets"], b["nackCount"], b["roundTripTime"]) == (10, 0, 0)
    for bad in ({"transportIds": "1"}, {"consumerIds": [True]}, {"producerIds": [1.5]}):
        assert s.w.error("stats.get", **bad)["code"] == "bad_request"


def test_consumer_transport_connected_later_starts_forwarding(spawn, udp) -> None:
    w = spawn(0)
    sender, rx = udp(), udp()
    local = w.ok("transport.createPlain", transportId=1, remoteIp="127.0.0.1", remotePort=sender.getsockname()[1])
    dest = (local["ip"], local["port"])
    w.ok("transport.createPlain", transportId=2)
    w.ok("producer.create", **producer_params(10, 1))
    w.ok("consumer.create", **consumer_params(20, 10, 2, ssrc=5))
    send(sender, dest, range(3))
    assert nothing_arrives(rx)
    w.ok("transport.connectPlain", transportId=2, remoteIp="127.0.0.1", remotePort=rx.getsockname()[1])
    send(sender, dest, range(3, 6))
    assert [p.ssrc for p in receive(rx, 3)] == [5, 5, 5]


def test_worker_info_totals_for_the_metrics_count_feedback_and_never_shrink(spawn, udp) -> None:
    """worker.info's totals (the Prometheus families, supervisor/metrics.py): feedback from
    receivers, retransmissions, bytes in and out, CPU time and RSS; a closed transport's
    bytes stay counted."""
    s = Session(spawn(0), udp)
    s.send(range(600, 610))
    got = receive(s.rx_a, 10)
    receive(s.rx_b, 10)
    feedback = (
        rtcp.pli(0x99, 0xAAAA0001)
        + rtcp.fir(0x99, 0xAAAA0001, 1)
        + rtcp.nack(0x99, 0xAAAA0001, [got[2].sequence_number])
    )
    s.rx_a.sendto(feedback, ("127.0.0.1", s.ports[2]))
    receive(s.rx_a, 1)  # the retransmission: the feedback was handled
    info = s.w.ok("worker.info")
    counters = info["counters"]
    assert (counters["pliReceived"], counters["nackReceived"]) == (2, 1)
    assert (counters["nackServed"], counters["rtxSent"]) == (1, 1)
    assert counters["keyFrameRequests"] >= 1  # toward the sender, for the PLI
    assert info["packetsIn"] >= 10 and info["packetsOut"] == 20  # fan-out copies; resends are rtxSent
    size = sum(12 + len(p.payload) for p in got)  # the ten packets as forwarded to one receiver
    assert info["bytesIn"] >= size and info["bytesOut"] >= 2 * size
    assert info["cpuSeconds"] > 0 and info["rssBytes"] > 1_000_000
    s.w.ok("transport.close", transportId=1)  # the sender's transport and its producer
    s.w.ok("transport.close", transportId=2)  # a receiver's, with its consumer
    after = s.w.ok("worker.info")
    assert after["bytesIn"] >= info["bytesIn"] and after["bytesOut"] >= info["bytesOut"]


def test_close_consumer_producer_and_transport(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    s.w.ok("consumer.close", consumerId=20)
    s.send(range(3))
    receive(s.rx_b, 3)
    assert nothing_arrives(s.rx_a, 0.1)
    assert s.w.error("consumer.close", consumerId=20)["code"] == "not_found"
    s.w.ok("transport.close", transportId=1)  # closes producer 10 and consumer 21 with it
    info = s.w.ok("worker.info")
    assert (info["transports"], info["producers"], info["consumers"]) == (2, 0, 0)
    assert s.w.error("producer.pause", producerId=10)["code"] == "not_found"


# -- two workers --------------------------------------------------------------------------


def test_pipe_feeds_consumers_on_another_worker(spawn, udp) -> None:
    w0, w1 = spawn(0), spawn(1)
    s = Session(w0, udp)
    rx = udp()
    w1.ok("producer.create", **producer_params(10, None, payloadTypes=[[ROOM_PT, ROOM_PT]], headerExtensionIds=[[5, 5]]))
    w1.ok("transport.createPlain", transportId=7, remoteIp="127.0.0.1", remotePort=rx.getsockname()[1])
    w1.ok("consumer.create", **consumer_params(30, 10, 7, ssrc=0xDDDD0001))
    w0.ok("pipe.open", producerId=10, workerIndex=1)
    assert w0.error("pipe.open", producerId=10, workerIndex=1)["code"] == "duplicate"
    s.send(range(65000, 65040), ext=[(3, b"\x09")])
    got = receive(rx, 40)
    assert {p.ssrc for p in got} == {0xDDDD0001}
    assert {p.payload_type for p in got} == {ROOM_PT}
    assert got[0].extensions == [(5, b"\x09")]
    assert_continuous(got)
    w1.wait_event("consumer.effectiveProfile", consumerId=30, profile="default")
    receive(s.rx_a, 40)
    # a pause at the origin stops the pipe; after resume the remote consumer stays continuous
    w0.ok("producer.pause", producerId=10)
    s.send(range(65040, 65100))
    assert nothing_arrives(rx)
    w0.ok("producer.resume", producerId=10)
    s.send(range(65100, 65110))
    assert_continuous(got + receive(rx, 10))
    c0, c1 = w0.counters(), w1.counters()
    assert c0["pipePacketsOut"] == 50 and c0["pipeMessagesOut"] <= 50
    assert c1["pipePacketsIn"] == 50 and c1["rtpIn"] == 50 and c1["rtpOut"] == 50
    # with the native loop (the default) the origin's connection is drained by it in C
    native = 1 if native_loop.available() else 0
    assert w1.ok("worker.dump")["pipe"].get("nativeOrigins") == native
    w0.ok("pipe.close", producerId=10, workerIndex=1)
    assert w0.error("pipe.close", producerId=10, workerIndex=1)["code"] == "not_found"
    s.send(range(65110, 65120))
    receive(s.rx_a, 10 + 10)
    assert nothing_arrives(rx)
    deadline = time.monotonic() + 5  # the link closed: the destination drops the connection
    while w1.ok("worker.dump")["pipe"]["origins"] and time.monotonic() < deadline:
        time.sleep(0.02)
    pipe = w1.ok("worker.dump")["pipe"]
    assert pipe["origins"] == pipe["nativeOrigins"] == pipe["badMessages"] == 0


# -- bad requests -------------------------------------------------------------------------


def test_bad_requests_get_errors_and_change_nothing(spawn, udp) -> None:
    s = Session(spawn(0), udp)
    w = s.w
    before = w.ok("worker.dump")
    raw = [b"not json", b"[1, 2]", b'"text"', b'{"id": 1}', b'{"method": "worker.info"}',
           b'{"id": [1], "method": "worker.info"}', b'{"id": 5, "method": 7}', b"\xff\xfe"]
    for frame in raw:
        reply = w.send_raw(frame)
        assert reply["ok"] is False and reply["error"]["code"] == "bad_request", (frame, reply)
    assert w.error("no.such.method")["code"] == "unknown_method"
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("transport.createPlain", {"transportId": 1}, "duplicate"),
        ("transport.createPlain", {"transportId": "9"}, "bad_request"),
        ("transport.createPlain", {"transportId": True}, "bad_request"),
        ("transport.createPlain", {"transportId": -1}, "bad_request"),
        ("transport.createPlain", {"transportId": 9, "remoteIp": "nowhere", "remotePort": 5}, "bad_request"),
        ("transport.createPlain", {"transportId": 9, "remoteIp": "127.0.0.1", "remotePort": 70000}, "bad_request"),
        ("transport.createPlain", {"transportId": 9, "remoteIp": "127.0.0.1"}, "bad_request"),
        ("transport.createPlain", {"transportId": 9, "comedia": "yes"}, "bad_request"),
        ("transport.connectPlain", {"transportId": 99, "remoteIp": "127.0.0.1", "remotePort": 5}, "not_found"),
        ("transport.connectPlain", {"transportId": 2, "remoteIp": "127.0.0.1"}, "bad_request"),
        ("transport.createWebRtc", {"transportId": 9, "udp": False, "tcp": False}, "bad_request"),
        ("transport.createWebRtc", {"transportId": 9, "udp": "yes"}, "bad_request"),
        ("transport.createWebRtc", {"transportId": 1}, "duplicate"),
        ("transport.createWebRtc", {"transportId": 9, "dtlsParameters": {"role": "client"}}, "bad_request"),
        ("transport.createWebRtc", {"transportId": 9, "dtlsParameters": {"fingerprints": [{"algorithm": "md5", "value": "00"}]}}, "unsupported"),
        ("transport.setRemoteDtls", {"transportId": 1, "dtlsParameters": {}}, "bad_request"),
        ("transport.setRemoteDtls", {"transportId": 99, "dtlsParameters": {}}, "not_found"),
        ("transport.restartIce", {"transportId": 1}, "bad_request"),
        ("producer.requestKeyFrame", {"producerId": 10, "ssrc": 1}, "not_found"),
        ("producer.requestKeyFrame", {"producerId": 99, "ssrc": 1}, "not_found"),
        ("producer.nack", {"producerId": 99, "ssrc": 1, "seqs": [1]}, "not_found"),
        ("producer.nack", {"producerId": 10, "ssrc": 1, "seqs": [1]}, "not_found"),
        ("producer.nack", {"producerId": 10, "ssrc": SOURCE_SSRC, "seqs": []}, "bad_request"),
        ("producer.nack", {"producerId": 10, "ssrc": SOURCE_SSRC, "seqs": [70000]}, "bad_request"),
        ("producer.nack", {"producerId": 10, "ssrc": SOURCE_SSRC, "seqs": "1"}, "bad_request"),
        ("transport.close", {"transportId": 99}, "not_found"),
        ("transport.close", {}, "bad_request"),
        ("producer.create", producer_params(10, 1), "duplicate"),
        ("producer.create", producer_params(11, 99), "not_found"),
        ("producer.create", producer_params(11, 1), "duplicate"),  # same SSRC on transport 1
        ("producer.create", producer_params(11, 2, kind="data"), "bad_request"),
        ("producer.create", producer_params(11, 2, streams=[]), "bad_request"),
        ("producer.create", producer_params(11, 2, streams=[{"ssrc": 1}, {"ssrc": 1, "profile": "low"}]), "bad_request"),
        ("producer.create", producer_params(11, 2, streams=[{"ssrc": 2**32}]), "bad_request"),
        ("producer.create", producer_params(11, 2, payloadTypes=[[100, 200]]), "bad_request"),
        ("producer.create", producer_params(11, 2, payloadTypes=[[100]]), "bad_request"),
        ("producer.create", producer_params(11, 2, payloadTypes=[]), "bad_request"),
        ("producer.create", producer_params(11, 2, headerExtensionIds=[[0, 1]]), "bad_request"),
        ("producer.create", producer_params(11, 2, codecs=[{"payloadType": 1}]), "bad_request"),
        ("producer.create", {k: v for k, v in producer_params(11, 2).items() if k != "transportId"}, "bad_request"),
        ("producer.pause", {"producerId": 99}, "not_found"),
        ("producer.update", producer_params(10, 2), "bad_request"),  # transport cannot change
        ("consumer.create", consumer_params(20, 10, 2, ssrc=1), "duplicate"),
        ("consumer.create", consumer_params(22, 99, 2, ssrc=1), "not_found"),
        ("consumer.create", consumer_params(22, 10, 99, ssrc=1), "not_found"),
        ("consumer.create", consumer_params(22, 10, 2, ssrc=1, kind="audio"), "bad_request"),
        ("consumer.create", consumer_params(22, 10, 2, ssrc=0xAAAA0001), "duplicate"),
        ("consumer.create", consumer_params(22, 10, 2, ssrc=1, preferredProfile="best"), "bad_request"),
        ("consumer.create", consumer_params(22, 10, 2, ssrc=None), "bad_request"),
        ("consumer.pause", {"consumerId": 99}, "not_found"),
        ("consumer.setPreferredProfile", {"consumerId": 20, "profile": "ultra"}, "bad_request"),
        ("pipe.open", {"producerId": 10, "workerIndex": 0}, "bad_request"),
        ("pipe.open", {"producerId": 99, "workerIndex": 1}, "not_found"),
        ("pipe.close", {"producerId": 10, "workerIndex": 1}, "not_found"),
    ]
    for method, params, code in cases:
        error = w.error(method, **params)
        assert error["code"] == code, (method, params, error)
        assert error["message"]
    assert w.ok("worker.dump") == before
    s.send(range(3))
    assert len(receive(s.rx_a, 3)) == 3
    assert w.proc.poll() is None


# -- life cycle ---------------------------------------------------------------------------


def wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_worker_close_exits_cleanly_and_removes_its_pipe(spawn, udp, tmp_path: Path) -> None:
    s = Session(spawn(0), udp)
    assert s.w.ok("worker.close") == {}
    assert s.w.proc.wait(5) == 0
    assert not (tmp_path / "pipe-0.ipc").exists()
    # its UDP ports are free again
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(s.dest)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_cleanly(spawn, tmp_path: Path, sig: signal.Signals) -> None:
    worker = spawn(0)
    worker.proc.send_signal(sig)
    assert worker.proc.wait(5) == 0
    assert not (tmp_path / "pipe-0.ipc").exists()
    assert b"stopping: SIG" in worker.log_path.read_bytes()


def test_worker_exits_when_its_parent_dies(ctx: zmq.Context, tmp_path: Path) -> None:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    pid = 0
    try:
        sock.bind(f"ipc://{tmp_path}/worker-3.ipc")
        config = orjson.dumps(Config().to_dict()).decode()
        # The launcher exits at once, usually before the worker's interpreter is up: the
        # worker must still notice (it is told its parent's pid rather than reading it).
        launcher = (
            "import os, subprocess, sys;"
            "p = subprocess.Popen([sys.executable, '-m', 'tureen.workers.main', '--index', '3',"
            f" '--run-dir', {str(tmp_path)!r}, '--config', {config!r},"
            " '--parent-pid', str(os.getpid())],"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
            "print(p.pid, flush=True)"
        )
        parent = subprocess.run(
            [sys.executable, "-c", launcher], capture_output=True, timeout=10, check=True
        )
        pid = int(parent.stdout.split()[0])
        assert sock.poll(10_000), "worker never reported ready"
        assert orjson.loads(sock.recv())["event"] == "worker.ready"
        assert wait_gone(pid, 5), "worker outlived its parent"
        assert not (tmp_path / "pipe-3.ipc").exists()
    finally:
        if pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        sock.close()


# -- simulcast -------------------------------------------------------------------------------

LOW, MEDIUM, HIGH = 0x5100, 0x5200, 0x5300


def vp8(seq: int, ssrc: int, key: bool) -> bytes:
    """A VP8 packet starting a frame: descriptor S=1, PID 0; payload header P=0 for a key frame."""
    payload = bytes([0x10, 0x00 if key else 0x01]) + b"\xcd" * 50
    return RtpPacket(payload_type=PRODUCER_PT, sequence_number=seq & 0xFFFF, timestamp=seq * 3000,
                     ssrc=ssrc, payload=payload).serialize()


def test_simulcast_consumer_follows_active_streams_switching_at_key_frames(spawn, udp) -> None:
    w = spawn(0)
    sender, rx = udp(), udp()
    local = w.ok("transport.createPlain", transportId=1, remoteIp="127.0.0.1", remotePort=sender.getsockname()[1])
    dest = (local["ip"], local["port"])
    w.ok("transport.createPlain", transportId=2, remoteIp="127.0.0.1", remotePort=rx.getsockname()[1])
    streams = [{"ssrc": LOW, "profile": "low"}, {"ssrc": MEDIUM, "profile": "medium"}, {"ssrc": HIGH, "profile": "high"}]
    w.ok("producer.create", **producer_params(10, 1, streams=streams))
    w.ok("consumer.create", **consumer_params(20, 10, 2, ssrc=0xC0))
    seq = {LOW: 1000, MEDIUM: 5000, HIGH: 9000}

    def send_round(*ssrcs: int, key: set[int] = frozenset()) -> None:
        for ssrc in ssrcs:
            sender.sendto(vp8(seq[ssrc], ssrc, ssrc in key), dest)
            seq[ssrc] += 1

    def feed(duration: float, *ssrcs: int) -> None:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            send_round(*ssrcs)
            time.sleep(0.02)

    def payload_ssrcs(packets: list[RtpPacket]) -> list[int]:
        return [p.ssrc for p in packets]

    # Only low sends: the consumer (first on 'high', nothing known yet) moves to low at once,
    # and starts there at low's first key frame (before it, nothing is forwarded).
    feed(1.2, LOW)
    assert nothing_arrives(rx)
    send_round(LOW, key={LOW})
    w.wait_event("consumer.effectiveProfile", consumerId=20, profile="low")
    rx.settimeout(0.3)
    with contextlib.suppress(TimeoutError):
        while True:
            rx.recv(2048)
    # Medium starts: 'default' means the highest active stream; the worker asks the sender
    # for a key frame of medium and keeps forwarding low until one comes.
    feed(1.0, LOW, MEDIUM)
    pli_seen = set()
    sender.settimeout(0.05)
    with contextlib.suppress(TimeoutError):
        while True:
            pli_seen.update([s for s, _ in rtcp.parse(sender.recv(2048)).key_frame_requests])
    assert MEDIUM in pli_seen
    rx.settimeout(0.05)
    with contextlib.suppress(TimeoutError):
        while True:
            rx.recv(2048)
    send_round(LOW, MEDIUM)  # medium delta: still low
    before = receive(rx, 1)
    assert before[0].payload[1] == 0x01
    first = before[-1].sequence_number
    send_round(MEDIUM, LOW, key={MEDIUM})  # medium key frame: switch; low is not forwarded
    got = receive(rx, 1)
    assert got[0].payload[1] == 0x00  # the key frame is the first packet after the switch
    send_round(LOW, MEDIUM)
    send_round(LOW, MEDIUM)
    send_round(LOW, MEDIUM)
    got += receive(rx, 3)
    assert nothing_arrives(rx)
    ws = w.ok("worker.dump")
    consumer = next(c for c in ws["consumers"] if c["consumerId"] == 20)
    assert consumer["effectiveProfile"] == "medium", consumer
    assert [p.sequence_number for p in got] == [(first + i) & 0xFFFF for i in range(1, 5)]
    assert all(p.ssrc == 0xC0 for p in got)

    # The app prefers low: back to low at low's next key frame.
    w.ok("consumer.setPreferredProfile", consumerId=20, profile="low")
    send_round(LOW, MEDIUM)
    send_round(LOW, MEDIUM, key={LOW})
    more = receive(rx, 2)
    assert [p.sequence_number for p in more] == [(got[-1].sequence_number + i) & 0xFFFF for i in (1, 2)]
    w.wait_event("consumer.effectiveProfile", consumerId=20, profile="low")

    # Back to 'default': medium again at its key frame; then medium stops arriving and the
    # consumer falls back to low (the stream it was on shows nothing any more).
    w.ok("consumer.setPreferredProfile", consumerId=20, profile="default")
    feed(0.3, LOW, MEDIUM)
    send_round(LOW, MEDIUM, key={MEDIUM})
    w.wait_event("consumer.effectiveProfile", consumerId=20, profile="medium")
    feed(1.6, LOW)
    send_round(LOW, key={LOW})  # the consumer moved to low at once; it starts at its key frame
    w.wait_event("consumer.effectiveProfile", consumerId=20, profile="low")
