"""IceLiteServer against real aioice-encoded STUN, shaped like Chromium's checks."""

from __future__ import annotations

import random
import struct

import pytest
from aioice import stun
from tureen.workers.transport.ice_lite import (
    CONSENT_TIMEOUT,
    MAX_TUPLES,
    IceLiteServer,
    IceStateChanged,
    IceTupleSelected,
    LocalSocket,
    ice_candidate_priority,
    ice_candidates,
)

BROWSER_UFRAG = "bRoW"
A = ("192.0.2.2", 50000)
B = ("192.0.2.2", 50001)
GOOG_NETWORK_INFO = 0xC057


def check(
    server: IceLiteServer,
    *,
    ufrag: str | None = None,
    password: str | None = None,
    use_candidate: bool = False,
    integrity: bool = True,
    fingerprint: bool = True,
    priority: int | None = 1853817087,
    method: stun.Method = stun.Method.BINDING,
    message_class: stun.Class = stun.Class.REQUEST,
) -> tuple[bytes, bytes]:
    """A connectivity check as Chromium sends it: (datagram, transaction id)."""
    attributes: dict = {"USERNAME": f"{ufrag or server.usernameFragment}:{BROWSER_UFRAG}"}
    attributes["ICE-CONTROLLING"] = 0x1122334455667788
    if priority is not None:
        attributes["PRIORITY"] = priority
    if use_candidate:
        attributes["USE-CANDIDATE"] = None
    msg = stun.Message(method, message_class, attributes=attributes)
    key = (password or server.password).encode()
    if integrity:
        msg.add_message_integrity(key)
    elif fingerprint:
        msg.add_fingerprint()
    if not fingerprint:
        msg.attributes.pop("FINGERPRINT", None)
    return bytes(msg), msg.transaction_id


def chromium_check(server: IceLiteServer, use_candidate: bool = False) -> bytes:
    """A check carrying GOOG-NETWORK-INFO (0xC057), which aioice cannot encode: built by hand."""
    attributes: dict = {
        "USERNAME": f"{server.usernameFragment}:{BROWSER_UFRAG}",
        "ICE-CONTROLLING": 1,
        "PRIORITY": 1853817087,
    }
    if use_candidate:
        attributes["USE-CANDIDATE"] = None
    data = bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST, attributes=attributes))
    data += struct.pack("!HHHH", GOOG_NETWORK_INFO, 4, 1, 999)
    data = stun.set_body_length(data, len(data) - stun.HEADER_LENGTH)
    data += struct.pack("!HH", 0x0008, 20) + stun.message_integrity(data, server.password.encode())
    fingerprint = stun.message_fingerprint(data)  # computed with the length it will have
    data = stun.set_body_length(data, len(data) - stun.HEADER_LENGTH + stun.FINGERPRINT_LENGTH)
    return data + struct.pack("!HHI", 0x8028, 4, fingerprint)


def error_code(response: bytes | None) -> int | None:
    assert response is not None
    msg = stun.parse_message(response)  # also verifies FINGERPRINT
    assert msg.message_class == stun.Class.ERROR
    assert "FINGERPRINT" in msg.attributes
    assert "MESSAGE-INTEGRITY" not in msg.attributes
    return msg.error_code


def test_ice_parameters_have_16_and_32_character_credentials_and_ice_lite() -> None:
    server = IceLiteServer()
    params = server.ice_parameters()
    assert len(params["usernameFragment"]) == 16
    assert len(params["password"]) == 32
    assert params["iceLite"] is True
    assert params["usernameFragment"].isalnum() and params["password"].isalnum()
    assert IceLiteServer().usernameFragment != server.usernameFragment


@pytest.mark.parametrize("addr", [A, ("2001:db8::7", 40000)])
def test_valid_check_gets_an_authenticated_success_with_xor_mapped_address(addr) -> None:
    server = IceLiteServer()
    data, tid = check(server)
    response, _ = server.handle_stun(data, addr, 0.0)
    msg = stun.parse_message(response)  # raises if FINGERPRINT is wrong
    assert msg.message_method == stun.Method.BINDING
    assert msg.message_class == stun.Class.RESPONSE
    assert msg.transaction_id == tid
    assert msg.attributes["XOR-MAPPED-ADDRESS"] == addr
    assert msg.check_message_integrity(server.password.encode())
    assert "FINGERPRINT" in msg.attributes
    assert "USERNAME" not in msg.attributes


def test_chromium_check_with_goog_network_info_is_accepted() -> None:
    server = IceLiteServer()
    response, events = server.handle_stun(chromium_check(server), A, 0.0)
    assert stun.parse_message(response).message_class == stun.Class.RESPONSE
    assert events == [IceTupleSelected(A), IceStateChanged("connected")]
    assert server.remote_usernameFragment == BROWSER_UFRAG


def test_regular_nomination_connects_then_completes_on_the_same_tuple() -> None:
    server = IceLiteServer()
    assert server.state == "new" and not server.is_valid_tuple(A)
    _, events = server.handle_stun(check(server)[0], A, 0.0)
    assert events == [IceTupleSelected(A), IceStateChanged("connected")]
    assert server.is_valid_tuple(A) and server.selected_tuple == A
    _, events = server.handle_stun(check(server, use_candidate=True)[0], A, 0.05)
    assert events == [IceStateChanged("completed")]
    # Consent refreshes change nothing.
    _, events = server.handle_stun(check(server, use_candidate=True)[0], A, 5.0)
    assert events == []


def test_first_check_with_use_candidate_completes_at_once() -> None:
    server = IceLiteServer()
    _, events = server.handle_stun(check(server, use_candidate=True)[0], A, 0.0)
    assert events == [IceTupleSelected(A), IceStateChanged("completed")]


def test_unnominated_new_tuple_is_valid_but_not_selected() -> None:
    server = IceLiteServer()
    server.handle_stun(check(server)[0], A, 0.0)
    _, events = server.handle_stun(check(server)[0], B, 0.1)
    assert events == []
    assert server.is_valid_tuple(B) and server.selected_tuple == A
    _, events = server.handle_stun(check(server, use_candidate=True)[0], B, 0.2)
    assert events == [IceTupleSelected(B), IceStateChanged("completed")]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"ufrag": "someoneelse00000"}, 401),
        ({"password": "x" * 32}, 401),
        ({"integrity": False}, 400),
        ({"fingerprint": False}, 400),
        ({"priority": None}, 400),
        ({"priority": 0}, 400),
        ({"method": stun.Method.ALLOCATE}, 400),
    ],
    ids=[
        "wrong-ufrag",
        "wrong-password",
        "no-integrity",
        "no-fingerprint",
        "no-priority",
        "zero-priority",
        "not-binding",
    ],
)
def test_bad_request_gets_error_response_and_no_tuple(kwargs, code) -> None:
    server = IceLiteServer()
    data, tid = check(server, **kwargs)
    response, events = server.handle_stun(data, A, 0.0)
    assert error_code(response) == code
    assert stun.parse_message(response).transaction_id == tid
    assert events == [] and server.state == "new" and not server.is_valid_tuple(A)


def test_username_without_remote_part_is_unauthorized() -> None:
    server = IceLiteServer()
    msg = stun.Message(
        stun.Method.BINDING,
        stun.Class.REQUEST,
        attributes={"USERNAME": server.usernameFragment + ":", "PRIORITY": 1},
    )
    msg.add_message_integrity(server.password.encode())
    response, _ = server.handle_stun(bytes(msg), A, 0.0)
    assert error_code(response) == 401


@pytest.mark.parametrize(
    "message_class", [stun.Class.INDICATION, stun.Class.RESPONSE, stun.Class.ERROR]
)
def test_non_requests_are_ignored(message_class) -> None:
    server = IceLiteServer()
    data, _ = check(server, message_class=message_class)
    assert server.handle_stun(data, A, 0.0) == (None, [])
    data, _ = check(server, message_class=message_class, method=stun.Method.ALLOCATE)
    assert server.handle_stun(data, A, 0.0) == (None, [])
    assert server.state == "new"


def test_garbage_and_mutated_checks_never_raise() -> None:
    server = IceLiteServer()
    good, _ = check(server, use_candidate=True)
    assert server.handle_stun(b"", A, 0.0) == (None, [])
    assert server.handle_stun(good[:30], A, 0.0) == (None, [])
    bad_fingerprint = good[:-1] + bytes([good[-1] ^ 1])
    assert server.handle_stun(bad_fingerprint, A, 0.0) == (None, [])
    rng = random.Random(7)
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        response, _ = server.handle_stun(
            bytes(data), ("198.51.100.1", rng.randrange(1, 65536)), 0.0
        )
        assert response is None or isinstance(response, bytes)
    for _ in range(500):
        server.handle_stun(rng.randbytes(rng.randrange(0, 120)), A, 0.0)


def test_restart_changes_credentials_and_old_ones_get_401() -> None:
    server = IceLiteServer()
    old_ufrag, old_password = server.usernameFragment, server.password
    server.handle_stun(check(server, use_candidate=True)[0], A, 0.0)
    params = server.restart()
    assert params == server.ice_parameters()
    assert params["usernameFragment"] != old_ufrag and params["password"] != old_password
    assert len(params["usernameFragment"]) == 16 and len(params["password"]) == 32
    stale, _ = check(server, ufrag=old_ufrag, password=old_password, use_candidate=True)
    response, events = server.handle_stun(stale, A, 1.0)
    assert error_code(response) == 401 and events == []
    # Old ufrag with the new password, or the reverse: still refused.
    assert error_code(server.handle_stun(check(server, ufrag=old_ufrag)[0], A, 1.0)[0]) == 401
    assert error_code(server.handle_stun(check(server, password=old_password)[0], A, 1.0)[0]) == 401


def test_after_restart_browser_checks_from_new_port_and_nomination_moves_media() -> None:
    server = IceLiteServer()
    server.handle_stun(check(server)[0], A, 0.0)
    server.handle_stun(check(server, use_candidate=True)[0], A, 0.05)
    server.restart()
    _, events = server.handle_stun(check(server)[0], B, 10.0)
    assert events == [] and server.selected_tuple == A
    assert server.is_valid_tuple(A) and server.is_valid_tuple(B)
    _, events = server.handle_stun(check(server, use_candidate=True)[0], B, 10.05)
    assert events == [IceTupleSelected(B)]
    assert server.state == "completed"
    # The old path loses consent later without disturbing the new one.
    assert server.check_timeout(0.05 + CONSENT_TIMEOUT) == []
    assert not server.is_valid_tuple(A) and server.selected_tuple == B


def test_consent_expires_after_30_seconds_without_valid_checks() -> None:
    server = IceLiteServer()
    assert server.get_timer() is None
    server.handle_stun(check(server, use_candidate=True)[0], A, 100.0)
    assert server.get_timer() == 100.0 + CONSENT_TIMEOUT
    server.handle_stun(check(server, use_candidate=True)[0], A, 120.0)  # a refresh
    assert server.get_timer() == 150.0
    assert server.check_timeout(149.9) == []
    # Failed checks do not refresh consent.
    server.handle_stun(check(server, password="y" * 32)[0], A, 149.0)
    events = server.check_timeout(150.0)
    assert events == [IceTupleSelected(None), IceStateChanged("disconnected")]
    assert server.state == "disconnected" and not server.is_valid_tuple(A)
    assert server.get_timer() is None and server.check_timeout(500.0) == []
    # A new valid check brings it back.
    _, events = server.handle_stun(check(server)[0], B, 200.0)
    assert events == [IceTupleSelected(B), IceStateChanged("connected")]


def test_consent_loss_of_selected_tuple_falls_back_to_a_fresh_one() -> None:
    server = IceLiteServer()
    server.handle_stun(check(server, use_candidate=True)[0], A, 0.0)
    server.handle_stun(check(server)[0], B, 20.0)
    assert server.check_timeout(CONSENT_TIMEOUT) == [IceTupleSelected(B)]
    assert server.state == "completed" and server.tuples == [B]


A_TCP = (A[0], A[1], "tcp")


def test_tcp_and_udp_tuples_from_the_same_address_are_distinct() -> None:
    server = IceLiteServer()
    response, events = server.handle_stun(check(server, use_candidate=True)[0], A_TCP, 0.0)
    assert events == [IceTupleSelected(A_TCP), IceStateChanged("completed")]
    # XOR-MAPPED-ADDRESS is the ip:port, without the protocol.
    assert stun.parse_message(response).attributes["XOR-MAPPED-ADDRESS"] == A
    assert server.is_valid_tuple(A_TCP) and not server.is_valid_tuple(A)
    server.handle_stun(check(server)[0], A, 1.0)
    assert server.tuples == [A_TCP, A] and server.selected_tuple == A_TCP


def test_removing_the_selected_tuple_falls_back_or_disconnects() -> None:
    server = IceLiteServer()
    server.handle_stun(check(server, use_candidate=True)[0], A_TCP, 0.0)
    server.handle_stun(check(server)[0], B, 1.0)
    assert server.remove_tuple(("192.0.2.99", 1, "tcp")) == []  # unknown: nothing
    assert server.remove_tuple(B) == []  # not selected: just forgotten
    assert server.tuples == [A_TCP] and server.state == "completed"
    server.handle_stun(check(server)[0], B, 2.0)
    assert server.remove_tuple(A_TCP) == [IceTupleSelected(B)]
    assert server.selected_tuple == B and server.state == "completed"
    assert server.remove_tuple(B) == [IceTupleSelected(None), IceStateChanged("disconnected")]
    assert server.tuples == [] and server.get_timer() is None


def test_tuples_are_capped_keeping_the_selected_one() -> None:
    server = IceLiteServer()
    server.handle_stun(check(server, use_candidate=True)[0], A, 0.0)
    for port in range(MAX_TUPLES * 2):
        server.handle_stun(check(server)[0], ("198.51.100.9", 1000 + port), 1.0 + port)
    assert len(server.tuples) == MAX_TUPLES
    assert server.selected_tuple == A and server.is_valid_tuple(A)
    assert server.is_valid_tuple(("198.51.100.9", 1000 + MAX_TUPLES * 2 - 1))


def test_candidate_priority_formula() -> None:
    base = 2**24 * 64 + 255
    assert (
        ice_candidate_priority(preferred_family=False, preferred_protocol=False)
        == base + 2**8 * 20000
    )
    assert (
        ice_candidate_priority(preferred_family=True, preferred_protocol=False)
        == base + 2**8 * 30000
    )
    assert (
        ice_candidate_priority(preferred_family=False, preferred_protocol=True)
        == base + 2**8 * 25000
    )
    assert (
        ice_candidate_priority(preferred_family=True, preferred_protocol=True)
        == base + 2**8 * 35000
    )


def test_candidates_follow_protocol_md_shape_and_options() -> None:
    sockets = [
        ("udp", "203.0.113.5", 40001),
        LocalSocket("tcp", "203.0.113.5", 40002),
        ("udp", "2001:db8::1", 40003),
        ("udp", "203.0.113.5", 40004),  # second udp/ipv4 socket: left out
    ]
    candidates = ice_candidates(sockets, {"preferUdp": True, "preferIPv4": True})
    assert candidates == [
        {
            "foundation": "udpcandidate",
            "family": "ipv4",
            "priority": 2**24 * 64 + 2**8 * 35000 + 255,
            "ip": "203.0.113.5",
            "port": 40001,
            "type": "host",
            "protocol": "udp",
        },
        {
            "foundation": "tcpcandidate",
            "family": "ipv4",
            "priority": 2**24 * 64 + 2**8 * 30000 + 255,
            "ip": "203.0.113.5",
            "port": 40002,
            "type": "host",
            "protocol": "tcp",
            "tcpType": "passive",
        },
        {
            "foundation": "udpcandidate",
            "family": "ipv6",
            "priority": 2**24 * 64 + 2**8 * 25000 + 255,
            "ip": "2001:db8::1",
            "port": 40003,
            "type": "host",
            "protocol": "udp",
        },
    ]
    only_tcp = ice_candidates(sockets, {"udp": False, "preferTcp": True})
    assert [(c["protocol"], c["priority"]) for c in only_tcp] == [
        ("tcp", 2**24 * 64 + 2**8 * 25000 + 255)
    ]
    assert ice_candidates(sockets, {"udp": False, "tcp": False}) == []
    # An announced address decides the family unless the socket says otherwise.
    announced = ice_candidates([LocalSocket("udp", "198.51.100.1", 1, "ipv6")])
    assert announced[0]["family"] == "ipv6"
    with pytest.raises(ValueError):
        ice_candidates([("sctp", "192.0.2.1", 5000)])
