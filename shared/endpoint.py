"""ZeroMQ endpoints as Tureen reads them: one parser for checking and for classifying.

libzmq is lenient with what it binds: `tcp://127.0.0.1:4477}` binds port 4477, a typo in a
host name only fails when a client cannot connect. Tureen reads an endpoint once, strictly,
before anything binds (Config.validate), and the same reading decides whether it can be
reached from the network (curve.endpoint_is_local).

Accepted forms (docs/configuration.md, `control_endpoint`):

    tcp://HOST:PORT    HOST an IPv4 address, [IPv6 address], `*` (every interface),
                       `localhost`, or an interface / host name ([A-Za-z0-9._-]);
                       PORT 1..65535, or `*` (any free port)
    ipc://PATH         a file system path (at most 107 bytes: sockaddr_un), or @NAME
                       (Linux abstract socket)

Classifying also reads ws://HOST:PORT[/PATH] (the host as for tcp) and inproc://NAME, which
a control endpoint cannot use (inproc is in-process only; pyzmq wheels lack ws).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

SCHEMES = ("tcp", "ipc")  # what a control endpoint may use
ALL_SCHEMES = ("tcp", "ipc", "ws", "inproc")
# sun_path of Linux's sockaddr_un holds 108 bytes with the terminating NUL.
MAX_IPC_PATH = 107
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$")


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint: `host`/`port` for tcp and ws (port None for `*`), `path` for
    ipc and inproc."""

    scheme: str
    host: str = ""
    port: int | None = None
    path: str = ""

    @property
    def is_local(self) -> bool:
        """Whether binding it exposes nothing beyond this host: ipc:// and inproc://, or
        tcp:// and ws:// on a loopback address or `localhost`."""
        if self.scheme in ("ipc", "inproc"):
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_endpoint(endpoint: str, what: str = "endpoint", schemes: tuple[str, ...] = SCHEMES) -> Endpoint:
    """Read `endpoint` strictly; ValueError names `what` (e.g. the config field), the
    endpoint, what is wrong and the forms that work. `schemes`: the transports allowed."""
    forms = "use tcp://HOST:PORT (e.g. tcp://127.0.0.1:4477) or ipc:///PATH"
    if not isinstance(endpoint, str):
        raise ValueError(f"{what} must be a string, got {type(endpoint).__name__}: {forms}")
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{what} {endpoint!r}: the transport must be {allowed}; {forms}")
    if any(c.isspace() for c in endpoint):
        raise ValueError(f"{what} {endpoint!r} contains white space; {forms}")
    if scheme == "inproc":
        if not rest:
            raise ValueError(f"{what} {endpoint!r} has no name")
        return Endpoint("inproc", path=rest)
    if scheme == "ws":
        rest, _, path = rest.partition("/")
    if scheme == "ipc":
        if not rest:
            raise ValueError(f"{what} {endpoint!r} has no path; {forms}")
        if len(rest.encode()) > MAX_IPC_PATH:
            raise ValueError(
                f"{what} {endpoint!r}: the path is {len(rest.encode())} bytes, more than a unix "
                f"socket takes ({MAX_IPC_PATH}); choose a shorter path"
            )
        return Endpoint("ipc", path=rest)
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{what} {endpoint!r} needs HOST:PORT after tcp://; {forms}")
    if port_text == "*":
        port = None
    elif port_text.isdigit() and port_text.isascii() and 1 <= int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"{what} {endpoint!r}: port {port_text!r} must be a number 1..65535 or *; {forms}")
    if host.startswith("[") and host.endswith("]"):
        try:
            if ipaddress.ip_address(host[1:-1]).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"{what} {endpoint!r}: {host} is not an IPv6 address") from None
        return Endpoint(scheme, host=host[1:-1], port=port)
    if host == "*":
        return Endpoint(scheme, host=host, port=port)
    if ":" in host:
        raise ValueError(f"{what} {endpoint!r}: write an IPv6 address in brackets, e.g. tcp://[::1]:4477")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if host.replace(".", "").isdigit() or not _NAME.match(host):
            raise ValueError(
                f"{what} {endpoint!r}: host {host!r} is not an IPv4 address, [IPv6 address], *, "
                f"or an interface or host name; {forms}"
            ) from None
    return Endpoint(scheme, host=host, port=port)
