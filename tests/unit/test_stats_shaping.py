"""Stats, sans-I/O: interval parsing, shaping of worker figures into v2 entries, the
bitrate meter, the RTCP parts stats read, and the timers' bounds."""

from __future__ import annotations

import asyncio
import struct

import pytest
from stats_shapes import check_consumer_stats, check_producer_stats, check_transport_stats
from tureen.shared.errors import ProtocolError
from tureen.supervisor import stats
from tureen.workers.rtp import rtcp
from tureen.workers.stats import RateMeter


def stream_figures(ssrc: int = 1111, packets: int = 100) -> dict:
    return {
        "ssrc": ssrc, "profile": "default", "packets": packets, "octets": packets * 1000,
        "bitrate": 800_000, "packetsLost": 3, "fractionLost": 12, "jitter": 4,
        "packetsRepaired": 2, "nackCount": 1, "pliCount": 5, "firCount": 0,
    }


def consumer_figures(inbound: dict | None) -> dict:
    return {
        "consumerId": 7, "ssrc": 2222, "packets": 90, "octets": 91_000, "bitrate": 700_000,
        "packetsLost": 1, "fractionLost": 3, "roundTripTime": 12, "packetsRepaired": 4,
        "nackCount": 2, "pliCount": 1, "firCount": 1, "inbound": inbound,
    }


# -- interval ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "expected"),
    [({}, 1000), ({"interval": 10}, 1000), ({"interval": 2500}, 2500), ({"interval": 1500.7}, 1500),
     ({"interval": -5}, 1000)],
)
def test_interval_default_and_minimum_as_v2(msg: dict, expected: int) -> None:
    assert stats.parse_interval(msg) == expected


@pytest.mark.parametrize("bad", ["1000", None, True, [1000], {"ms": 1}, 2**31])
def test_a_non_number_interval_is_refused(bad: object) -> None:
    with pytest.raises(ProtocolError) as info:
        stats.parse_interval({"interval": bad})
    assert info.value.code == "bad_request"


# -- shaping -----------------------------------------------------------------------------------


def test_transport_entry_has_bytes_and_tuple_only_once_selected() -> None:
    figures = {
        "transportId": 9, "kind": "webrtc", "iceState": "new", "dtlsState": "new",
        "selectedTuple": None, "bytesReceived": 0, "bytesSent": 0, "maxBitrate": 1_500_000,
        "rembBitrate": 0, "rembSsrcs": [],
    }
    entry = stats.transport_entry(42, figures, 1234)
    assert "bytesReceived" not in entry and "iceSelectedTuple" not in entry
    check_transport_stats({"method": "transportStats", "target": "peer", "notification": True,
                           "id": 42, "stats": [entry]}, 42)
    tuple_ = {"localIP": "127.0.0.1", "localPort": 40000, "remoteIP": "127.0.0.1", "remotePort": 5000,
              "protocol": "udp"}
    figures.update(iceState="completed", dtlsState="connected", selectedTuple=tuple_,
                   bytesReceived=500, bytesSent=700, rembBitrate=1_500_000, rembSsrcs=[1111])
    entry = stats.transport_entry(42, figures, 2234)
    assert entry["bytesReceived"] == 500 and entry["bytesSent"] == 700
    assert entry["iceSelectedTuple"] == tuple_ and entry["iceConnectionState"] == "completed"
    assert entry["localAvailableSendBw"] == {"maxBitrate": 1_500_000, "bitrate": 1_500_000, "ssrcs": [1111]}
    check_transport_stats({"method": "transportStats", "target": "peer", "notification": True,
                           "id": 42, "stats": [entry]}, 42)


def test_producer_entries_one_per_stream_with_stable_ids() -> None:
    ids: dict[int, str] = {}
    figures = {"producerId": 3, "paused": False, "streams": [stream_figures(1), stream_figures(2)]}
    first = stats.producer_entries(figures, stats_ids=ids, kind="video", mime_type="video/VP8",
                                   timestamp=10, transport_id=55)
    again = stats.producer_entries(figures, stats_ids=ids, kind="video", mime_type="video/VP8",
                                   timestamp=20, transport_id=55)
    assert [e["id"] for e in first] == [e["id"] for e in again] and first[0]["id"] != first[1]["id"]
    note = {"method": "producerStats", "target": "peer", "notification": True, "id": 3, "stats": first}
    check_producer_stats(note, 3, 55, "video", streams=2)
    e = first[0]
    assert (e["packetCount"], e["byteCount"], e["jitter"], e["fractionLost"]) == (100, 100_000, 4, 12)
    assert (e["nackCount"], e["pliCount"], e["packetsRepaired"]) == (1, 5, 2)


def test_consumer_entries_inbound_then_outbound_sharing_the_producer_id() -> None:
    producer_ids: dict[int, str] = {}
    entries = stats.consumer_entries(
        consumer_figures(stream_figures(1111)), stats_id="c0ffee", producer_stats_ids=producer_ids,
        kind="video", mime_type="video/VP8", producer_mime_type="video/VP8", timestamp=5, transport_id=66,
    )
    note = {"method": "consumerStats", "target": "peer", "notification": True, "id": 7,
            "peerName": "alice", "stats": entries}
    check_consumer_stats(note, 7, "alice", 66, "video")
    inbound, outbound = entries
    assert inbound["id"] == producer_ids[1111] == outbound["inboundRtpId"]
    assert outbound["id"] == "c0ffee" and outbound["roundTripTime"] == 12
    assert (outbound["nackCount"], outbound["packetsRepaired"], outbound["firCount"]) == (2, 4, 1)
    alone = stats.consumer_entries(
        consumer_figures(None), stats_id="c0ffee", producer_stats_ids={}, kind="audio",
        mime_type="audio/opus", producer_mime_type="audio/opus", timestamp=5, transport_id=66,
    )
    assert len(alone) == 1 and "inboundRtpId" not in alone[0]


# -- bitrate -----------------------------------------------------------------------------------


def test_rate_meter_measures_about_the_last_second() -> None:
    meter = RateMeter()
    assert meter.bitrate(0.0, 0) == 0
    for i in range(6):  # 0.5 s ticks, 125 kB/s = 1 Mbit/s
        meter.sample(i * 0.5, int(i * 0.5 * 125_000))
    assert meter.bitrate(2.7, int(2.7 * 125_000)) == pytest.approx(1_000_000, rel=0.01)
    # The stream stopped 1.2 s ago: the window no longer sees it.
    meter.sample(3.0, 3 * 125_000 // 1)
    meter.sample(3.5, 3 * 125_000 // 1)
    meter.sample(4.0, 3 * 125_000 // 1)
    assert meter.bitrate(4.2, 3 * 125_000) == 0


# -- RTCP read for stats -----------------------------------------------------------------------


def test_report_blocks_from_rr_and_sr_with_signed_loss() -> None:
    rr = rtcp.rr(1, [(0xAAAA, 25, 7, 70_000, 30, 0x12345678, 0x10000)])
    sr = rtcp.sr(2, 0, 0, 0, 0)
    # An SR with one report block: count 1, 7 more words, the block says loss -2 (duplicates).
    block = struct.pack("!IIIIII", 0xBBBB, (3 << 24) | (0x1000000 - 2), 5, 6, 0, 0)
    sr_rb = bytes([0x81]) + sr[1:2] + struct.pack("!H", 12) + sr[4:] + block
    blocks = rtcp.parse(rr + sr_rb + rtcp.pli(1, 2)).report_blocks
    assert blocks == [(0xAAAA, 25, 7, 70_000, 30, 0x12345678, 0x10000), (0xBBBB, 3, -2, 5, 6, 0, 0)]
    with pytest.raises(ValueError):
        rtcp.parse(bytes([0x82]) + rr[1:2] + struct.pack("!H", 7) + rr[4:])  # 2 blocks claimed


def test_key_frame_request_kinds_tell_pli_from_fir() -> None:
    data = rtcp.pli(1, 0xAAAA) + rtcp.fir(1, 0xBBBB, 3)
    assert rtcp.parse(data).key_frame_requests == [(0xAAAA, rtcp.PSFB_PLI), (0xBBBB, rtcp.PSFB_FIR)]


# -- timers ------------------------------------------------------------------------------------


class Obj:
    def describe(self) -> str:
        return "obj"


async def test_timer_reports_at_once_never_overlaps_and_survives_errors() -> None:
    calls: list[float] = []
    in_flight = 0
    peak = 0
    loop = asyncio.get_running_loop()

    async def report(obj: Obj) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        calls.append(loop.time())
        try:
            await asyncio.sleep(0.15)  # slower than the interval: ticks are skipped
            if len(calls) == 2:
                raise ProtocolError("unavailable", "worker gone")
            if len(calls) == 3:
                raise RuntimeError("bug")
        finally:
            in_flight -= 1

    timers = stats.StatsTimers("test", report)
    obj = Obj()
    timers.start(obj, 100)
    timers.start(obj, 100)  # no-op
    assert len(timers) == 1
    await asyncio.sleep(0.05)
    assert len(calls) == 1  # the first report at once
    await asyncio.sleep(1.3)  # about 0.25 s per report (0.15 s + the skipped tick)
    assert peak == 1 and len(calls) >= 4  # errors did not stop it
    timers.stop(obj)
    n = len(calls)
    await asyncio.sleep(0.3)
    assert len(calls) == n and obj not in timers


def test_rate_meter_keeps_its_window_in_a_ring_and_stays_small() -> None:
    import tracemalloc

    meter = RateMeter()
    for i in range(20):  # wraps the ring: only the newest six samples count
        meter.sample(i * 0.25, i * 1000 if i < 15 else 15_000)
    # At 5.0 s the base is the newest sample at least 1 s old: 4.0 s, 15,000 octets.
    assert meter.bitrate(5.0, 15_000) == 0
    assert meter.bitrate(5.0, 15_000 + 1250) == 10_000  # 1,250 octets in 1 s
    assert meter.bitrate(4.8, 15_000 + 1250) == 9523  # base 3.75 s: 10,000 / 1.05, rounded down
    # One per consumer and per stream: 10,000 consumers must not cost MiBs of samples.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        meters = [RateMeter() for _ in range(200)]
        for m in meters:
            for i in range(8):
                m.sample(1000.0 + i * 0.25, 123_456_789 + i)
        per_meter = (tracemalloc.get_traced_memory()[0] - before) / len(meters)
    finally:
        tracemalloc.stop()
    assert per_meter < 400, per_meter
