"""ICE-lite server of a WebRTC transport, sans-I/O.

The worker hands every STUN datagram of a transport to `IceLiteServer.handle_stun(data, addr,
now)` and sends back the returned bytes (if any) to `addr` on the same socket; it reacts to the
returned events (state changes, selected tuple). It calls `check_timeout(now)` at `get_timer()`
to expire consent. Nothing here opens a socket or touches a clock: `now` is any monotonic
seconds value the caller uses consistently.

What the server answers follows mediasoup 2.6.19 `RTC/IceServer.cpp`:
- a non-Binding request gets 400; a Binding request without FINGERPRINT, MESSAGE-INTEGRITY,
  USERNAME or PRIORITY gets 400; a USERNAME not starting with `<localUfrag>:` or a wrong
  MESSAGE-INTEGRITY gets 401 (error responses carry FINGERPRINT but no MESSAGE-INTEGRITY);
- a valid request gets a Binding success with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY keyed with
  the local password, and FINGERPRINT;
- indications and responses are ignored, and so is anything `aioice.stun` cannot parse:
  a bad FINGERPRINT (no transaction id can be trusted then) or a method aioice does not
  know (mediasoup would answer that one 400; no browser sends it).

Tuples (Chromium uses regular nomination, a check without USE-CANDIDATE then one
with it ~50 ms later, and checks from new ports after an ICE restart):
- a valid check from a new address stores it as a valid tuple; if none is selected it is
  selected at once ('connected', or 'completed' when it carries USE-CANDIDATE);
- USE-CANDIDATE selects its tuple ('completed'), also replacing an older selected tuple.

Consent (RFC 7675): browsers re-check the selected pair every ~5 s; a selected tuple without a
valid check for `CONSENT_TIMEOUT` seconds is dropped. Another fresh tuple then takes over,
otherwise the state becomes 'disconnected' until a new valid check arrives. mediasoup v2 has no
consent expiry; mediasoup v3 has the same 30 s rule.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from aioice import stun

logger = logging.getLogger(__name__)

# A remote transport address as the worker identifies it. For UDP this is (ip, port) as
# recvfrom() returns it; for an ICE-TCP connection it is (ip, port, 'tcp'), so a TCP and a
# UDP tuple from the same ip:port are different tuples. Only [0] (ip) and [1] (port) are
# read, for XOR-MAPPED-ADDRESS; the whole value is the tuple's identity.
Addr = tuple[Any, ...]

CONSENT_TIMEOUT = 30.0
# Tuples a browser can make valid at once are few (one per candidate pair it checks); the cap
# only bounds memory if an authenticated peer sprays checks from many ports.
MAX_TUPLES = 8

UFRAG_LENGTH = 16
PASSWORD_LENGTH = 32
# mediasoup draws from [a-z0-9]; any ice-char (RFC 8839: ALPHA / DIGIT / "+" / "/") is legal.
_ICE_CHARS = string.ascii_lowercase + string.digits

# Candidate priority (RFC 8445 section 5.1.2.1), as mediasoup 2.6.19 WebRtcTransport.cpp:
# type preference 64 (host), component 1 (rtcp-mux), local preference 20000 plus 10000 for
# the preferred family and 5000 for the preferred protocol.
_TYPE_PREFERENCE = 64
_COMPONENT = 1
_DEFAULT_LOCAL_PREFERENCE = 20000
_PREFER_FAMILY_INCREMENT = 10000
_PREFER_PROTOCOL_INCREMENT = 5000


@dataclass(frozen=True, slots=True)
class IceStateChanged:
    """The ICE state became `state`: 'connected', 'completed' or 'disconnected'."""

    state: str


@dataclass(frozen=True, slots=True)
class IceTupleSelected:
    """Media must now go to `addr` (None: no tuple left, the transport is disconnected)."""

    addr: Addr | None


IceEvent = IceStateChanged | IceTupleSelected


def _random_ice_string(length: int) -> str:
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


class IceLiteServer:
    """The ICE-lite, always-controlled side of one WebRTC transport.

    States: 'new' -> 'connected' (a valid check) / 'completed' (a nominated one) ->
    'disconnected' (consent lost) -> back to 'connected'/'completed' on a new valid check.
    """

    def __init__(self) -> None:
        self.usernameFragment = _random_ice_string(UFRAG_LENGTH)
        self.password = _random_ice_string(PASSWORD_LENGTH)
        self._key = self.password.encode()
        self.state = "new"
        self.selected_tuple: Addr | None = None
        # Valid tuples -> `now` of their last valid check (dicts keep insertion order).
        self._tuples: dict[Addr, float] = {}
        # The browser's ufrag as last seen in USERNAME: informative (logs, dumps) only.
        self.remote_usernameFragment: str | None = None

    # -- parameters ---------------------------------------------------------------------

    def ice_parameters(self) -> dict[str, Any]:
        """The `iceParameters` of createTransport / restartTransport responses."""
        return {
            "usernameFragment": self.usernameFragment,
            "password": self.password,
            "iceLite": True,
        }

    def restart(self) -> dict[str, Any]:
        """New credentials (restartTransport); checks with the old ones now get 401.

        Tuples stay valid, as in mediasoup v2: media keeps flowing on the old path until the
        browser nominates a pair checked with the new credentials (from new ports).
        """
        self.usernameFragment = _random_ice_string(UFRAG_LENGTH)
        self.password = _random_ice_string(PASSWORD_LENGTH)
        self._key = self.password.encode()
        return self.ice_parameters()

    # -- tuples -------------------------------------------------------------------------

    def is_valid_tuple(self, addr: Addr) -> bool:
        """Whether media (DTLS, SRTP) from `addr` is acceptable: it passed a valid check."""
        return addr in self._tuples

    @property
    def tuples(self) -> list[Addr]:
        """The valid tuples, oldest first."""
        return list(self._tuples)

    # -- STUN ---------------------------------------------------------------------------

    def handle_stun(
        self, data: bytes, addr: Addr, now: float
    ) -> tuple[bytes | None, list[IceEvent]]:
        """Process one STUN datagram from `addr`: (response to send back or None, events)."""
        try:
            msg = stun.parse_message(data)
        except Exception as exc:  # aioice raises ValueError, struct.error, UnicodeDecodeError
            logger.debug("ice %s: unparsable STUN from %s: %s", self.usernameFragment, addr, exc)
            return None, []

        is_request = msg.message_class == stun.Class.REQUEST
        if msg.message_method != stun.Method.BINDING:
            return (self._error(msg, 400, "Bad Request") if is_request else None), []
        if not is_request:
            # Indications, and responses (we never send requests: ICE-lite).
            return None, []
        attrs = msg.attributes
        if "FINGERPRINT" not in attrs:
            return self._error(msg, 400, "Bad Request"), []
        username = attrs.get("USERNAME")
        if "MESSAGE-INTEGRITY" not in attrs or not attrs.get("PRIORITY") or not username:
            return self._error(msg, 400, "Bad Request"), []
        local, sep, remote = username.partition(":")
        if local != self.usernameFragment or not sep or not remote:
            return self._error(msg, 401, "Unauthorized"), []
        if not msg.check_message_integrity(self._key):
            return self._error(msg, 401, "Unauthorized"), []

        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=msg.transaction_id,
        )
        try:
            response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
            response.add_message_integrity(self._key)
            out = bytes(response)
        except (TypeError, ValueError, IndexError) as exc:  # an addr we cannot encode
            logger.warning("ice %s: cannot answer %s: %s", self.usernameFragment, addr, exc)
            return None, []
        self.remote_usernameFragment = remote
        return out, self._handle_tuple(addr, "USE-CANDIDATE" in attrs, now)

    def _error(self, request: stun.Message, code: int, reason: str) -> bytes:
        response = stun.Message(
            message_method=request.message_method,
            message_class=stun.Class.ERROR,
            transaction_id=request.transaction_id,
            attributes={"ERROR-CODE": (code, reason)},
        )
        response.add_fingerprint()
        logger.debug(
            "ice %s: %s %s to a %s request",
            self.usernameFragment,
            code,
            reason,
            request.message_method.name,
        )
        return bytes(response)

    def _handle_tuple(self, addr: Addr, nominated: bool, now: float) -> list[IceEvent]:
        known = addr in self._tuples
        self._tuples[addr] = now
        if not known:
            self._cap_tuples()
        events: list[IceEvent] = []
        if self.selected_tuple is None:
            # 'new' or 'disconnected': the first valid check selects its tuple.
            self._select(addr, events)
            self._set_state("completed" if nominated else "connected", events)
        elif nominated:
            # A nominated pair wins, also over an older selected one (ICE restart, new ports).
            self._select(addr, events)
            self._set_state("completed", events)
        return events

    def _cap_tuples(self) -> None:
        while len(self._tuples) > MAX_TUPLES:
            stalest = min(
                (a for a in self._tuples if a != self.selected_tuple),
                key=self._tuples.__getitem__,
            )
            del self._tuples[stalest]

    def _select(self, addr: Addr | None, events: list[IceEvent]) -> None:
        if addr != self.selected_tuple:
            self.selected_tuple = addr
            events.append(IceTupleSelected(addr))

    def _set_state(self, state: str, events: list[IceEvent]) -> None:
        if state != self.state:
            logger.debug("ice %s: %s -> %s", self.usernameFragment, self.state, state)
            self.state = state
            events.append(IceStateChanged(state))

    def remove_tuple(self, addr: Addr) -> list[IceEvent]:
        """`addr` is gone (its TCP connection closed): forget it, as if its consent expired.

        If it was selected, the freshest remaining valid tuple takes over, else the state
        becomes 'disconnected'.
        """
        events: list[IceEvent] = []
        if self._tuples.pop(addr, None) is None:
            return events
        if addr == self.selected_tuple:
            self._reselect(events)
        return events

    def _reselect(self, events: list[IceEvent]) -> None:
        if self._tuples:
            # Another pair still has consent: the freshest one carries the media now.
            self._select(max(self._tuples, key=self._tuples.__getitem__), events)
        else:
            self._select(None, events)
            self._set_state("disconnected", events)

    # -- consent ------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When `check_timeout` has something to do (the selected tuple's consent expiry)."""
        if self.selected_tuple is None:
            return None
        return self._tuples[self.selected_tuple] + CONSENT_TIMEOUT

    def check_timeout(self, now: float) -> list[IceEvent]:
        """Drop tuples without a valid check for CONSENT_TIMEOUT seconds; report the result."""
        events: list[IceEvent] = []
        stale = [a for a, seen in self._tuples.items() if now - seen >= CONSENT_TIMEOUT]
        for addr in stale:
            del self._tuples[addr]
        if self.selected_tuple is not None and self.selected_tuple not in self._tuples:
            self._reselect(events)
        return events


class LocalSocket(NamedTuple):
    """A media socket of the transport as announced: protocol 'udp'/'tcp', ip, port.

    `ip` is the announced address when one is configured (NAT); `family` ('ipv4'/'ipv6') is
    taken from `ip` unless given, for an announced address of another family than the socket.
    """

    protocol: str
    ip: str
    port: int
    family: str | None = None


def ice_candidate_priority(*, preferred_family: bool, preferred_protocol: bool) -> int:
    """2^24 * 64 + 2^8 * localPreference + (256 - 1), as mediasoup v2's createTransport
    candidates carry it."""
    local_preference = _DEFAULT_LOCAL_PREFERENCE
    if preferred_family:
        local_preference += _PREFER_FAMILY_INCREMENT
    if preferred_protocol:
        local_preference += _PREFER_PROTOCOL_INCREMENT
    return (_TYPE_PREFERENCE << 24) + (local_preference << 8) + (256 - _COMPONENT)


def ice_candidates(
    sockets: Iterable[LocalSocket | tuple[str, str, int]],
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The `iceCandidates` of a createTransport response, one per protocol and family.

    `options` is the request's `options` (udp, tcp: default true; preferIPv4, preferIPv6,
    preferUdp, preferTcp: default false). Sockets of a disabled protocol are left out, and so
    is any second socket of the same protocol and family.
    """
    options = options or {}
    seen: set[tuple[str, str]] = set()
    candidates: list[dict[str, Any]] = []
    for entry in sockets:
        sock = LocalSocket(*entry)
        protocol = sock.protocol.lower()
        if protocol not in ("udp", "tcp"):
            raise ValueError(f"unknown candidate protocol {sock.protocol!r}")
        if not options.get(protocol, True):
            continue
        family = sock.family or ("ipv4" if ipaddress.ip_address(sock.ip).version == 4 else "ipv6")
        if (protocol, family) in seen:
            continue
        seen.add((protocol, family))
        candidate: dict[str, Any] = {
            "foundation": f"{protocol}candidate",
            "family": family,
            "priority": ice_candidate_priority(
                preferred_family=bool(
                    options.get("preferIPv4" if family == "ipv4" else "preferIPv6")
                ),
                preferred_protocol=bool(
                    options.get("preferUdp" if protocol == "udp" else "preferTcp")
                ),
            ),
            "ip": sock.ip,
            "port": sock.port,
            "type": "host",
            "protocol": protocol,
        }
        if protocol == "tcp":
            candidate["tcpType"] = "passive"
        candidates.append(candidate)
    return candidates
