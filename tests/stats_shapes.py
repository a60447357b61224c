"""Checkers of the stats entries docs/protocol/messages.md documents (mediasoup v2's worker shapes).

Each returns nothing and asserts every field: the exact key set, and each value's type and
range. Used by the protocol and integration tests of enable{Transport,Producer,Consumer}Stats.
"""

from __future__ import annotations

from typing import Any

RTP_COMMON = {
    "type", "id", "timestamp", "ssrc", "mediaType", "kind", "mimeType", "packetCount",
    "byteCount", "bitrate", "packetsLost", "fractionLost", "packetsDiscarded",
    "packetsRepaired", "firCount", "pliCount", "nackCount", "sliCount",
}
TRANSPORT_KEYS = {
    "type", "id", "timestamp", "dtlsState", "iceConnectionState", "localAvailableSendBw",
    "remoteAvailableSendBw",
}
TRANSPORT_TUPLE_KEYS = {"bytesReceived", "bytesSent", "iceSelectedTuple"}
ICE_STATES = {"new", "connected", "completed", "disconnected"}
DTLS_STATES = {"new", "connecting", "connected", "failed", "closed"}


def _uint(value: Any, name: str) -> None:
    assert isinstance(value, int) and not isinstance(value, bool), f"{name}: {value!r} is no integer"
    assert value >= 0, f"{name}: {value} < 0"


def check_rtp_entry(entry: dict[str, Any], *, outbound: bool, transport_id: int | None, kind: str) -> None:
    expected = set(RTP_COMMON)
    expected.add("roundTripTime" if outbound else "jitter")
    if transport_id is not None:
        expected.add("transportId")
    if outbound and "inboundRtpId" in entry:
        expected.add("inboundRtpId")
    assert set(entry) == expected, f"keys {sorted(set(entry) ^ expected)} differ: {entry}"
    assert entry["type"] == ("outbound-rtp" if outbound else "inbound-rtp")
    assert isinstance(entry["id"], str) and entry["id"]
    assert entry["mediaType"] == entry["kind"] == kind
    assert isinstance(entry["mimeType"], str) and entry["mimeType"].lower().startswith(kind + "/")
    for name in expected - {"type", "id", "mediaType", "kind", "mimeType", "inboundRtpId"}:
        _uint(entry[name], name)
    assert entry["fractionLost"] <= 255
    if transport_id is not None:
        assert entry["transportId"] == transport_id


def check_transport_entry(entry: dict[str, Any], transport_id: int) -> None:
    expected = set(TRANSPORT_KEYS)
    if "iceSelectedTuple" in entry:
        expected |= TRANSPORT_TUPLE_KEYS
    assert set(entry) == expected, f"keys {sorted(set(entry) ^ expected)} differ: {entry}"
    assert entry["type"] == "transport" and entry["id"] == transport_id
    _uint(entry["timestamp"], "timestamp")
    assert entry["dtlsState"] in DTLS_STATES
    assert entry["iceConnectionState"] in ICE_STATES
    local = entry["localAvailableSendBw"]
    assert set(local) == {"maxBitrate", "bitrate", "ssrcs"}
    _uint(local["maxBitrate"], "maxBitrate")
    _uint(local["bitrate"], "bitrate")
    assert all(isinstance(s, int) for s in local["ssrcs"])
    remote = entry["remoteAvailableSendBw"]
    assert set(remote) == {"bitrate", "ssrcs"}
    _uint(remote["bitrate"], "bitrate")
    assert isinstance(remote["ssrcs"], list)
    if "iceSelectedTuple" in entry:
        _uint(entry["bytesReceived"], "bytesReceived")
        _uint(entry["bytesSent"], "bytesSent")
        t = entry["iceSelectedTuple"]
        assert set(t) == {"localIP", "localPort", "remoteIP", "remotePort", "protocol"}
        assert isinstance(t["localIP"], str) and isinstance(t["remoteIP"], str)
        assert 0 < t["localPort"] < 65536 and 0 < t["remotePort"] < 65536
        assert t["protocol"] in ("udp", "tcp")


def check_transport_stats(note: dict[str, Any], transport_id: int) -> None:
    assert set(note) == {"method", "target", "notification", "id", "stats"}
    assert note["id"] == transport_id and len(note["stats"]) == 1
    check_transport_entry(note["stats"][0], transport_id)


def check_producer_stats(note: dict[str, Any], producer_id: int, transport_id: int, kind: str, streams: int) -> None:
    assert set(note) == {"method", "target", "notification", "id", "stats"}
    assert note["id"] == producer_id and len(note["stats"]) == streams
    for entry in note["stats"]:
        check_rtp_entry(entry, outbound=False, transport_id=transport_id, kind=kind)


def check_consumer_stats(note: dict[str, Any], consumer_id: int, peer_name: str, transport_id: int, kind: str) -> None:
    assert set(note) == {"method", "target", "notification", "id", "peerName", "stats"}
    assert note["id"] == consumer_id and note["peerName"] == peer_name
    stats = note["stats"]
    assert len(stats) in (1, 2)
    outbound = stats[-1]
    check_rtp_entry(outbound, outbound=True, transport_id=transport_id, kind=kind)
    if len(stats) == 2:
        inbound = stats[0]
        check_rtp_entry(inbound, outbound=False, transport_id=None, kind=kind)
        assert outbound["inboundRtpId"] == inbound["id"]
    else:
        assert "inboundRtpId" not in outbound
