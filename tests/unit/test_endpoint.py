"""shared/endpoint.py: the one strict reading of ZeroMQ endpoints (issue 11, item 1)."""

from __future__ import annotations

import pytest
from tureen.shared.config import Config
from tureen.shared.endpoint import Endpoint, parse_endpoint


@pytest.mark.parametrize(
    ("endpoint", "parsed"),
    [
        ("tcp://127.0.0.1:4477", Endpoint("tcp", "127.0.0.1", 4477)),
        ("tcp://*:4477", Endpoint("tcp", "*", 4477)),
        ("tcp://127.0.0.1:*", Endpoint("tcp", "127.0.0.1", None)),
        ("tcp://[::1]:65535", Endpoint("tcp", "::1", 65535)),
        ("tcp://localhost:1", Endpoint("tcp", "localhost", 1)),
        ("tcp://eth0:4477", Endpoint("tcp", "eth0", 4477)),
        ("tcp://sfu-1.example.org:4477", Endpoint("tcp", "sfu-1.example.org", 4477)),
        ("ipc:///run/tureen/control.ipc", Endpoint("ipc", path="/run/tureen/control.ipc")),
        ("ipc://@tureen", Endpoint("ipc", path="@tureen")),
    ],
)
def test_good_endpoints_parse(endpoint: str, parsed: Endpoint) -> None:
    assert parse_endpoint(endpoint) == parsed
    Config(control_endpoint=endpoint).validate()


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("tcp://127.0.0.1:4477}", "port '4477}'"),  # libzmq would bind 4477
        ("tcp://127.0.0.1:0", "port '0'"),
        ("tcp://127.0.0.1:65536", "port '65536'"),
        ("tcp://127.0.0.1:-1", "port '-1'"),
        ("tcp://127.0.0.1", "needs HOST:PORT"),
        ("tcp://:4477", "needs HOST:PORT"),
        ("tcp://1.2.3:4477", "host '1.2.3'"),
        ("tcp://a b:4477", "white space"),
        ("tcp://host{:4477", "host 'host{'"),
        ("tcp://::1:4477", "brackets"),
        ("tcp://[1.2.3.4]:4477", "not an IPv6 address"),
        ("udp://127.0.0.1:4477", "tcp:// or ipc://"),
        ("inproc://control", "tcp:// or ipc://"),
        ("127.0.0.1:4477", "tcp:// or ipc://"),
        ("ipc://", "no path"),
        ("ipc:///" + "x" * 120, "shorter path"),
    ],
)
def test_malformed_control_endpoints_are_refused_naming_the_field(endpoint: str, says: str) -> None:
    with pytest.raises(ValueError, match="control_endpoint") as info:
        Config(control_endpoint=endpoint).validate()
    assert says in str(info.value)
    assert "tcp://HOST:PORT" in str(info.value) or "shorter" in str(info.value) or "[::1]" in str(info.value) \
        or "IPv6" in str(info.value)
