"""RTCP feedback parsing and building (RFC 3550, RFC 4585, RFC 5104)."""

from __future__ import annotations

import struct

import pytest
from tureen.workers.rtp import rtcp

# A receiver report with one report block (RFC 3550 6.4.2): 32 bytes.
RR = struct.pack("!BBHI", 0x81, rtcp.RR, 7, 0x11111111) + struct.pack("!IIIIII", 0x22222222, 0, 0, 0, 0, 0)
# An SDES with one CNAME chunk "ab" (RFC 3550 6.5): header, SSRC, CNAME item, end, padding.
SDES = struct.pack("!BBHI", 0x81, rtcp.SDES, 2, 0x11111111) + b"\x01\x02ab"


def test_pli_is_the_rfc_4585_layout() -> None:
    assert rtcp.pli(0x01020304, 0x0A0B0C0D) == bytes.fromhex("81ce0002 01020304 0a0b0c0d")


def test_fir_is_the_rfc_5104_layout() -> None:
    # FMT 4, PT 206, length 4; media SSRC 0 in the header; FCI: SSRC, seq nr, 3 reserved.
    assert rtcp.fir(1, 0x0A0B0C0D, 300) == bytes.fromhex("84ce0004 00000001 00000000 0a0b0c0d 2c000000")


def test_compound_is_walked_packet_by_packet() -> None:
    data = RR + SDES + rtcp.pli(1, 2)
    assert [(pt, count) for pt, count, _, _ in rtcp.iter_compound(data)] == [
        (rtcp.RR, 1),
        (rtcp.SDES, 1),
        (rtcp.PSFB, rtcp.PSFB_PLI),
    ]


def test_key_frame_requests_from_pli_and_fir_in_a_compound() -> None:
    data = RR + rtcp.pli(1, 0xAAAA) + SDES + rtcp.fir(1, 0xBBBB, 1)
    assert [s for s, _ in rtcp.parse(data).key_frame_requests] == [0xAAAA, 0xBBBB]


def test_other_feedback_is_not_a_key_frame_request() -> None:
    nack = struct.pack("!BBHII", 0x80 | rtcp.RTPFB_NACK, rtcp.RTPFB, 3, 1, 0xAAAA) + struct.pack("!HH", 10, 0)
    remb = struct.pack("!BBHII", 0x8F, rtcp.PSFB, 2, 1, 0)
    assert [s for s, _ in rtcp.parse(RR + nack + remb).key_frame_requests] == []


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\xc9\x00",  # shorter than a header
        b"\x41\xc9\x00\x01\x00\x00\x00\x00",  # version 1
        RR[:-4],  # length runs past the datagram
        struct.pack("!BBH", 0x81, rtcp.PSFB, 1) + b"\x00" * 4,  # PLI of 8 bytes
    ],
)
def test_malformed_compound_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        rtcp.parse(data)


def test_nack_round_trip_packs_pid_and_blp() -> None:
    seqs = [65535, 0, 3, 16, 17, 40]
    packet = rtcp.nack(1, 0xCAFE, seqs)
    # 65535 carries 0, 3 and 15 (=65535+16); 16 and 17 share one entry, 40 another.
    assert len(packet) == 12 + 4 * 3
    assert rtcp.parse(packet).nacks == [(0xCAFE, [65535, 0, 3, 16, 17, 40])]


def test_sender_report_round_trip() -> None:
    packet = rtcp.sr(0xAB, (0x01020304 << 32) | 0x05060708, 90000, 10, 12000)
    assert len(packet) == 28
    assert rtcp.parse(RR + packet).sender_reports == [(0xAB, (0x01020304 << 32) | 0x05060708, 90000)]


def test_receiver_report_blocks_and_remb_are_well_formed() -> None:
    packet = rtcp.rr(7, [(0xAAAA, 25, 3, 70000, 12, 0x11112222, 65536)]) + rtcp.remb(7, 2_000_000, [0xAAAA])
    (rr, remb) = list(rtcp.iter_compound(packet))
    assert rr[:2] == (rtcp.RR, 1) and rr[3] - rr[2] == 32
    assert struct.unpack_from("!IIIIII", packet, 8) == (0xAAAA, (25 << 24) | 3, 70000, 12, 0x11112222, 65536)
    assert remb[:2] == (rtcp.PSFB, 15)
    body = packet[remb[2] + 12 : remb[3]]
    assert body[:4] == b"REMB" and body[4] == 1
    exp, mantissa = body[5] >> 2, ((body[5] & 3) << 16) | int.from_bytes(body[6:8], "big")
    assert mantissa << exp <= 2_000_000 < (mantissa + 1) << exp
    assert body[8:12] == (0xAAAA).to_bytes(4, "big")


def test_remb_round_trip_and_truncated_ssrc_list() -> None:
    packet = rtcp.remb(7, 1_500_000, [0xA, 0xB])
    ((bitrate, ssrcs),) = rtcp.parse(RR + packet).rembs
    assert ssrcs == [0xA, 0xB] and bitrate <= 1_500_000 < bitrate + (1 << 3)
    broken = bytearray(packet)
    broken[16] = 9  # claims 9 SSRCs
    with pytest.raises(ValueError):
        rtcp.parse(bytes(broken))


# -- SDES CNAME and compound packets (RFC 3550 6.1, 6.5; issue 11 item 3) ---------------------


def test_sdes_cname_is_the_rfc_3550_layout_byte_by_byte() -> None:
    # V=2 P=0 SC=1 | PT=202 | length 3 (16 bytes) | SSRC | CNAME=1, len 5, "alice" | END, pad
    assert rtcp.sdes_cname(0x01020304, "alice") == bytes.fromhex(
        "81 ca 0003" "01020304" "01 05 616c696365" "00"
    )


@pytest.mark.parametrize(
    ("cname", "nulls"),
    [("a", 1), ("ab", 4), ("abc", 3), ("abcd", 2), ("abcde", 1), ("x" * 255, 3)],
)
def test_sdes_item_list_ends_with_one_to_four_nulls_on_a_word_boundary(cname: str, nulls: int) -> None:
    packet = rtcp.sdes_cname(7, cname)
    assert len(packet) % 4 == 0
    assert (packet[1], packet[0] & 0x1F) == (rtcp.SDES, 1)
    assert struct.unpack_from("!H", packet, 2)[0] == len(packet) // 4 - 1
    item_end = 8 + 2 + len(cname)
    assert packet[8:10] == bytes((rtcp.SDES_CNAME, len(cname))) and packet[10:item_end] == cname.encode()
    assert packet[item_end:] == bytes(nulls)  # the first null is END, the rest padding
    assert rtcp.sdes_cnames(packet) == [(7, cname)]


def test_sdes_cname_refuses_what_one_length_octet_cannot_say() -> None:
    for bad in ("", "x" * 256, "é" * 128):  # 256 bytes of UTF-8
        with pytest.raises(ValueError, match="1..255 bytes"):
            rtcp.sdes_cname(1, bad)
    assert rtcp.sdes_cnames(rtcp.sdes_cname(1, "é" * 127)) == [(1, "é" * 127)]


def test_sdes_cnames_reads_every_chunk_and_skips_other_items() -> None:
    # Two chunks: (1: NAME "n", CNAME "c1") and (2: CNAME "c2"), then a PLI after the SDES.
    chunk1 = struct.pack("!I", 1) + b"\x02\x01n" + b"\x01\x02c1" + b"\x00"
    chunk2 = struct.pack("!I", 2) + b"\x01\x02c2" + b"\x00" * 4
    body = chunk1 + chunk2
    packet = struct.pack("!BBH", 0x82, rtcp.SDES, len(body) // 4) + body + rtcp.pli(1, 2)
    assert rtcp.sdes_cnames(packet) == [(1, "c1"), (2, "c2")]
    truncated = struct.pack("!BBH", 0x81, rtcp.SDES, 2) + struct.pack("!I", 1) + b"\x01\x09abcd"
    with pytest.raises(ValueError, match="SDES"):
        rtcp.sdes_cnames(truncated)


def test_compound_is_report_then_sdes_then_feedback() -> None:
    report = rtcp.rr(0x99, [])
    data = rtcp.compound(report, 0x99, "tureen-x", rtcp.pli(0x99, 5), rtcp.nack(0x99, 5, [10]))
    assert [pt for pt, _, _, _ in rtcp.iter_compound(data)] == [rtcp.RR, rtcp.SDES, rtcp.PSFB, rtcp.RTPFB]
    assert data[:8] == bytes.fromhex("80c90001 00000099")  # an RR without blocks: 8 bytes
    assert rtcp.sdes_cnames(data) == [(0x99, "tureen-x")]
    fb = rtcp.parse(data)
    assert fb.key_frame_requests == [(5, rtcp.PSFB_PLI)] and fb.nacks == [(5, [10])]
    sr = rtcp.compound(rtcp.sr(0xAB, rtcp.ntp_now(1.5), 3000, 7, 700), 0xAB, "peer-cname")
    assert [pt for pt, _, _, _ in rtcp.iter_compound(sr)] == [rtcp.SR, rtcp.SDES]
    assert struct.unpack_from("!II", sr, 20) == (7, 700)  # packet count, octet count


def test_ntp_timestamps_of_wall_clock_time() -> None:
    # 1970-01-01 is 2208988800 s after the NTP epoch; the fraction is 2^32 per second.
    assert rtcp.ntp_now(0.0) == 2_208_988_800 << 32
    assert rtcp.ntp_now(1.5) == (2_208_988_801 << 32) | (1 << 31)
    assert abs(rtcp.ntp_to_unix(rtcp.ntp_now(1_800_000_000.25)) - 1_800_000_000.25) < 1e-6
