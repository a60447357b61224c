"""Hosts on one machine for the tests: Linux network namespaces joined by a bridge.

`Network` creates one namespace holding a bridge and, per host, a namespace with a veth pair
whose far end is enslaved to that bridge. Addresses come from 198.51.100.0/24 (TEST-NET-2,
RFC 5737, documentation only) and exist only inside the namespaces, so no packet a test sends
to them can leave the machine or reach a real network. Processes run in a host with
`ip netns exec`. Everything (processes first, then namespaces, which takes their veth ends
with them) is removed on close, also when the test fails; names carry this process's pid so
parallel tests (xdist) and other runs never collide.

`netns_unavailable()` says why namespaces cannot work here (not root, no iproute2, a kernel
or container that refuses them), for a clear `pytest.skip`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# RFC 5737 TEST-NET-2 (documentation only). Not TEST-NET-1: some sandboxes (this one) number
# their own interfaces from 192.0.2.0/24.
SUBNET = ipaddress.ip_network("198.51.100.0/24")
PREFIX = SUBNET.prefixlen
_serial = itertools.count()


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can (probed for real:
    root alone is not enough in some containers)."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed; scripts/install-test-deps.sh installs it"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs the tests as root)"
    name = f"tureen-probe-{os.getpid()}-{next(_serial)}"
    try:
        probe = _ip("netns", "add", name, check=False)
        if probe.returncode != 0:
            return f"`ip netns add` fails here: {probe.stderr.strip()}"
        veth = _ip("link", "add", "tp0", "type", "veth", "peer", "name", "tp1", netns=name, check=False)
        if veth.returncode != 0:
            return f"veth pairs cannot be created here: {veth.stderr.strip()}"
        return None
    finally:
        _ip("netns", "del", name, check=False)


@dataclass
class Host:
    """One namespace with one address on the shared bridge."""

    name: str
    netns: str
    address: str
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def command(self, args: list[str]) -> list[str]:
        """`args` wrapped to run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `args` in this host; the process is killed when the network closes."""
        process = subprocess.Popen(self.command(args), **kwargs)
        self.processes.append(process)
        return process

    def run(self, args: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run `args` in this host to completion (bounded), output captured as text."""
        return subprocess.run(self.command(args), capture_output=True, text=True, timeout=timeout)

    def link(self, up: bool) -> None:
        """Cut (or restore) this host's only link to the others: its veth end goes down."""
        _ip("link", "set", "eth0", "up" if up else "down", netns=self.netns)


class Network:
    """A bridge namespace and hosts attached to it; use as a context manager."""

    def __init__(self) -> None:
        self.tag = f"tureen{os.getpid()}x{next(_serial)}"
        self.bridge_ns = f"{self.tag}-br"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._addresses = (str(a) for a in SUBNET.hosts())

    def __enter__(self) -> Network:
        try:
            self._add_netns(self.bridge_ns)
            _ip("link", "add", "br0", "type", "bridge", netns=self.bridge_ns)
            _ip("link", "set", "br0", "up", netns=self.bridge_ns)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("link", "set", "lo", "up", netns=name)

    def add_host(self, name: str) -> Host:
        """A new namespace with eth0 on the bridge and the next free TEST-NET-2 address."""
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        netns = f"{self.tag}-{name}"
        address = next(self._addresses)
        index = len(self.hosts)
        self._add_netns(netns)
        # Created in the bridge namespace, the host's end then moves to its own namespace:
        # no interface ever appears in the test runner's namespace.
        far = f"h{index}"
        _ip("link", "add", far, "type", "veth", "peer", "name", "eth0", "netns", netns, netns=self.bridge_ns)
        _ip("link", "set", far, "master", "br0", netns=self.bridge_ns)
        _ip("link", "set", far, "up", netns=self.bridge_ns)
        _ip("addr", "add", f"{address}/{PREFIX}", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        host = Host(name=name, netns=netns, address=address)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        """Stop (SIGTERM, then SIGKILL) every process started in a host, then delete every namespace (idempotent)."""
        for host in self.hosts.values():
            for process in host.processes:
                # SIGTERM first: a `tureen serve` or `tureen host` stops its workers then.
                for action in (process.terminate, process.kill):
                    if process.poll() is not None:
                        break
                    with contextlib.suppress(ProcessLookupError):
                        action()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=5)
            host.processes.clear()
        for name in reversed(self._namespaces):
            _ip("netns", "del", name, check=False)
        self._namespaces.clear()


@contextlib.contextmanager
def network(*names: str) -> Iterator[Network]:
    """A network with hosts `names`, removed at the end."""
    with Network() as net:
        for name in names:
            net.add_host(name)
        yield net
