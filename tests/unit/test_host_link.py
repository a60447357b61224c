"""The host link's messages, both ends, without a network (supervisor/hosts.py,
supervisor/host_agent.py): a bad message is refused or dropped whole, with a clear log, and
changes nothing; a register of workers already registered keeps their indexes; a host may
register only under its key's name."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq.asyncio
from tureen.shared.config import Config
from tureen.shared.contract import WorkerPing
from tureen.shared.curve import ClientKeys, generate_keys
from tureen.supervisor.host_agent import HostAgent, check_registered
from tureen.supervisor.hosts import HostListener, check_register
from tureen.supervisor.worker_pool import WorkerPool

pytestmark = pytest.mark.timeout(30)


def public_key(keys: Path, name: str) -> str:
    """The Z85 public key of `name`'s certificate: what the ZAP handler hands over as User-Id."""
    public, _ = zmq.auth.load_certificate(keys / f"{name}.key")
    return public.decode()


class Listener:
    """A HostListener whose sends are recorded (encoded as the real one does)."""

    def __init__(self, tmp: Path) -> None:
        async def on_death(index: int) -> None:
            return None

        self.hosts = tmp / "hosts"
        self.hosts.mkdir()
        for name in ("h1", "h2"):
            generate_keys(self.hosts, name)
        self.pool = WorkerPool(Config(), tmp, zmq.asyncio.Context.instance(), lambda i, e: None, on_death)
        self.listener = HostListener(self.pool, "tcp://127.0.0.1:1", str(tmp / "unused"), str(self.hosts))
        self.sent: list[tuple[bytes, dict[str, Any]]] = []
        self.listener._send = lambda identity, message: self.sent.append((identity, orjson.loads(orjson.dumps(message))))  # type: ignore[method-assign]

    def register(self, identity: bytes, workers: Any, name: Any = "h1", key: str | None = "h1") -> dict[str, Any]:
        message = {"type": "register", "name": name, "workers": workers}
        self.listener._handle(identity, message, public_key(self.hosts, key) if key else None)
        return self.sent[-1][1]

    def state(self) -> Any:
        return (sorted(self.pool.links), {n: sorted(s.links) for n, s in self.listener.current().items()})


@pytest.fixture
async def link(tmp_path: Path) -> AsyncIterator[Listener]:
    listener = Listener(tmp_path)
    yield listener
    await listener.pool.stop()


@pytest.mark.parametrize(
    ("workers", "words"),
    [
        ([{"local": 0, "pid": 10}, "not an object"], "workers[1] is not an object"),
        ([{"local": 0}, {"local": 1}, 7], "workers[2] is not an object"),
        ([{"local": 0}, {"local": True}], "workers[1].local must be an integer"),
        ([{"local": 0}, {"local": -1}], "workers[1].local"),
        ([{"local": 0, "pid": "10"}], "workers[0].pid"),
        ([{"local": 0, "cpu": 1.5}], "workers[0].cpu"),
        ([{"local": 0}, {"local": 0}], "twice"),
        ([], "1..1024 workers"),
        ({"local": 0}, "1..1024 workers"),
    ],
)
async def test_a_bad_register_is_refused_whole(link: Listener, workers: Any, words: str, caplog: Any) -> None:
    before = link.state()
    with caplog.at_level(logging.WARNING, "tureen.hosts"):
        reply = link.register(b"a", workers)
    assert reply["type"] == "refused" and words in reply["reason"], reply
    assert link.state() == before == ([], {})  # not one worker added
    assert words in caplog.text


async def test_a_register_of_registered_workers_keeps_their_indexes(link: Listener) -> None:
    first = link.register(b"a", [{"local": 0, "pid": 10}, {"local": 1, "pid": 11}])
    assert first == {"type": "registered", "indexes": {"0": 0, "1": 1}}
    links = dict(link.pool.links)
    # The same workers again (the host re-sends, e.g. its `registered` was lost): nothing churns.
    again = link.register(b"a", [{"local": 0, "pid": 10}, {"local": 1, "pid": 11}])
    assert again == first
    assert link.pool.links == links and all(w.alive for w in links.values())
    # A worker the host restarted (a new pid) is a new worker; the other keeps its index.
    third = link.register(b"a", [{"local": 1, "pid": 12}])
    assert third == {"type": "registered", "indexes": {"1": 2}}
    assert not links[1].alive and links[0].alive
    assert sorted(i for i, w in link.pool.links.items() if w.alive) == [0, 2]


async def test_a_host_registers_only_under_its_keys_name(link: Listener) -> None:
    link.register(b"a", [{"local": 0, "pid": 10}])
    # h2's key cannot take over h1's session (which a register of "h1" from a new link does).
    reply = link.register(b"b", [{"local": 0, "pid": 99}], name="h1", key="h2")
    assert reply["type"] == "refused"
    assert "may register as 'h2', not 'h1'" in reply["reason"] and "h1.key" in reply["reason"]
    assert link.listener.current()["h1"].identity == b"a" and link.pool.links[0].alive
    assert sorted(link.pool.links) == [0]
    # No key known (not through CURVE): refused too.
    assert link.register(b"c", [{"local": 0}], name="h2", key=None)["type"] == "refused"
    # The supervisor's own host name is not for a remote host.
    (link.hosts / "local.key").write_bytes((link.hosts / "h2.key").read_bytes())
    reply = link.register(b"d", [{"local": 0}], name="local", key="h2")
    assert reply["type"] == "refused" and "the supervisor's own host name" in reply["reason"]
    assert link.register(b"e", [{"local": 0}], name="h2", key="h2")["type"] == "registered"


async def test_bad_worker_messages_are_dropped(link: Listener, caplog: Any) -> None:
    link.register(b"a", [{"local": 0, "pid": 10}])
    remote = link.pool.links[0]
    request = asyncio.ensure_future(remote.request(WorkerPing(), timeout=5))
    await asyncio.sleep(0.05)
    sent = next(m for _, m in link.sent if m.get("type") == "request" and m["command"]["method"] == "worker.ping")
    with caplog.at_level(logging.WARNING, "tureen.hosts"):
        for bad in (
            {"type": "reply", "worker": [0], "message": {"id": sent["id"], "ok": True}},
            {"type": "reply", "worker": True, "message": {"id": sent["id"], "ok": True}},
            {"type": "reply", "worker": 5, "message": {"id": sent["id"], "ok": True}},
            {"type": "reply", "worker": 0, "message": [sent["id"]]},
            {"type": "exited", "worker": "0"},
        ):
            link.listener._handle(b"a", bad, None)
    assert not request.done() and remote.alive
    assert "has not registered" in caplog.text and "without a message object" in caplog.text
    link.listener._handle(b"a", {"type": "reply", "worker": 0, "message": {"id": sent["id"], "ok": True, "data": 1}}, None)
    assert await request == 1


# -- the host's end ---------------------------------------------------------------------------


def test_check_registered_takes_only_a_whole_right_message() -> None:
    assert check_registered({"indexes": {"0": 4, "1": 5}}) == {0: 4, 1: 5}
    for bad, words in (
        ({}, "must be an object"),
        ({"indexes": [4]}, "must be an object"),
        ({"indexes": {"0": 4, "x": 5}}, "'x' is not a decimal"),
        ({"indexes": {"0": "4"}}, "must be an integer"),
        ({"indexes": {"0": True}}, "must be an integer"),
        ({"indexes": {"0": -1}}, "must be an integer"),
        ({"indexes": {"0": 4, "1": 4}}, "same index"),
    ):
        with pytest.raises(ValueError, match=words):
            check_registered(bad)


async def test_the_host_drops_a_bad_registered_and_stays_unregistered(tmp_path: Path, caplog: Any) -> None:
    agent = HostAgent(Config(run_dir=str(tmp_path / "run")), "tcp://127.0.0.1:1", "h1", 1, ClientKeys(b"0" * 40, b"0" * 40, b"0" * 40))
    try:
        with caplog.at_level(logging.WARNING, "tureen.host"):
            for bad in ({"type": "registered", "indexes": [3]}, {"type": "registered", "indexes": {"0": 3, "1": "x"}}):
                agent._on_message(bad)
        assert not agent._registered.is_set() and agent.local_of == {}
        assert "dropped a bad 'registered'" in caplog.text
        agent._on_message({"type": "registered", "indexes": {"0": 3}})
        assert agent._registered.is_set() and agent.local_of == {3: 0}
    finally:
        agent._run_dir.release()
        agent._ctx.destroy(linger=0)


def test_check_register_accepts_what_the_host_sends() -> None:
    assert check_register({"name": "h1", "workers": [{"local": 0, "pid": 5, "cpu": None}]}) == ("h1", [(0, 5, None)])
