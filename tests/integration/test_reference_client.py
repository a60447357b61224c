"""A control-API client written from the reference alone (issue 14, "Done when").

Written from README.md, docs/control-api.md and docs/protocol/*.md only, with raw pyzmq (a
DEALER socket, one JSON frame per message), not TureenClient: it starts a real `tureen serve`
(tests/support.py starts and stops the process, nothing else), creates a room, joins two peers
over `room.request`, makes plain RTP transports (comedia for the sender, ip/port for the
receiver, RTP and RTCP on one port), a VP8 producer and its consumer, sends real RTP and
receives it at the consumer's address, pauses and resumes, watches the events of a second,
subscribed connection, checks the ordering guarantees the reference states, triggers
documented errors, leaves and closes the room. Every message it sends and receives is also
checked against shared/schemas (the reference's JSON Schemas).
"""

from __future__ import annotations

import itertools
import socket
import struct
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
from schema_check import MessageChecker
from support import ServerProcess

pytestmark = pytest.mark.timeout(120)

CHECK = MessageChecker()
MEDIA_CODECS = [
    {"kind": "audio", "name": "opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "name": "VP8", "clockRate": 90000},
]
VP8_PT = 96  # the sender's own payload type (createProducer: "the client's own payload types")
SENDER_SSRC = 0x1234ABCD
ROOM = "ref-room"


class App:
    """The app's side of the control API: one DEALER, requests matched by `id`, events kept
    in arrival order (together with the replies, so ordering can be checked)."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.ids = itertools.count(1)
        # Everything received, in order: ("reply", id, message) or ("event", None, message).
        self.log: list[tuple[str, Any, dict[str, Any]]] = []
        self.events_read = 0  # index into self.log of the next event next_event() looks at

    def close(self) -> None:
        self.sock.close()

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        message = orjson.loads(self.sock.recv())
        if "event" in message:
            assert not CHECK.errors("control", "event", message)
            event_def = f"event.{message['event']}"
            assert not CHECK.errors("control", event_def, message), CHECK.errors(
                "control", event_def, message
            )
            if message["event"] == "notification":
                inner = message["notification"]
                assert not CHECK.errors("protocol", f"{inner['method']}.notification", inner)
            self.log.append(("event", None, message))
        else:
            assert not CHECK.errors("control", "reply", message), CHECK.errors(
                "control", "reply", message
            )
            self.log.append(("reply", message["id"], message))
        return message

    def send(self, method: str, **params: Any) -> int:
        request_id = next(self.ids)
        self.sock.send(orjson.dumps({"id": request_id, "method": method, **params}))
        return request_id

    def wait_reply(self, request_id: Any, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for kind, rid, message in self.log:
            if kind == "reply" and rid == request_id:
                return message
        while time.monotonic() < deadline:
            message = self._receive(max(0.0, deadline - time.monotonic()))
            if message is not None and "event" not in message and message["id"] == request_id:
                return message
        raise AssertionError(f"no reply to request {request_id} in {timeout} s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """A request and its reply, checked against the schema of the method's params."""
        request_id = self.send(method, **params)
        reply = self.wait_reply(request_id)
        return reply

    def ok(self, method: str, **params: Any) -> Any:
        reply = self.call(method, **params)
        assert reply["ok"], reply
        definition = f"{method}.data"
        if CHECK.has("control", definition):
            assert not CHECK.errors("control", definition, reply["data"]), CHECK.errors(
                "control", definition, reply["data"]
            )
        if method == "room.request":
            inner = f"{params['request']['method']}.response"
            assert not CHECK.errors("protocol", inner, reply["data"]), CHECK.errors(
                "protocol", inner, reply["data"]
            )
        return reply["data"]

    def error(self, method: str, **params: Any) -> dict[str, Any]:
        reply = self.call(method, **params)
        assert reply["ok"] is False, reply
        return reply["error"]

    def index_of_reply(self, request_id: Any) -> int:
        return next(
            i for i, (kind, rid, _) in enumerate(self.log) if kind == "reply" and rid == request_id
        )

    def events_between(self, start: int, end: int) -> list[dict[str, Any]]:
        return [m for kind, _, m in self.log[start:end] if kind == "event"]

    def next_event(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while self.events_read < len(self.log):
                kind, _, message = self.log[self.events_read]
                self.events_read += 1
                if kind == "event" and predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no such event in time")
            self._receive(remaining)

    def drain(self, duration: float) -> None:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            self._receive(max(0.0, deadline - time.monotonic()))


def notifications(events: list[dict[str, Any]], peer: str) -> list[dict[str, Any]]:
    return [
        e["notification"] for e in events if e["event"] == "notification" and e["peerName"] == peer
    ]


def client_capabilities(room_caps: dict[str, Any]) -> dict[str, Any]:
    """join's rtpCapabilities: the room's codecs with the room's payload types (the reference:
    'the room codecs the client can receive, with the room's payload types and extension ids')."""
    codecs = [
        {
            k: codec[k]
            for k in (
                "kind",
                "name",
                "mimeType",
                "clockRate",
                "preferredPayloadType",
                "parameters",
                "channels",
                "rtcpFeedback",
            )
            if k in codec
        }
        for codec in room_caps["codecs"]
    ]
    extensions = [
        {"kind": e["kind"], "uri": e["uri"], "preferredId": e["preferredId"]}
        for e in room_caps["headerExtensions"]
    ]
    return {"codecs": codecs, "headerExtensions": extensions, "fecMechanisms": []}


def vp8_key_frame_packet(seq: int, ts: int) -> bytes:
    """One RTP packet holding a whole VP8 key frame: descriptor S=1, partition 0; payload
    header P=0 (docs/media-quality.md, "Where a consumer starts"), then the key frame's start
    code and a 16x16 size, marker set (the frame ends here)."""
    header = struct.pack("!BBHII", 0x80, 0x80 | VP8_PT, seq & 0xFFFF, ts & 0xFFFFFFFF, SENDER_SSRC)
    descriptor = b"\x10"
    frame = bytes([0x50, 0x02, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", 16, 16) + b"\x00" * 40
    return header + descriptor + frame


def is_rtcp(datagram: bytes) -> bool:
    """RTP and RTCP share the port (RFC 5761): RTCP packet types are 192-223."""
    return len(datagram) >= 2 and 192 <= datagram[1] <= 223


def rtcp_types(datagram: bytes) -> list[int]:
    """The packet types of a compound RTCP datagram, in order (RFC 3550 6.1)."""
    types, offset = [], 0
    while offset + 4 <= len(datagram):
        types.append(datagram[offset + 1])
        offset += 4 * (struct.unpack("!H", datagram[offset + 2 : offset + 4])[0] + 1)
    return types


def receive_rtp(sock: socket.socket, duration: float) -> tuple[list[bytes], list[bytes]]:
    """What arrives at a socket within `duration` s: (RTP packets, RTCP packets)."""
    rtp: list[bytes] = []
    rtcp: list[bytes] = []
    deadline = time.monotonic() + duration
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(2048)
        except TimeoutError:
            break
        (rtcp if is_rtcp(data) else rtp).append(data)
    return rtp, rtcp


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def wait_ready(app: App, timeout: float = 30.0) -> dict[str, Any]:
    """The reference: poll `server.ping` until it answers, `server.info` says `ready`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = app.ok("server.info")
        if info["ready"]:
            return info
        time.sleep(0.2)
    raise AssertionError("server not ready")


def test_a_client_written_from_the_reference_alone_runs_a_plain_rtp_session(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, workers=2)
    app = App(server.endpoint)
    monitor = App(server.endpoint)
    sender, receiver, carol_sock = udp(), udp(), udp()
    try:
        assert app.ok("server.ping") == {"pong": True}
        wait_ready(app)

        # --- room, subscription of a second connection -------------------------------------
        room = app.ok("room.create", roomId=ROOM, mediaCodecs=MEDIA_CODECS)
        assert room["roomId"] == ROOM
        caps = room["rtpCapabilities"]
        vp8 = next(c for c in caps["codecs"] if c["name"] == "VP8")
        assert monitor.ok("room.subscribe", roomId=ROOM)["subscribers"] == 2

        # --- two peers join ----------------------------------------------------------------
        query = app.ok(
            "room.request", roomId=ROOM, request={"method": "queryRoom", "target": "room"}
        )
        assert query["rtpCapabilities"] == caps
        join_alice = {
            "method": "join",
            "target": "room",
            "peerName": "alice",
            "rtpCapabilities": client_capabilities(caps),
        }
        assert app.ok("room.request", roomId=ROOM, peerName="alice", request=join_alice) == {
            "peers": []
        }
        start = len(app.log)
        join_bob = {
            "method": "join",
            "target": "room",
            "peerName": "bob",
            "rtpCapabilities": client_capabilities(caps),
            "appData": {"seat": 2},
        }
        bob_join_id = app.send("room.request", roomId=ROOM, request=join_bob)
        bob_joined = app.wait_reply(bob_join_id)
        assert bob_joined["ok"], bob_joined
        assert bob_joined["data"] == {
            "peers": [{"name": "alice", "consumers": []}]
        }  # no appData: absent
        # Events a request causes arrive before its reply: alice's newPeer, the peer.joined.
        before = app.events_between(start, app.index_of_reply(bob_join_id))
        assert notifications(before, "alice") == [
            {
                "method": "newPeer",
                "target": "peer",
                "notification": True,
                "name": "bob",
                "appData": {"seat": 2},
                "consumers": [],
            }
        ]
        assert {
            "event": "peer.joined",
            "roomId": ROOM,
            "peerName": "bob",
            "spy": False,
            "appData": {"seat": 2},
        } in before

        join_carol = {
            "method": "join",
            "target": "room",
            "peerName": "carol",
            "rtpCapabilities": client_capabilities(caps),
        }
        assert (
            len(app.ok("room.request", roomId=ROOM, peerName="carol", request=join_carol)["peers"])
            == 2
        )

        # --- plain transports: the sender latches (comedia), the receiver names its address -
        send_transport_id, recv_transport_id, producer_id = 11111112, 22222223, 33333334
        sent = app.ok(
            "room.request",
            roomId=ROOM,
            peerName="alice",
            request={
                "method": "createTransport",
                "target": "peer",
                "id": send_transport_id,
                "direction": "send",
                "options": {},
                "plainRtpParameters": {"comedia": True},
            },
        )
        tureen_send_addr = (sent["plainRtpParameters"]["ip"], sent["plainRtpParameters"]["port"])
        receiver_addr = receiver.getsockname()
        received = app.ok(
            "room.request",
            roomId=ROOM,
            peerName="bob",
            request={
                "method": "createTransport",
                "target": "peer",
                "id": recv_transport_id,
                "direction": "recv",
                "options": {},
                "plainRtpParameters": {"ip": receiver_addr[0], "port": receiver_addr[1]},
            },
        )
        assert set(received) == {"plainRtpParameters"}
        # carol receives through a comedia recv transport: nothing until she sends a datagram.
        carol_transport_id = 22222224
        carol_plain = app.ok(
            "room.request",
            roomId=ROOM,
            peerName="carol",
            request={
                "method": "createTransport",
                "target": "peer",
                "id": carol_transport_id,
                "direction": "recv",
                "options": {},
                "plainRtpParameters": {"comedia": True},
            },
        )["plainRtpParameters"]

        # --- producer: bob's newConsumer comes before the reply ----------------------------
        start = len(app.log)
        produce_id = app.send(
            "room.request",
            roomId=ROOM,
            peerName="alice",
            request={
                "method": "createProducer",
                "target": "peer",
                "id": producer_id,
                "kind": "video",
                "transportId": send_transport_id,
                "paused": False,
                "appData": {"source": "camera"},
                "rtpParameters": {
                    "codecs": [
                        {
                            "name": "VP8",
                            "mimeType": "video/VP8",
                            "clockRate": 90000,
                            "payloadType": VP8_PT,
                            "rtcpFeedback": [
                                {"type": "nack"},
                                {"type": "nack", "parameter": "pli"},
                            ],
                            "parameters": {},
                        }
                    ],
                    "encodings": [{"ssrc": SENDER_SSRC}],
                    "rtcp": {"cname": "reference-client", "reducedSize": True, "mux": True},
                },
            },
        )
        produced = app.wait_reply(produce_id)
        assert produced == {"id": produce_id, "ok": True, "data": {}}
        new_consumers = [
            n
            for n in notifications(app.events_between(start, app.index_of_reply(produce_id)), "bob")
            if n["method"] == "newConsumer"
        ]
        assert len(new_consumers) == 1, app.log[start:]
        carol_consumers = [
            n
            for n in notifications(
                app.events_between(start, app.index_of_reply(produce_id)), "carol"
            )
            if n["method"] == "newConsumer"
        ]
        assert len(carol_consumers) == 1
        carol_consumer = carol_consumers[0]
        app.ok(
            "room.request",
            roomId=ROOM,
            peerName="carol",
            request={
                "method": "enableConsumer",
                "target": "peer",
                "id": carol_consumer["id"],
                "transportId": carol_transport_id,
            },
        )
        consumer = new_consumers[0]
        assert (consumer["kind"], consumer["peerName"], consumer["appData"]) == (
            "video",
            "alice",
            {"source": "camera"},
        )
        consumer_id = consumer["id"]
        assert 10_000_000 <= consumer_id <= 99_999_999
        consumer_ssrc = consumer["rtpParameters"]["encodings"][0]["ssrc"]
        consumer_pt = consumer["rtpParameters"]["codecs"][0]["payloadType"]
        assert (
            consumer_pt == vp8["preferredPayloadType"]
        )  # the room's payload type, not the sender's

        enabled = app.ok(
            "room.request",
            roomId=ROOM,
            peerName="bob",
            request={
                "method": "enableConsumer",
                "target": "peer",
                "id": consumer_id,
                "transportId": recv_transport_id,
                "paused": False,
            },
        )
        assert enabled["paused"] is False

        # --- media: 40 VP8 key-frame packets in, the same 40 out at bob's address ----------
        seq, ts = 1000, 5000

        def send_frames(count: int) -> list[int]:
            nonlocal seq, ts
            sent_seqs = []
            for _ in range(count):
                sender.sendto(vp8_key_frame_packet(seq, ts), tureen_send_addr)
                sent_seqs.append(seq)
                seq += 1
                ts += 3000
                time.sleep(0.01)
            return sent_seqs

        send_frames(40)
        rtp, _ = receive_rtp(receiver, 1.5)
        assert len(rtp) == 40, f"{len(rtp)} of 40 RTP packets reached the consumer's address"
        first = rtp[0]
        out_pt, out_seq = first[1] & 0x7F, struct.unpack("!H", first[2:4])[0]
        assert out_pt == consumer_pt
        assert struct.unpack("!I", first[8:12])[0] == consumer_ssrc
        out_seqs = [struct.unpack("!H", p[2:4])[0] for p in rtp]
        assert out_seqs == [(out_seq + i) & 0xFFFF for i in range(40)]
        assert all(p[12:] == vp8_key_frame_packet(0, 0)[12:] for p in rtp)  # payload untouched
        # Caused by media, not by a request: "the first one, `default`, when media starts".
        effective = app.next_event(
            lambda e: (
                e["event"] == "notification"
                and e["peerName"] == "bob"
                and e["notification"]["method"] == "consumerEffectiveProfileChanged"
            )
        )
        assert (
            effective["peerName"],
            effective["notification"]["id"],
            effective["notification"]["profile"],
        ) == ("bob", consumer_id, "default")

        # --- pause and resume: consumerPaused before the reply, nothing while paused -------
        start = len(app.log)
        pause_id = app.send(
            "room.notify",
            roomId=ROOM,
            peerName="alice",
            notification={
                "method": "pauseProducer",
                "target": "peer",
                "notification": True,
                "id": producer_id,
            },
        )
        assert app.wait_reply(pause_id) == {"id": pause_id, "ok": True, "data": None}
        paused = notifications(app.events_between(start, app.index_of_reply(pause_id)), "bob")
        assert paused == [
            {
                "method": "consumerPaused",
                "target": "peer",
                "notification": True,
                "id": consumer_id,
                "peerName": "alice",
            }
        ]
        send_frames(10)
        rtp_paused, _ = receive_rtp(receiver, 0.5)
        assert rtp_paused == []

        start = len(app.log)
        resume_id = app.send(
            "room.notify",
            roomId=ROOM,
            peerName="alice",
            notification={
                "method": "resumeProducer",
                "target": "peer",
                "notification": True,
                "id": producer_id,
            },
        )
        assert app.wait_reply(resume_id)["ok"]
        resumed = notifications(app.events_between(start, app.index_of_reply(resume_id)), "bob")
        assert [n["method"] for n in resumed] == ["consumerResumed"]
        send_frames(10)
        rtp_resumed, _ = receive_rtp(receiver, 1.5)
        assert len(rtp_resumed) == 10
        # RTCP on the same port both ways: the consumer's address got sender reports (PT 200)
        # about the consumer's SSRC, the comedia sender got Tureen's RTCP (receiver reports,
        # REMB) from the very port it sends to.
        send_frames(5)
        rtcp_out = [d for d in receive_rtp(receiver, 2.5)[1] if d[1] == 200]
        assert rtcp_out and struct.unpack("!I", rtcp_out[0][4:8])[0] == consumer_ssrc
        sender.settimeout(2.0)
        data, source = sender.recvfrom(2048)
        assert is_rtcp(data) and source == tureen_send_addr
        # A gap in the sender's numbering: Tureen NACKs it (RTPFB, PT 205) within a second,
        # and every compound RTCP packet it sends carries an SDES CNAME (PT 202), the
        # consumer's SRs included (issue 11 items 2 and 3, seen by a plain client).
        seq += 1  # this number is never sent
        send_frames(3)
        to_sender: list[bytes] = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not any(205 in rtcp_types(d) for d in to_sender):
            to_sender += receive_rtp(sender, 0.2)[1]
        assert any(205 in rtcp_types(d) for d in to_sender), [rtcp_types(d) for d in to_sender]
        assert all(202 in rtcp_types(d) for d in to_sender + rtcp_out), [
            rtcp_types(d) for d in to_sender
        ]

        # carol's comedia transport got nothing so far; one RTCP receiver report from her
        # socket latches it, and her consumer's packets come there from then on.
        assert receive_rtp(carol_sock, 0.3) == ([], [])
        carol_sock.sendto(
            struct.pack("!BBHI", 0x80, 201, 1, 0xCA201), (carol_plain["ip"], carol_plain["port"])
        )
        carol_rtp: list[bytes] = []
        for _ in range(10):  # bounded: until her first packets arrive
            send_frames(5)
            carol_rtp += receive_rtp(carol_sock, 0.3)[0]
            if carol_rtp:
                break
        assert carol_rtp, "the comedia recv transport never sent after the receiver's datagram"
        assert (
            struct.unpack("!I", carol_rtp[0][8:12])[0]
            == carol_consumer["rtpParameters"]["encodings"][0]["ssrc"]
        )
        receive_rtp(receiver, 0.5)  # bob got those frames too: not counted further
        # media-quality.md: "resume: the next packet it gets is one after the last it got".
        assert struct.unpack("!H", rtp_resumed[0][2:4])[0] == (out_seqs[-1] + 1) & 0xFFFF

        # --- documented errors: each changes nothing -----------------------------------------
        duplicate = app.error("room.request", roomId=ROOM, request=join_alice)
        assert duplicate["code"] == "duplicate" and duplicate["message"]
        missing = app.error(
            "room.request",
            roomId=ROOM,
            peerName="alice",
            request={
                "method": "createProducer",
                "target": "peer",
                "id": 44444445,
                "kind": "audio",
                "transportId": 99999999,
                "rtpParameters": {
                    "codecs": [
                        {
                            "name": "opus",
                            "mimeType": "audio/opus",
                            "clockRate": 48000,
                            "payloadType": 111,
                            "channels": 2,
                        }
                    ],
                    "encodings": [{"ssrc": 5555}],
                },
            },
        )
        assert missing["code"] == "not_found"
        unknown_room = app.error("room.dump", roomId="no-such-room")
        assert unknown_room["code"] == "not_found"
        wrong_class = app.error(
            "room.notify",
            roomId=ROOM,
            peerName="alice",
            notification={"method": "queryRoom", "target": "room"},
        )
        assert wrong_class["code"] == "bad_request"
        bad_id = app.sock.send(orjson.dumps({"id": 1.5, "method": "server.ping"}))
        del bad_id
        reply_null = app.wait_reply(None)
        assert reply_null["ok"] is False and reply_null["error"]["code"] == "bad_request"
        dump = app.ok("room.dump", roomId=ROOM)
        assert sorted(p["name"] for p in dump["peers"]) == ["alice", "bob", "carol"]

        # --- alice leaves: bob hears of it before the (null) reply -------------------------
        start = len(app.log)
        leave_id = app.send(
            "room.notify",
            roomId=ROOM,
            peerName="alice",
            notification={
                "method": "leave",
                "target": "peer",
                "notification": True,
                "appData": {"why": "done"},
            },
        )
        assert app.wait_reply(leave_id)["data"] is None
        left = app.events_between(start, app.index_of_reply(leave_id))
        bob_heard = notifications(left, "bob")
        # Only peerClosed, as v2: the client closes that peer's consumers itself (no consumerClosed).
        assert bob_heard == [
            {
                "method": "peerClosed",
                "target": "peer",
                "notification": True,
                "name": "alice",
                "appData": {"why": "done"},
            }
        ]
        assert {"event": "peer.closed", "roomId": ROOM, "peerName": "alice"} in left
        send_frames(5)
        assert receive_rtp(receiver, 0.5)[0] == []

        # --- the room closes: bob gets `closed`, then the event room.closed, then the reply -
        start = len(app.log)
        close_id = app.send("room.close", roomId=ROOM)
        assert app.wait_reply(close_id) == {"id": close_id, "ok": True, "data": None}
        closing = app.events_between(start, app.index_of_reply(close_id))
        closed_index = closing.index(
            {
                "event": "notification",
                "roomId": ROOM,
                "peerName": "bob",
                "notification": {"method": "closed", "target": "peer", "notification": True},
            }
        )
        assert closing.index({"event": "room.closed", "roomId": ROOM}) > closed_index
        assert app.ok("room.list") == []

        # --- the subscribed connection saw the room's events in the same order ------------
        monitor.next_event(lambda e: e["event"] == "room.closed")
        app_events = [m for kind, _, m in app.log if kind == "event"]
        monitor_events = [m for kind, _, m in monitor.log if kind == "event"]
        assert monitor_events == app_events
    finally:
        for sock in (sender, receiver, carol_sock):
            sock.close()
        app.close()
        monitor.close()
        server.stop()
