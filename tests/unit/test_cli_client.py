"""Pure helpers of the operator's CLI (supervisor/cli_client.py)."""

from __future__ import annotations

from tureen.supervisor.cli_client import address, connectable, kbps


def test_a_wildcard_bind_address_is_reached_on_loopback() -> None:
    assert connectable("tcp://*:4477") == "tcp://127.0.0.1:4477"
    assert connectable("tcp://0.0.0.0:4477") == "tcp://127.0.0.1:4477"
    assert connectable("tcp://[::]:4477") == "tcp://[::1]:4477"
    assert connectable("tcp://10.0.0.5:4477") == "tcp://10.0.0.5:4477"
    assert connectable("ipc:///run/tureen/control.ipc") == "ipc:///run/tureen/control.ipc"


def test_tuples_and_bitrates_print_as_an_operator_reads_them() -> None:
    assert address(["192.0.2.1", 5000]) == "192.0.2.1:5000"
    assert address(["2001:db8::1", 5000, "tcp"]) == "[2001:db8::1]:5000/tcp"
    assert address({"ip": "127.0.0.1", "port": 9}) == "127.0.0.1:9"
    assert address(None) is None
    assert kbps(1_234_000) == "1234 kbit/s" and kbps(None) == "-"
