"""The Prometheus endpoint of a real `tureen serve` while plain RTP flows: the state gauges
match the room, the workers' packet and byte counters move between two scrapes, and the
control request counter counts exactly what this test sent (issue 13)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import MEDIA_CODECS, free_tcp_port, running_server
from test_plain_session import Session
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape_until(url: str, check, timeout: float = 15.0) -> Samples:
    """Scrape until `check(samples)` holds: worker figures come from reports every 2 s."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await asyncio.to_thread(scrape, url)
        if check(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.3)


async def session_with_metrics(endpoint: str, url: str) -> None:
    async with TureenClient(endpoint) as client:
        await client.create_room(MEDIA_CODECS, room_id="metrics")
        session = Session(client, "metrics")
        try:
            await session.setup()  # 7 room.request: queryRoom, 2 join, 2 createTransport, ...
            session.send(20)
            assert len(await session.receive(20)) == 20

            first = await scrape_until(url, lambda s: value(s, "tureen_worker_packets_out_total", worker="0") >= 20)
            assert value(first, "tureen_worker_packets_in_total", worker="0") >= 20
            assert value(first, "tureen_worker_packets_out_total", worker="0") >= 20
            assert value(first, "tureen_worker_bytes_in_total", worker="0") >= 20 * 172
            assert value(first, "tureen_worker_bytes_out_total", worker="0") >= 20 * 172
            assert value(first, "tureen_worker_up", worker="0") == 1
            assert value(first, "tureen_worker_resident_memory_bytes", worker="0") > 1_000_000
            assert value(first, "tureen_worker_cpu_seconds_total", worker="0") > 0
            assert ("tureen_worker_restarts_total", frozenset({("worker", "0")})) in first
            assert ("tureen_worker_drops_total", frozenset({("worker", "0"), ("reason", "unknown_ssrc")})) in first

            # The state gauges are the room's: two peers, two plain transports, one audio
            # producer and the consumer of it.
            assert value(first, "tureen_rooms") == 1 and value(first, "tureen_peers") == 2
            assert value(first, "tureen_transports", kind="plain", ice_state="none", dtls_state="none") == 2
            assert value(first, "tureen_producers", kind="audio") == 1
            assert value(first, "tureen_consumers", kind="audio") == 1
            assert value(first, "tureen_producers", kind="video") == 0

            # More media: the counters move between two scrapes.
            session.send(30)
            assert len(await session.receive(30)) == 30
            before = value(first, "tureen_worker_packets_out_total", worker="0")
            second = await scrape_until(
                url, lambda s: value(s, "tureen_worker_packets_out_total", worker="0") >= before + 30
            )
            for name in ("packets_in", "packets_out", "bytes_in", "bytes_out"):
                family = f"tureen_worker_{name}_total"
                assert value(second, family, worker="0") > value(first, family, worker="0"), family

            # Requests this test sent: counted by method and outcome, unknown methods bounded.
            with pytest.raises(ProtocolError):
                await client.request("no.such.method")
            with pytest.raises(ProtocolError):
                await client.request("room.dump", roomId="missing")
            third = await asyncio.to_thread(scrape, url)
            ok = {"outcome": "ok"}
            assert value(third, "tureen_control_requests_total", method="room.create", **ok) == 1
            assert value(third, "tureen_control_requests_total", method="room.request", **ok) == 7
            assert value(third, "tureen_control_requests_total", method="unknown", outcome="unknown_method") == 1
            assert value(third, "tureen_control_requests_total", method="room.dump", outcome="not_found") == 1
            assert value(third, "tureen_control_request_duration_seconds_count", method="room.request") == 7
            assert value(third, "tureen_control_request_duration_seconds_sum", method="room.request") > 0
            assert not any(labels and ("method", "no.such.method") in labels for _, labels in third)
        finally:
            session.close()
            await client.close_room("metrics")
    after = await asyncio.to_thread(scrape, url)
    assert value(after, "tureen_rooms") == 0 and value(after, "tureen_peers") == 0


def test_the_metrics_endpoint_follows_media_and_requests(tmp_path: Path) -> None:
    port = free_tcp_port()
    with running_server(tmp_path, workers=1, extra=["--metrics-listen", f"127.0.0.1:{port}"]) as server:
        asyncio.run(session_with_metrics(server.endpoint, f"http://127.0.0.1:{port}/metrics"))
    assert server.process.returncode == 0, server.log()


def test_a_taken_metrics_port_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError) as caught, running_server(
            tmp_path, workers=1, extra=["--metrics-listen", f"127.0.0.1:{port}"]
        ):
            pass
        assert f"metrics_listen 127.0.0.1:{port}: cannot listen there" in str(caught.value)


def test_a_killed_worker_counts_as_a_restart(tmp_path: Path) -> None:
    import os
    import signal

    port = free_tcp_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with running_server(tmp_path, workers=1, extra=["--metrics-listen", f"127.0.0.1:{port}"]) as server:
        assert value(scrape(url), "tureen_worker_restarts_total", worker="0") == 0
        old_pid = server.worker_pids[0]
        os.kill(old_pid, signal.SIGKILL)  # the test's own server's worker
        deadline = time.monotonic() + 20
        samples = scrape(url)
        while time.monotonic() < deadline:
            samples = scrape(url)
            if value(samples, "tureen_worker_restarts_total", worker="0") >= 1:
                break
            time.sleep(0.2)
        assert value(samples, "tureen_worker_restarts_total", worker="0") == 1, server.log()
        assert value(samples, "tureen_worker_up", worker="0") == 1
        server.worker_pids = [w["pid"] for w in server.info()["workers"]]
        assert server.worker_pids != [old_pid]
