"""Writes the seed inputs of tests/fuzz/corpus/ (files named seed-*): real packets and
messages in the form each target reads. `python -m tests.fuzz.seeds` from the repository root
rewrites them (deterministically, but for the DTLS ClientHello, whose random differs);
inputs that `make fuzz` adds, and crash-* regression inputs, are left alone.

Targets whose input is the packet itself (rtp, rtcp, tcp_framing, wire, capabilities) get
the packet; the step-driven ones (stun, demux, room, fanout) get the bytes their
harness.Draw reads as that step: the layouts are spelled out below next to each seed.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import orjson
from aioice import stun as aioice_stun

from . import shapes
from .harness import CORPUS

FIXED = struct.Struct("!BBHII")


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False,
        ext: bytes = b"", profile: int = 0xBEDE, csrcs: tuple[int, ...] = (), padding: int = 0) -> bytes:  # fmt: skip
    b0 = 0x80 | len(csrcs) | (0x10 if ext else 0) | (0x20 if padding else 0)
    out = FIXED.pack(b0, pt | (0x80 if marker else 0), seq, ts, ssrc)
    out += b"".join(c.to_bytes(4, "big") for c in csrcs)
    if ext:
        ext += bytes(-len(ext) % 4)
        out += struct.pack("!HH", profile, len(ext) // 4) + ext
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes((padding,))
    return out


def rtp_seeds() -> dict[str, bytes]:
    abs_send = bytes((0x22,)) + (0x123456).to_bytes(3, "big")  # id 2, 3 bytes
    toffset = bytes((0x12,)) + bytes(3)  # id 1
    audio_level = bytes((0x10, 0x80 | 30))  # id 1, 1 byte, voice
    vp8_key = bytes((0x90, 0x80, 0x12, 0x34)) + bytes((0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A)) + bytes(60)
    return {
        "vp8-keyframe-exts": rtp(96, 1000, 90000, 1111111111, vp8_key, True, abs_send + toffset),
        "vp8-delta": rtp(96, 1001, 93000, 1111111111, bytes((0x10, 0x01)) + bytes(80)),
        "opus-audio-level": rtp(111, 7, 960, 3550384741, bytes(range(40)), ext=audio_level),
        "h264-stap-a-sps": rtp(125, 5, 1, 42, bytes((24, 0, 4, 0x67, 0x42, 0xE0, 0x1F, 0, 2, 0x68, 0xCE))),
        "h264-fu-a-idr": rtp(125, 6, 1, 42, bytes((28, 0x85)) + bytes(100)),
        "vp9-start": rtp(98, 9, 9, 9, bytes((0x08, 0x80, 0x01)) + bytes(30)),
        "padding-only": rtp(96, 1002, 93000, 1111111111, b"", padding=224),
        "two-byte-ext-csrcs": rtp(96, 3, 3, 3, b"x" * 20, ext=bytes((5, 2, 1, 2, 0, 7, 0)),
                                  profile=0x1000, csrcs=(1, 2)),  # fmt: skip
        "rtx-osn": rtp(97, 50, 93000, 2222222222, (1001).to_bytes(2, "big") + bytes((0x10, 0x01)) + bytes(20)),
    }


def rtcp_seeds() -> dict[str, bytes]:
    from tureen.workers.rtp import rtcp

    sdes = struct.pack("!BBH", 0x81, 202, 6) + (1111111111).to_bytes(4, "big") + b"\x01\x10Zx3bD9kqT0rQ1fYp\x00\x00"
    rr = rtcp.rr(0xAABBCCDD, [(1111111111, 12, 3, 0x1_0400, 20, 0x12345678, 655)])
    bye = struct.pack("!BBH", 0x81, 203, 1) + (1111111111).to_bytes(4, "big")
    return {
        "sr-sdes": rtcp.sr(1111111111, 0xE5F0000012345678, 90000, 100, 12000) + sdes,
        "rr": rr,
        "rr-empty": struct.pack("!BBH", 0x80, 201, 1) + (1).to_bytes(4, "big"),
        "nack": rtcp.nack(1, 1111111111, [1000, 1002, 1017, 3000]),
        "pli": rtcp.pli(1, 1111111111),
        "fir": rtcp.fir(1, 1111111111, 3),
        "remb": rtcp.remb(1, 1_500_000, [1111111111, 3550384741]),
        "compound-rr-remb-nack-pli": rr + rtcp.remb(1, 300_000, [5]) + rtcp.nack(1, 5, [65535, 0, 1]) + rtcp.pli(1, 5),
        "bye": rr + bye,
    }


def stun_messages(password: str, ufrag: str) -> dict[str, bytes]:
    def check(integrity: bool, use_candidate: bool = False, user: str | None = None) -> bytes:
        attrs = {"USERNAME": user or f"{ufrag}:bRoW", "PRIORITY": 1853817087, "ICE-CONTROLLING": 0x1122334455667788}
        if use_candidate:
            attrs["USE-CANDIDATE"] = None
        msg = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST,
                                  transaction_id=b"0123456789ab", attributes=attrs)  # fmt: skip
        if integrity:
            msg.add_message_integrity(password.encode())
        else:
            msg.add_fingerprint()
        return bytes(msg)

    indication = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.INDICATION,
                                     transaction_id=b"0123456789ab")  # fmt: skip
    indication.add_fingerprint()
    return {
        "binding-integrity": check(True),
        "binding-use-candidate": check(True, True),
        "binding-no-integrity": check(False),
        "binding-wrong-ufrag": check(True, user="other:bRoW"),
        "indication": bytes(indication),
    }


def dtls_client_hello() -> bytes:
    from tureen.workers.transport.dtls import DtlsEndpoint

    endpoint = DtlsEndpoint()
    endpoint.set_remote({"role": "server", "fingerprints": [{"algorithm": "sha-256", "value": "00"}]})
    (first, *_) = endpoint.start(0.0)
    return first


def stun_seeds() -> dict[str, bytes]:
    """stun.py steps: [steps-1] then per step [time u16, addr, op (>= 16: a datagram),
    mode (0: raw), length u8, bytes...]."""
    from .stun import PASSWORD, UFRAG

    out = {}
    msgs = stun_messages(PASSWORD, UFRAG)
    for name, msg in msgs.items():
        out[name] = bytes((0, 0, 10, 0, 255, 0, len(msg))) + msg
    # A check, then the nominating one from another address, then consent expiry.
    a, b = msgs["binding-integrity"], msgs["binding-use-candidate"]
    out["check-nominate-expire"] = (
        bytes((2,)) + bytes((0, 10, 0, 255, 0, len(a))) + a + bytes((0, 10, 3, 255, 0, len(b))) + b
        + bytes((0xFF, 0xFF, 0, 0))
    )  # fmt: skip
    return out


def demux_seeds() -> dict[str, bytes]:
    """demux.py steps: [steps-1] then per step [transport (0 alice, 1 bob), install SRTP
    (< 64; read only while the transport has none), addr, mode, ...]; mode 0 is an ICE check
    [use-candidate]; 1 SRTP RTP [u32, ssrc choice, u8, pt choice, b0 gate (>= 64: plain
    header), marker, seq u16, ts u32, length u16, payload]; 2 SRTCP [length - 4, body
    (sender SSRC first), count/FMT, pt choice (200, 201, 205, 206)]; 4 raw [length u16, bytes]."""
    nominate_srtp = bytes((0, 0, 0, 0, 1))  # alice, install SRTP, addr 0, check + USE-CANDIDATE
    nominate = bytes((0, 255, 0, 0, 1))  # the same without SRTP
    rtp_step = bytes((0, 0, 1)) + bytes(4) + bytes((0, 0, 0, 255, 0)) + (1000).to_bytes(2, "big")
    rtp_step += (90000).to_bytes(4, "big") + (40).to_bytes(2, "big") + bytes((0x10,)) + bytes(39)
    nack = struct.pack("!HH", 1000, 0x0003)
    srtcp_step = bytes((0, 0, 2, 8)) + (1).to_bytes(4, "big") + (0x5000).to_bytes(4, "big") + nack + bytes((1, 2))
    pli_step = bytes((0, 0, 2, 4)) + (1).to_bytes(4, "big") + (1111111111).to_bytes(4, "big") + bytes((1, 3))
    hello = dtls_client_hello()
    dtls_step = bytes((0, 255, 0, 4)) + len(hello).to_bytes(2, "big") + hello
    stranger = bytes((0, 2, 4, 0, 20)) + rtp(96, 1, 1, 1111111111, bytes(8))
    return {
        "nominate-srtp-rtp-srtcp": bytes((4,)) + nominate_srtp + rtp_step + srtcp_step + pli_step + stranger,
        "nominate-dtls-client-hello": bytes((1,)) + nominate + dtls_step,
        "bob-nominate-srtcp": bytes((1,)) + bytes((1, 0, 1, 0, 1)) + bytes((1, 1, 2, 8)) + bytes(8) + nack + bytes((1, 2)),
        "dtls-from-stranger": bytes((0,)) + bytes((0, 255, 2, 4)) + len(hello).to_bytes(2, "big") + hello,
    }


def tcp_seeds() -> dict[str, bytes]:
    from tureen.workers.transport.tcp import frame

    from .stun import PASSWORD, UFRAG

    check = stun_messages(PASSWORD, UFRAG)["binding-integrity"]
    media = rtp(96, 1, 1, 1, bytes(100))
    return {
        "stun-dtls-srtp-frames": frame(check) + frame(dtls_client_hello()) + frame(media) + b"\x40",
        "empty-frames": b"\0\0\0\0" + frame(media) + b"\0\0",
        "oversize-length": frame(check) + b"\xff\xff" + bytes(10),
        "partial": frame(media)[:50],
    }


def control_messages() -> dict[str, dict]:
    """Control-API envelopes (docs/control-api.md) around the protocol requests of
    tests/msclient.py."""
    return {
        "room-create": {"id": 1, "method": "room.create", "roomId": "r1", "mediaCodecs": shapes.MEDIA_CODECS},
        "join": {"id": 2, "method": "room.request", "roomId": "r1", "peerName": "alice",
                 "request": {"method": "join", "target": "room", "peerName": "alice",
                             "rtpCapabilities": shapes.JOIN_CAPS, "spy": False, "appData": {}}},
        "create-transport": {"id": 3, "method": "room.request", "roomId": "r1", "peerName": "alice",
                             "request": {"method": "createTransport", "target": "peer", "id": 12345678,
                                         "direction": "send", "options": {"tcp": True},
                                         "dtlsParameters": shapes.DTLS_PARAMETERS}},
        "create-producer": {"id": 4, "method": "room.request", "roomId": "r1", "peerName": "alice",
                            "request": {"method": "createProducer", "target": "peer", "id": 23456789,
                                        "kind": "video", "transportId": 12345678,
                                        "rtpParameters": shapes.SIMULCAST_PRODUCER, "paused": False}},
        "pause-consumer": {"id": 5, "method": "room.notify", "roomId": "r1", "peerName": "bob",
                           "notification": {"method": "pauseConsumer", "target": "peer", "id": 3}},
    }  # fmt: skip


def wire_seeds() -> dict[str, bytes]:
    out = {name: orjson.dumps(msg) for name, msg in control_messages().items()}
    out["big-id"] = b'{"id": 123456789012345678901234567890, "method": "room.list"}'
    out["not-object"] = b"[1, 2, 3]"
    out["deep"] = b"[" * 300 + b"]" * 300
    out["bad-utf8"] = b'{"a": "\xff"}'
    return out


def capabilities_seeds() -> dict[str, bytes]:
    base = {"mediaCodecs": shapes.MEDIA_CODECS, "rtpCapabilities": shapes.JOIN_CAPS}
    return {
        "video": orjson.dumps({**base, "kind": "video", "rtpParameters": shapes.VIDEO_PRODUCER}),
        "simulcast": orjson.dumps({**base, "kind": "video", "rtpParameters": shapes.SIMULCAST_PRODUCER}),
        "audio": orjson.dumps({**base, "kind": "audio", "rtpParameters": shapes.AUDIO_PRODUCER}),
        "vp8-only-room": orjson.dumps({**base, "mediaCodecs": [shapes.MEDIA_CODECS[1]]}),
    }


def room_seeds() -> dict[str, bytes]:
    """room.py steps: [steps-1] then per step [method index, 255 (no request/notification
    swap), peer (0 alice, 2 bob), 0 (mutate), 0 (no edits)]."""
    from tureen.supervisor.room import NOTIFICATIONS

    from .room import METHODS

    consumer_side = {"enableConsumer", "pauseConsumer", "resumeConsumer", "setConsumerPreferredProfile",
                     "enableConsumerStats", "disableConsumerStats"}  # fmt: skip
    out = {}
    for i, method in enumerate(METHODS):
        peer = 2 if method in consumer_side else 0
        out[method] = bytes((0, i, 255, peer, 0, 0))
    order = ["enableConsumer", "pauseProducer", "updateProducer", "resumeConsumer", "closeProducer", "leave"]
    steps = b"".join(bytes((METHODS.index(m), 255, 2 if m in consumer_side else 0, 0, 0)) for m in order)
    out["consume-pause-update-close-leave"] = bytes((len(order) - 1,)) + steps
    assert NOTIFICATIONS  # the methods above cover both kinds
    return out


def fanout_seeds() -> dict[str, bytes]:
    out = {}
    for i in range(4):
        rng = random.Random(i)
        out[f"random-{i}"] = bytes(rng.randrange(256) for _ in range(3000))
    return out


def write() -> None:
    producers = {
        "rtp": rtp_seeds,
        "rtcp": rtcp_seeds,
        "stun": stun_seeds,
        "demux": demux_seeds,
        "tcp_framing": tcp_seeds,
        "wire": wire_seeds,
        "capabilities": capabilities_seeds,
        "room": room_seeds,
        "fanout": fanout_seeds,
    }
    for target, make in producers.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for name, data in make().items():
            Path(folder / f"seed-{name}").write_bytes(data)
        print(f"{target}: {len(list(folder.glob('seed-*')))} seeds")


if __name__ == "__main__":
    write()
