"""The namespace fixture of tests/netns.py: hosts reach each other over the bridge, a cut
link stops that, and nothing is left behind."""

from __future__ import annotations

import subprocess
import sys

import pytest
from netns import SUBNET, netns_unavailable, network

pytestmark = pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable()))

# One UDP datagram from the sender's namespace to the receiver's address; the receiver prints it.
RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5004)); s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    print(s.recv(100).decode(), flush=True)
except TimeoutError:
    print("timeout", flush=True)
"""
# A cut link makes the send fail at once (network unreachable) or the datagram vanish: both
# count as "not delivered", which the receiver's timeout shows.
SEND = """
import contextlib, socket, sys
with contextlib.suppress(OSError):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'hello', (sys.argv[1], 5004))
"""


def namespaces(tag: str) -> set[str]:
    """The namespaces of the network tagged `tag`: only this test's, where another test on
    another xdist worker may be making its own at the same moment (comparing every namespace
    before and after counted theirs)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {name for line in out.splitlines() if line.strip() and (name := line.split()[0]).startswith(f"{tag}-")}


def exchange(net, sender: str, receiver: str, wait: float) -> str:  # type: ignore[no-untyped-def]
    target = net.hosts[receiver]
    listener = target.popen([sys.executable, "-c", RECEIVE, target.address, str(wait)], stdout=subprocess.PIPE, text=True)
    assert listener.stdout is not None
    assert listener.stdout.readline().strip() == "ready"
    sent = net.hosts[sender].run([sys.executable, "-c", SEND, target.address])
    assert sent.returncode == 0, sent.stderr
    out, _ = listener.communicate(timeout=wait + 10)
    return out.strip()


def test_hosts_reach_each_other_until_the_link_is_cut() -> None:
    with network("a", "b") as net:
        a, b = net.hosts["a"], net.hosts["b"]
        assert {a.address, b.address} <= {str(x) for x in SUBNET.hosts()}
        assert a.address != b.address
        assert exchange(net, "a", "b", wait=5.0) == "hello"
        # The addresses exist only inside the namespaces, never in the runner's.
        mine = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=10).stdout
        assert a.address not in mine and b.address not in mine
        a.link(up=False)
        assert exchange(net, "a", "b", wait=1.0) == "timeout"
        a.link(up=True)
        assert len(namespaces(net.tag)) == 3  # the bridge and the two hosts
    assert namespaces(net.tag) == set()


def test_cleanup_after_a_failure_kills_processes_too() -> None:
    process = None
    tag = ""
    with pytest.raises(RuntimeError, match="boom"), network("a") as net:
        tag = net.tag
        process = net.hosts["a"].popen([sys.executable, "-c", "import time; time.sleep(60)"])
        raise RuntimeError("boom")
    assert process is not None and process.poll() is not None
    assert tag and namespaces(tag) == set()
