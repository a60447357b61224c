"""The native receive (workers/_native.c, Receiver) against the Python receive path on the same
captured packets (tests/vectors/rtp): the same datagrams out to every consumer, byte for byte
and in order, and the same counters (the forwarder's, each stream's reception statistics,
retransmission store and NACK generator state, each consumer's rewrite), in the common case
the native path takes and in every case it hands to the Python path (drops, RTCP, RTX, late
and reordered packets, a gap with NACKs pending, consumers waiting for a key frame, a paused
producer, header extensions). Only the time-derived statistics (jitter, transit, max_at)
are left out of the comparison: the two runs happen at different times."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
from captured import Header, Rig, load, with_header
from tureen.workers import native
from tureen.workers.rtp.nack_generator import NackGenerator
from tureen.workers.rtp.retransmit import STORE_SIZE, rtx_packet

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not native.available(), reason="the native core is not built"),
]


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram queued at a receiver (bounded: stops at the first 0.2 s of silence)."""
    got = []
    sock.settimeout(0.2)
    try:
        while len(got) < 10_000:
            got.append(sock.recv(4096))
    except TimeoutError:
        pass
    finally:
        sock.settimeout(2.0)
    return got


def snapshot(rig: Rig) -> dict[str, Any]:
    """What the data path did: datagrams out, and every counter it keeps."""
    streams = {}
    for producer in rig.router.producers.values():
        for stream in producer.streams:
            nack = stream.nack
            streams[stream.ssrc] = {
                "fields": {
                    name: getattr(stream, name)
                    for name in (
                        "packets", "octets", "max_seq", "max_ts", "base_seq", "cycles", "repaired", "paused",
                        "level_sum", "level_count",
                    )  # fmt: skip
                },
                "expected": stream.expected(),
                "store": list(stream.store) if stream.store is not None else None,
                "nack": None if nack is None else (nack.expected, sorted(nack.pending), nack.frame_end),
            }
    consumers = {
        c.id: {
            "rewrite": {
                name: getattr(c.rewrite, name)
                for name in ("packets", "octets", "payload_octets", "send_errors", "seq_offset", "ts_offset", "sync")
            },
            "out": drain(rig.receivers[c.id]),
        }
        for c in rig.router.consumers.values()
    }
    return {"forwarder": rig.fwd.counters(), "streams": streams, "consumers": consumers}


def both(scenario: Callable[[Rig], None]) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Run `scenario` with the Python receive path and with the native one; their snapshots
    and the native receive's (packets taken natively, handed on)."""
    results = []
    for core in ("native-pyrx", "native"):
        rig = Rig(core)
        try:
            assert (rig.fwd.rx is None) == (core == "native-pyrx")
            scenario(rig)
            results.append(snapshot(rig))
            rx = rig.fwd.rx
            counts = (rx.fast, rx.slow) if rx is not None else None
        finally:
            rig.close()
    return results[0], results[1], counts


def test_the_common_case_is_native_and_forwards_what_python_does() -> None:
    """Opus (no start point to wait for) to three consumers, in order, two drains; then the
    sequence numbers across the 16-bit wrap (cycles counted)."""
    opus = load("opus")
    span = Header.of(opus[-1]).ts - Header.of(opus[0]).ts + 960
    # Twice the capture, renumbered from 0xFFD0: the sequence numbers wrap after 48 packets.
    packets = [with_header(p, seq=0xFFD0 + i) for i, p in enumerate(opus)]
    packets += [with_header(p, seq=0xFFD0 + 40 + i, ts=Header.of(p).ts + span) for i, p in enumerate(opus)]

    def scenario(rig: Rig) -> None:
        producer = rig.producer("opus")
        for ssrc in (0xA1, 0xA2, 0xA3):
            rig.consumer(producer, ssrc)
        rig.feed(packets[:20])
        rig.feed(packets[20:])

    python, nat, (fast, slow) = both(scenario)
    assert python == nat
    assert nat["forwarder"]["rtpIn"] == 80 and nat["forwarder"]["rtpOut"] == 240
    assert all(len(c["out"]) == 80 for c in nat["consumers"].values())
    assert next(iter(nat["streams"].values()))["fields"]["cycles"] == 0x10000
    assert (fast, slow) == (80, 0)


def test_video_with_nacks_start_points_and_every_fallback_matches_python() -> None:
    """VP8 with a NACK generator: consumers that wait for the key frame (fallback until they
    start), a lost packet (NACK pending: fallback until repaired by RTX), a reordered pair, a
    duplicate, a paused and resumed producer, a late joiner, the drops and RTCP; the store
    of retransmittable packets must hold the same bytes."""
    packets = load("vp8")
    good = packets[1]
    drops = [
        good[:11],  # truncated
        b"\x16\xfe\xfd" + good[3:],  # DTLS: not RTP
        with_header(good, ssrc=0x12345678),  # unknown SSRC
        bytes([good[0], (good[1] & 0x80) | 98]) + good[2:],  # unmapped PT (97 is the RTX's)
        bytes([good[0] | 0x10]) + good[1:15],  # X bit without an extension block
        struct.pack("!BBHI", 0x80, 201, 1, Header.of(good).ssrc),  # RTCP RR
    ]

    def scenario(rig: Rig) -> None:
        ssrc, rtx_ssrc = Header.of(packets[0]).ssrc, 0x7777
        producer = rig.producer("vp8", [(ssrc, rtx_ssrc, "default")], rtx=(97, 102))
        stream = producer.streams[0]
        stream.nack = NackGenerator()
        rig.consumer(producer, 0xB1)
        rig.consumer(producer, 0xB2)
        rig.feed(packets[:5] + packets[6:10])  # packet 5 lost: NACK pending
        lost = Header.of(packets[5])
        rig.feed([bytes(rtx_packet(packets[5], lost.seq, lost.ts, rtx_ssrc, 97, 900))])
        rig.feed([packets[11], packets[10], packets[11]])  # reordered, then a duplicate
        rig.feed(packets[12:16] + drops)
        rig.router.set_producer_paused(producer, True)
        rig.feed(packets[16:18])
        rig.router.set_producer_paused(producer, False)
        rig.consumer(producer, 0xB3)  # joins: waits for the next start point with the others
        rig.feed(packets[18:40])

    python, nat, (fast, slow) = both(scenario)
    assert python == nat
    counters = nat["forwarder"]
    assert counters["rtxIn"] == 1 and counters["dropProducerPaused"] == 2 and counters["rtcpIn"] == 1
    assert all(counters[k] == 1 for k in ("dropTruncated", "dropNotRtp", "dropUnknownSsrc", "dropUnknownPt", "dropMalformed"))
    assert fast > 0 and slow > 0, (fast, slow)
    assert fast + slow == 5 + 4 + 1 + 3 + 4 + len(drops) + 2 + 22 + 1  # the RTX's unwrapped packet too


def test_in_order_packets_while_a_nack_is_pending_stay_native() -> None:
    """A packet lost for good (no repair): its NACK stays pending for MAX_NACKS retries. The
    packets after it that arrive in order mid-frame are forwarded natively (forward.py's
    _nack_check only advances `expected` and notes a frame end for them); only the one that
    opened the gap and those that may begin a key frame (right after a frame end, the
    key-frame check is Python's) take the Python path. Before, every packet did, for as long
    as the entry was pending (the benchmark's 1 -> 1 rows: a third of the packets)."""
    captured = load("vp8")
    # Packets 6-17 (before the capture's next key frame, which would cancel the entry) made
    # into frames of four: the marker bit only on 9, 13 and 17.
    packets = captured[:6] + [bytes([p[0], (p[1] & 0x7F) | (0x80 if i % 4 == 1 else 0)]) + p[2:]
                              for i, p in enumerate(captured[6:18], start=6)]
    marker = [bool(p[1] & 0x80) for p in packets]

    def feed_first(rig: Rig) -> Any:
        producer = rig.producer("vp8")
        producer.streams[0].nack = NackGenerator()
        rig.consumer(producer, 0xC1)
        rig.feed(packets[:5])  # in order, nothing missing: the consumer has started
        return producer

    def scenario(rig: Rig) -> None:
        producer = feed_first(rig)
        rig.feed(packets[6:18])  # packet 5 lost: pending from here on
        assert producer.streams[0].nack.pending

    python, nat, (fast, slow) = both(scenario)
    assert python == nat
    frame_starts = sum(1 for i in range(7, 18) if marker[i - 1])
    assert frame_starts == 2  # after 9 and 13
    first = Rig("native")
    try:  # how many of the first five the start point (a waiting consumer) sent to Python
        feed_first(first)
        first_slow = first.fwd.rx.slow
    finally:
        first.close()
    # the gap's opener (6) and the two frame starts; before, all twelve
    assert slow == first_slow + 1 + frame_starts, (fast, slow, first_slow)


def test_the_store_refills_its_own_bytes_in_place_and_never_one_held_elsewhere() -> None:
    """The retransmission store's slot of 1,024 packets ago is refilled in place when only
    the store holds it and the size is the same (no malloc and free per video packet); a
    slot someone else holds (a retransmission being built) or of another size gets a new
    bytes object, and the held one keeps its bytes. Compared with the Python path (which
    always makes a new one) by value, packet for packet."""
    good = load("vp8")[0]  # a key frame's first packet: the consumer starts on the first copy
    size = len(good)
    rounds = 2 * STORE_SIZE + 8
    packets = [with_header(good, seq=i, ts=i * 3000) for i in range(rounds)]
    packets[STORE_SIZE + 3] = packets[STORE_SIZE + 3] + b"\0\0\0\0"  # another size (padding-free tail)

    def same(stored: bytes | None, packet: bytes) -> bool:  # the store keeps the room's PT
        return stored is not None and len(stored) == len(packet) and stored[0] == packet[0] and stored[2:] == packet[2:]

    rig = Rig("native")
    try:
        producer = rig.producer("vp8")
        rig.consumer(producer, 0xD1)
        store = producer.streams[0].store
        rig.feed(packets[:STORE_SIZE])
        assert store is not None and all(same(store[i], packets[i]) for i in range(STORE_SIZE))
        slots = list(range(8))
        before = [store[i] for i in slots]  # now held twice: by `before` and by the store
        held = before[1]
        del before
        ids = {i: id(store[i]) for i in slots}
        rig.feed(packets[STORE_SIZE : STORE_SIZE + 8])
        assert same(held, packets[1])  # a held slot is never changed
        assert id(store[1]) != id(held) and same(store[1], packets[STORE_SIZE + 1])
        assert len(store[3]) == size + 4 and same(store[3], packets[STORE_SIZE + 3])  # another size
        reused = [i for i in slots if id(store[i]) == ids[i]]
        assert reused == [0, 2, 4, 5, 6, 7], reused
        assert all(same(store[i], packets[STORE_SIZE + i]) for i in slots)
        assert (rig.fwd.rx.fast, rig.fwd.rx.slow) == (STORE_SIZE + 7, 1)  # the start point: Python
        # no stale cached hash: each equals a fresh copy's
        assert all(hash(store[i]) == hash(bytes(bytearray(store[i]))) for i in slots)
    finally:
        rig.close()


def with_extension(packet: bytes, block: bytes, profile: int = 0xBEDE, padded: bool = False) -> bytes:
    """The captured packet given an extension block (RFC 8285) of `profile` holding `block`
    (padded to 32-bit words), and RTP padding of 4 bytes if `padded`."""
    block += bytes(-len(block) % 4)
    out = bytes([packet[0] | 0x10 | (0x20 if padded else 0)]) + packet[1:12]
    out += struct.pack("!HH", profile, len(block) // 4) + block + packet[12:]
    return out + bytes([0, 0, 0, 4]) if padded else out


@pytest.mark.parametrize("level_id", [0, 1, 3, 5])
def test_header_extensions_and_audio_levels_are_native(level_id: int) -> None:
    """One-byte (ids 1 -> 5, 3 -> 3, 2 unmapped: padded) and two-byte blocks (RFC 8285),
    CSRCs and RTP padding, with the audio level read (level_id, the room's id: 5 is the first
    element, the senders' usual place; 3 is found by the scan, and has no one-byte value in
    the two-byte block; 1 is nowhere after the remap): native, with the same level sums;
    a block whose element overruns it (dropped as malformed): the Python path."""
    opus = load("opus")
    one = [with_extension(p, bytes([0x10, 0x80 | 40, 0x21, 1, 2, 0x30, 9])) for p in opus[:10]]
    two = [with_extension(p, bytes([1, 1, 40, 2, 2, 7, 7, 0, 3, 0]), profile=0x1000, padded=True) for p in opus[10:20]]
    csrc = [bytes([p[0] | 2]) + p[1:12] + struct.pack("!II", 7, 8) + p[12:] for p in opus[20:30]]
    overrun = [with_extension(opus[30], bytes([0x13, 1, 2]))[:-len(opus[30]) + 12]]  # element of 4 in 3 bytes

    def scenario(rig: Rig) -> None:
        producer = rig.producer("opus")
        producer.ext_map = bytes([0, 5, 0, 3] + [0] * 252)
        for stream in producer.streams:
            stream.ext_map = producer.ext_map
            stream.level_id = level_id
        rig.consumer(producer, 0xC1)
        rig.feed(one + two + csrc + overrun + opus[31:40])

    python, nat, (fast, slow) = both(scenario)
    assert python == nat
    assert nat["forwarder"]["dropMalformed"] == 1 and nat["forwarder"]["rtpIn"] == 39
    out = next(iter(nat["consumers"].values()))["out"]
    assert out[0][16:24] == bytes([0x50, 0x80 | 40, 0, 0, 0, 0x30, 9, 0])  # 1 -> 5, 2 padded, 3 kept
    assert (fast, slow) == (39, 1)
    fields = next(iter(nat["streams"].values()))["fields"]
    counted = {0: 0, 1: 0, 3: 10, 5: 20}[level_id]  # one-byte blocks only for 3; both for 5
    assert fields["level_count"] == counted
    assert fields["level_sum"] == {0: 0, 1: 0, 3: 90, 5: 800}[level_id]


def test_a_consumer_without_a_batchable_socket_takes_the_python_path() -> None:
    """fd < 0 (an ICE-TCP consumer sends per copy through Python): the whole packet goes the
    Python way, with the same results."""
    packets = load("opus")

    def scenario(rig: Rig) -> None:
        producer = rig.producer("opus")
        rig.consumer(producer, 0xD1)
        rig.feed(packets[:5])
        rig.consumer(producer, 0xD2).rewrite.fd = -1  # sends with rewrite.send (its socket)
        rig.feed(packets[5:10])

    python, nat, (fast, slow) = both(scenario)
    assert python == nat
    assert (fast, slow) == (5, 5)


def test_native_rx_false_keeps_the_python_receive_and_the_dump_counts_both_paths() -> None:
    from tureen.workers.forward import Forwarder

    assert Forwarder(core="native", native_rx=False).rx is None
    assert "nativeRx" not in Forwarder(core="native", native_rx=False).dump_fanout()
    assert Forwarder(core="python").rx is None
    rig = Rig("native")
    try:
        producer = rig.producer("opus")
        rig.consumer(producer, 0xE1)
        rig.feed(load("opus")[:3] + [b"\x00" * 20])
        dump = rig.fwd.dump_fanout()
        assert (dump["nativeRx"], dump["pythonRx"]) == (3, 1)
    finally:
        rig.close()



def test_a_forwarder_with_the_native_receive_is_freed() -> None:
    """The forwarder and its Receiver refer to each other: the garbage collector must free
    both (with the FanOut's io_uring and rings), or every worker restart and test leaks them."""
    import gc
    import os

    from tureen.workers.forward import Forwarder

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    gc.collect()
    before = fds()
    for _ in range(5):
        fwd = Forwarder(core="native", io_uring=True)
        assert fwd.rx is not None
        del fwd
    gc.collect()
    assert fds() <= before  # the io_uring fds of the five are closed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_streams_of_mutated_packets_give_the_same_results(seed: int) -> None:
    """Seeded random drains of captured VP8 and opus packets, mutated the ways a network and
    a sender do (reordered, duplicated, lost, sequence jumps, unknown SSRCs, odd flags,
    extension blocks, truncation), with the producer paused and resumed and consumers added
    on the way: both paths send the same datagrams and keep the same counters."""
    import random

    vp8, opus = load("vp8"), load("opus")
    block = bytes([0x10, 0x80 | 40, 0x21, 1, 2, 0x30, 9])

    def mutate(rnd: random.Random, packet: bytes) -> bytes:
        roll = rnd.random()
        if roll < 0.05:
            return with_header(packet, seq=rnd.randrange(0x10000))
        if roll < 0.08:
            return with_header(packet, ssrc=rnd.randrange(1 << 32))
        if roll < 0.14:
            return with_extension(packet, block)
        if roll < 0.16:
            return packet[: rnd.randrange(1, len(packet))]
        if roll < 0.18:
            return bytes([packet[0] ^ (1 << rnd.randrange(8))]) + packet[1:]
        return packet

    def scenario(rig: Rig) -> None:
        rnd = random.Random(seed)
        video = rig.producer("vp8")
        video.streams[0].nack = NackGenerator()
        audio = rig.producer("opus")
        audio.ext_map = bytes([0, 5, 0, 3] + [0] * 252)
        for stream in audio.streams:
            stream.ext_map = audio.ext_map
        rig.consumer(video, 0xF1)
        rig.consumer(audio, 0xF2)
        at = {"vp8": 0, "opus": 0}  # each capture in order, but for the mutations
        for step in range(8):
            drain = []
            for _ in range(rnd.randrange(1, 12)):
                codec = "vp8" if rnd.random() < 0.6 else "opus"
                capture = vp8 if codec == "vp8" else opus
                if rnd.random() < 0.1:
                    at[codec] += 1  # lost
                packet = mutate(rnd, capture[at[codec] % 40])
                at[codec] += 1
                drain.append(packet)
                if rnd.random() < 0.1:
                    drain.append(packet)  # a duplicate
            rnd.shuffle(drain) if rnd.random() < 0.3 else None
            rig.feed(drain)
            if step == 4:
                rig.router.set_producer_paused(audio, True)
            if step == 6:
                rig.router.set_producer_paused(audio, False)
                rig.consumer(audio, 0xF3)
                rig.consumer(video, 0xF4)

    python, nat, (fast, slow) = both(scenario)
    assert python == nat
    assert fast > 0 and slow > 0, (fast, slow)
