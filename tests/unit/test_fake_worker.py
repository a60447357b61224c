"""The fake worker (fake_worker.py) holds to the real one: the same commands, answered alike.

Each check feeds the same commands to a FakeWorker and to a real `Worker` of
workers/worker.py in this process (tests/fuzz/in_process.py's InProcessWorker: its command
handlers behind the wire encoding, real sockets on 127.0.0.1, a real pipe hub), and compares
what comes back: success or the same error code; on success the same reply shape (keys,
list lengths, value types) and the same deterministic values; and afterwards the same tables
(transport, producer and consumer ids, each producer's pipes). Two runs: a script that gives
every contract command, and the refusals the fake claims to copy; and the commands a Room
sends through a whole call (a tee under the Room: every command to both).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fake_worker import FakeWorker, FakeWorkers
from fuzz import shapes
from fuzz.in_process import InProcessWorker
from memory_room import Call, MemoryRoom
from tureen.shared import contract as c
from tureen.shared.errors import ProtocolError
from tureen.workers.transport.pipe import PipeHub

pytestmark = pytest.mark.timeout(30)


class Twin:
    """A real worker and a fake one of the same index."""

    def __init__(self, index: int, run_dir: Path) -> None:
        loop = asyncio.get_running_loop()
        self.index = index
        self.real = InProcessWorker(loop, index)
        worker = self.real.worker
        worker._stopped = asyncio.Event()  # worker.close's stop() needs it (run() makes it)
        worker.pipes = PipeHub(
            loop, str(run_dir), index, worker.forwarder,
            lookup=worker.router.producers.get, on_discontinuity=worker.router.interrupt_producer,
        )  # fmt: skip
        self.fake = FakeWorker(index)

    async def both(self, command: c.Command) -> tuple[Any, Any]:
        """(real outcome, fake outcome): ("ok", data) or ("error", code, message)."""
        outcomes = []
        for run in (lambda: self.real.worker_request(self.index, command), lambda: _async(self.fake.request(command))):
            try:
                outcomes.append(("ok", await run()))
            except ProtocolError as exc:
                outcomes.append(("error", exc.code, exc.message))
        return outcomes[0], outcomes[1]

    def tables(self) -> tuple[Any, Any]:
        router = self.real.worker.router
        real = (
            sorted(router.transports), sorted(router.producers), sorted(router.consumers),
            {p.id: sorted(p.pipes) for p in router.producers.values()},
            {p.id: (sorted(p.legs), p.leg_in.leg_id if p.leg_in else None) for p in router.producers.values()},
        )  # fmt: skip
        fake = (
            sorted(self.fake.transports), sorted(self.fake.producers), sorted(self.fake.consumers),
            {p.id: sorted(p.pipes) for p in self.fake.producers.values()},
            {p.id: (sorted(p.legs), p.leg_in) for p in self.fake.producers.values()},
        )  # fmt: skip
        return real, fake

    def close(self) -> None:
        worker = self.real.worker
        for transport in list(worker.router.transports.values()):
            worker._drop_transport(transport)
        worker.pipes.close()
        worker.legs.close()


async def _async(value: Any) -> Any:
    return value


def shape(value: Any) -> Any:
    """Keys, list lengths and value types: what a reply's reader relies on."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    return "number" if isinstance(value, int | float) else type(value).__name__


# Replies whose values, not just shape, both must give: every key path listed here (lists of
# figures, such as stats.get's producers, are compared by shape: counters differ).
DETERMINISTIC = ("dtlsParameters.role", "iceParameters.iceLite", "producers", "missing", "index")


def values_at(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def agree(real: Any, fake: Any, what: str) -> None:
    assert real[0] == fake[0], f"{what}: real {real} but fake {fake}"
    if real[0] == "error":
        assert real[1] == fake[1], f"{what}: real {real[1]} ({real[2]}) but fake {fake[1]} ({fake[2]})"
        return
    real_data, fake_data = real[1], fake[1]
    if isinstance(real_data, dict) and "fingerprints" in str(real_data.get("dtlsParameters")):
        algorithms = [f["algorithm"] for f in real_data["dtlsParameters"]["fingerprints"]]
        assert algorithms == [f["algorithm"] for f in fake_data["dtlsParameters"]["fingerprints"]], what
    if isinstance(real_data, dict) and "counters" in real_data:  # worker.info / worker.dump: the keys
        assert set(real_data) >= set(fake_data) and set(real_data["counters"]) == set(fake_data["counters"]), what
        return
    assert shape(real_data) == shape(fake_data), f"{what}: reply shapes differ\nreal {real_data}\nfake {fake_data}"
    for path in DETERMINISTIC:
        value = values_at(real_data, path)
        if isinstance(value, list) and any(isinstance(x, dict) for x in value):
            continue
        assert values_at(real_data, path) == values_at(fake_data, path), f"{what}: {path} differs"


@pytest.fixture
async def twins(tmp_path: Path) -> AsyncIterator[dict[int, Twin]]:
    pair = {i: Twin(i, tmp_path) for i in (0, 1)}
    yield pair
    for twin in pair.values():
        twin.close()


def test_the_fake_answers_exactly_the_contract_commands() -> None:
    assert set(FakeWorker(0).handlers) == set(c.COMMANDS.values())


KEY = "5a" * c.LEG_KEY_BYTES


def script() -> list[tuple[int, c.Command]]:
    """Every contract command, and each refusal of the real worker that the fake copies."""
    dtls = shapes.DTLS_PARAMETERS
    vp8 = [c.CodecSpec(payloadType=101, mimeType="video/VP8", clockRate=90000, rtxPayloadType=102)]

    def producer(pid: int, tid: int | None, ssrc: int, kind: Any = "video", **extra: Any) -> c.ProducerCreate:
        pts = [(96, 101)] if tid is not None else []
        return c.ProducerCreate(
            producerId=pid, kind=kind, transportId=tid, streams=[c.StreamSpec(ssrc=ssrc, rtxSsrc=ssrc + 1)],
            payloadTypes=pts, codecs=vp8, **extra,
        )  # fmt: skip

    def update(pid: int, tid: int | None, ssrc: int, kind: Any = "video", paused: bool | None = None) -> c.ProducerUpdate:
        return c.ProducerUpdate(
            producerId=pid, kind=kind, transportId=tid, streams=[c.StreamSpec(ssrc=ssrc)],
            payloadTypes=[(96, 101)], codecs=vp8, paused=paused,
        )  # fmt: skip

    def consumer(cid: int, pid: int, tid: int, ssrc: int, kind: Any = "video") -> c.ConsumerCreate:
        return c.ConsumerCreate(consumerId=cid, producerId=pid, transportId=tid, kind=kind, ssrc=ssrc, rtxSsrc=ssrc + 1)

    return [
        (0, c.WorkerPing()),
        (0, c.WorkerInfo()),
        (0, c.WorkerSetLogLevel(level="info", logger="tureen.unit.fakecheck")),
        (0, c.WorkerSetLogLevel(level="info", logger="a..b")),  # refused by the level check
        # transports
        (0, c.TransportCreateWebRtc(transportId=1, tcp=False)),
        (0, c.TransportCreateWebRtc(transportId=1)),  # duplicate
        (0, c.TransportCreateWebRtc(transportId=2, dtlsParameters=dtls)),
        (0, c.TransportCreateWebRtc(transportId=3, dtlsParameters={"role": "x", "fingerprints": dtls["fingerprints"]})),
        (0, c.TransportCreateWebRtc(transportId=3, dtlsParameters={"fingerprints": [{"algorithm": "md5", "value": "0"}]})),
        (0, c.TransportCreateWebRtc(transportId=3, dtlsParameters={"fingerprints": "x"})),
        (0, c.TransportCreateWebRtc(transportId=3, dtlsParameters={"fingerprints": [5]})),
        (0, c.TransportCreateWebRtc(transportId=3, dtlsParameters={"fingerprints": [{"algorithm": 1}]})),
        (0, c.TransportSetRemoteDtls(transportId=1, dtlsParameters={"role": "server", "fingerprints": dtls["fingerprints"]})),
        (0, c.TransportSetRemoteDtls(transportId=1, dtlsParameters=dtls)),  # twice: invalid_state
        (0, c.TransportSetRemoteDtls(transportId=99, dtlsParameters=dtls)),
        (0, c.TransportRestartIce(transportId=1)),
        (0, c.TransportRestartIce(transportId=99)),
        (0, c.TransportCreatePlain(transportId=4, remoteIp="127.0.0.1", remotePort=5004)),
        (0, c.TransportCreatePlain(transportId=5, comedia=True)),
        (0, c.TransportCreatePlain(transportId=4)),  # duplicate
        (0, c.TransportConnectPlain(transportId=5, remoteIp="127.0.0.1", remotePort=5006)),
        (0, c.TransportConnectPlain(transportId=1, remoteIp="127.0.0.1", remotePort=5006)),  # not plain
        (0, c.TransportConnectPlain(transportId=99, remoteIp="127.0.0.1", remotePort=5006)),
        (0, c.TransportSetRemoteDtls(transportId=4, dtlsParameters=dtls)),  # not webrtc
        (0, c.TransportRestartIce(transportId=4)),  # not webrtc
        (1, c.TransportCreateWebRtc(transportId=11, udp=True, tcp=False, preferUdp=True)),
        (1, c.TransportCreatePlain(transportId=12, remoteIp="127.0.0.1", remotePort=5008)),
        # producers
        (0, producer(20, 1, 1000)),
        (0, producer(20, 1, 2000)),  # duplicate id
        (0, producer(21, 99, 2000)),  # no transport
        (0, producer(21, 1, 1000)),  # SSRC received there already
        (0, producer(21, 1, 999)),  # its RTX SSRC (1000) is
        (0, producer(21, 4, 1000)),  # another transport: fine
        (0, producer(22, 1, 3000, paused=True)),
        (0, update(20, 1, 1000, paused=True)),  # own SSRC kept
        (0, update(20, 1, 3000)),  # producer 22's
        (0, update(20, 1, 1000, kind="audio")),
        (0, update(20, 4, 1000)),  # transport cannot change
        (0, update(99, 1, 1000)),
        (0, c.ProducerPause(producerId=21)),
        (0, c.ProducerResume(producerId=20)),
        (0, c.ProducerPause(producerId=99)),
        (0, c.ProducerResume(producerId=99)),
        (0, c.ProducerRequestKeyFrame(producerId=20, ssrc=1000)),
        (0, c.ProducerRequestKeyFrame(producerId=20, ssrc=5)),
        (0, c.ProducerRequestKeyFrame(producerId=99, ssrc=1000)),
        (0, c.ProducerNack(producerId=20, ssrc=1000, seqs=[1, 2, 3])),
        (0, c.ProducerNack(producerId=20, ssrc=7, seqs=[1])),
        # pipes and piped producers
        (0, c.PipeOpen(producerId=20, workerIndex=1)),
        (0, c.PipeOpen(producerId=20, workerIndex=1)),  # duplicate
        (0, c.PipeOpen(producerId=20, workerIndex=0)),  # itself
        (0, c.PipeOpen(producerId=99, workerIndex=1)),
        (0, c.PipeOpen(producerId=21, workerIndex=1)),
        (1, producer(20, None, 1000)),
        (1, c.ProducerRequestKeyFrame(producerId=20, ssrc=1000)),  # piped here
        (1, c.ProducerNack(producerId=20, ssrc=1000, seqs=[4])),
        (1, update(20, None, 1000)),
        (1, consumer(30, 20, 11, 7000)),
        (1, consumer(30, 20, 11, 7100)),  # duplicate id
        (1, consumer(31, 20, 11, 7000)),  # SSRC sent on that transport already
        (1, consumer(31, 20, 11, 6999)),  # its RTX SSRC (7000) is
        (1, consumer(31, 20, 11, 7200, kind="audio")),
        (1, consumer(31, 99, 11, 7200)),
        (1, consumer(31, 20, 99, 7200)),
        (1, consumer(31, 20, 12, 7200)),
        # consumers on worker 0
        (0, consumer(32, 20, 2, 8000)),
        (0, consumer(33, 22, 2, 8100)),
        (0, c.ConsumerPause(consumerId=32)),
        (0, c.ConsumerPause(consumerId=32)),
        (0, c.ConsumerResume(consumerId=32)),
        (0, c.ConsumerResume(consumerId=99)),
        (0, c.ConsumerPause(consumerId=99)),
        (0, c.ConsumerSetPreferredProfile(consumerId=32, profile="high")),
        (0, c.ConsumerSetPreferredProfile(consumerId=99, profile="low")),
        (0, c.StatsGet(transportIds=[4, 1, 99], producerIds=[20], consumerIds=[32, 98])),
        (0, c.ProducerGetAudioLevels(producerIds=[20, 99])),
        (0, c.TransportSetMaxBitrate(transportId=1, bitrate=300_000)),
        (0, c.TransportSetMaxBitrate(transportId=1, bitrate=0)),
        (0, c.TransportSetMaxBitrate(transportId=99, bitrate=1)),
        (0, c.ConsumerRequestKeyFrame(consumerId=32)),
        (0, c.ConsumerRequestKeyFrame(consumerId=99)),
        (1, c.ConsumerRequestKeyFrame(consumerId=30)),  # piped: an event, not a PLI
        (1, c.StatsGet(transportIds=[11, 12], producerIds=[20], consumerIds=[30, 31])),
        # host legs: worker 0 the origin of producer 20, worker 1 the gateway of its copy
        (0, c.LegAddress()),
        (1, c.LegReceive(legId=7, producerId=20, key=KEY, ip="127.0.0.1", port=40001)),
        (1, c.LegReceive(legId=7, producerId=20, key=KEY, ip="127.0.0.1", port=40001)),  # duplicate leg
        (1, c.LegReceive(legId=8, producerId=20, key=KEY, ip="127.0.0.1", port=40001)),  # fed already
        (1, c.LegReceive(legId=8, producerId=99, key=KEY, ip="127.0.0.1", port=40001)),
        (0, c.LegReceive(legId=8, producerId=20, key=KEY, ip="127.0.0.1", port=40001)),  # not piped there
        (0, c.LegSend(legId=9, producerId=20, key=KEY, ip="127.0.0.1", port=40002)),
        (1, c.LegSend(legId=10, producerId=20, key=KEY, ip="127.0.0.1", port=40002)),  # piped there
        (1, c.ProducerInterrupt(producerId=20)),
        (0, c.ProducerInterrupt(producerId=20)),  # received there
        (1, c.ProducerInterrupt(producerId=99)),
        (0, c.LegClose(legId=9)),
        (0, c.LegClose(legId=9)),
        (0, c.LegSend(legId=9, producerId=20, key=KEY, ip="127.0.0.1", port=40002)),  # closed with the producer
        (0, c.WorkerDump()),
        (0, c.ConsumerClose(consumerId=33)),
        (0, c.ConsumerClose(consumerId=33)),
        (0, c.PipeClose(producerId=21, workerIndex=1)),
        (0, c.PipeClose(producerId=21, workerIndex=1)),  # not piped any more
        (0, c.PipeClose(producerId=99, workerIndex=1)),
        (0, c.PipeCloseTo(workerIndex=1)),
        (0, c.PipeCloseTo(workerIndex=1)),  # none left
        (0, c.PipeOpen(producerId=20, workerIndex=1)),
        (0, c.ProducerClose(producerId=22)),  # and its consumer 33 (gone already)
        (0, c.ProducerClose(producerId=22)),
        (1, c.ProducerClose(producerId=20)),  # the piped copy, and consumer 30 with it
        (0, c.TransportClose(transportId=1)),  # producer 20 (its pipe) and 21's transport is 4
        (0, c.TransportClose(transportId=1)),
        (0, c.TransportClose(transportId=4)),
        (0, c.WorkerInfo()),
        (0, c.WorkerClose()),
    ]


async def test_the_fake_and_the_real_worker_agree_command_by_command(twins: dict[int, Twin]) -> None:
    steps = script()
    assert {type(cmd) for _, cmd in steps} == set(c.COMMANDS.values()), "the script misses a command"
    refusals = 0
    for n, (index, command) in enumerate(steps):
        twin = twins[index]
        real, fake = await twin.both(command)
        what = f"step {n}: worker {index} {command!r:.160}"
        agree(real, fake, what)
        refusals += real[0] == "error"
        real_tables, fake_tables = twin.tables()
        assert real_tables == fake_tables, f"{what}: tables differ"
    assert refusals >= 40


async def test_a_transport_the_worker_fails_is_reported_alike(twins: dict[int, Twin]) -> None:
    twin = twins[0]
    for command in (
        c.TransportCreateWebRtc(transportId=1, tcp=False),
        c.ProducerCreate(producerId=2, kind="audio", transportId=1, streams=[c.StreamSpec(ssrc=5)], payloadTypes=[(111, 100)]),
    ):
        agree(*await twin.both(command), repr(command))
    worker = twin.real.worker
    worker.transport_failed(worker.router.transports[1], "ICE consent lost")
    real_event = c.decode_event(worker.channel.last)  # type: ignore[attr-defined]
    assert twin.fake.fail_transport(1, "ICE consent lost") == real_event
    real_tables, fake_tables = twin.tables()
    assert real_tables == fake_tables == ([], [], [], {}, {})


class Tee(FakeWorkers):
    """FakeWorkers whose every command also goes to the real twin, compared as it goes."""

    def __init__(self, twins: dict[int, Twin]) -> None:
        super().__init__(len(twins))
        self.twins = twins
        self.workers = {i: twin.fake for i, twin in twins.items()}
        self.compared = 0

    async def worker_request(self, index: int, command: c.Command) -> Any:
        self.commands.append((index, command))
        twin = self.twins[index]
        real, fake = await twin.both(command)
        agree(real, fake, f"worker {index} {command!r:.160}")
        real_tables, fake_tables = twin.tables()
        assert real_tables == fake_tables, f"{command!r:.160}: tables differ"
        self.compared += 1
        if fake[0] == "error":
            raise ProtocolError(fake[1], fake[2])
        return fake[1]


async def test_the_fake_and_the_real_worker_agree_on_what_a_room_sends(twins: dict[int, Twin]) -> None:
    tee = Tee(twins)
    mem = MemoryRoom(services=tee)
    call = await Call(mem).setup()
    tee.placement = 1
    recv = await mem.webrtc("carol", "recv", dtls=True)  # on worker 1: piped from worker 0
    await mem.request("carol", "enableConsumer", id=call.carol_cid, transportId=recv, paused=False, preferredProfile="low")
    for peer, method, data in (
        ("bob", "updateTransport", {"id": call.recv, "dtlsParameters": shapes.DTLS_PARAMETERS}),
        ("alice", "pauseProducer", {"id": call.pid}),
        ("alice", "resumeProducer", {"id": call.pid}),
        ("bob", "pauseConsumer", {"id": call.cid}),
        ("bob", "setConsumerPreferredProfile", {"id": call.cid, "profile": "high"}),
        ("alice", "restartTransport", {"id": call.send}),
    ):
        if method == "restartTransport":
            await mem.request(peer, method, **data)
        else:
            await mem.notify(peer, method, **data)
    await mem.event(c.ConsumerKeyFrameRequest(consumerId=mem.worker_id("carol", "consumers", call.carol_cid),
                                              producerId=call.gid, ssrc=10_000 + 10 * call.pid))  # fmt: skip
    with pytest.raises(ProtocolError):  # refused alike by both: checked inside the tee
        await mem.notify("bob", "updateTransport", id=call.recv, dtlsParameters=shapes.DTLS_PARAMETERS)
    await mem.action("producer.close", peerName="alice", producerId=call.pid)
    await mem.notify("carol", "leave")
    await mem.close()
    assert tee.compared >= 20
    for twin in twins.values():
        real_tables, fake_tables = twin.tables()
        assert real_tables == fake_tables == ([], [], [], {}, {})
