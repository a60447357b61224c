"""The supervisor's state objects change state only by the moves their tables list
(supervisor/states.py): a handler that asks for another move is a bug, and it fails loudly
instead of leaving a closed producer paused or a closed consumer enabled."""

from __future__ import annotations

import pytest
from tureen.supervisor.consumer import Consumer, ConsumerState
from tureen.supervisor.peer import Peer, PeerState
from tureen.supervisor.producer import (
    CONSUMER_NOTIFICATION,
    OWNER_NOTIFICATION,
    Producer,
    ProducerState,
)
from tureen.supervisor.states import InvalidTransition
from tureen.supervisor.transport import Transport, TransportState

MAPPING = {"codecs": [{"mimeType": "video/VP8"}], "streams": [], "ssrcs": []}


def _transport(plain: bool = False) -> Transport:
    return Transport(id=1, gid=11, peer_name="alice", direction="send", plain=plain, worker=0)


def _producer() -> Producer:
    return Producer(
        id=2, gid=12, peer_name="alice", kind="video", transport=_transport(), rtp_parameters={}, mapping=MAPPING
    )


def _consumer() -> Consumer:
    return Consumer(id=3, gid=13, peer_name="bob", producer=_producer(), rtp_parameters={}, supported=True)


@pytest.mark.parametrize("cls", [Peer, Transport, Producer, Consumer])
def test_every_state_has_its_moves_listed_and_closed_is_final(cls) -> None:
    states = set(cls.TRANSITIONS)
    assert states == set(type(next(iter(states))))
    closed = type(next(iter(states)))["CLOSED"]
    assert cls.TRANSITIONS[closed] == frozenset()
    assert all(closed in moves for state, moves in cls.TRANSITIONS.items() if state is not closed)


def test_a_peer_closes_once() -> None:
    peer = Peer(name="alice", rtp_capabilities={})
    assert peer.state is PeerState.JOINED and not peer.closed
    peer.close()
    assert peer.closed
    with pytest.raises(InvalidTransition, match="peer 'alice': no transition closed -> closed"):
        peer.close()


def test_a_webrtc_transport_connects_once() -> None:
    transport = _transport()
    assert not transport.remote_dtls_set
    transport.connect()
    assert transport.state is TransportState.CONNECTED and transport.remote_dtls_set
    with pytest.raises(InvalidTransition, match="connected -> connected"):
        transport.connect()


def test_a_plain_transport_may_be_given_a_new_remote_address() -> None:
    transport = _transport(plain=True)
    transport.connect(("127.0.0.1", 5000))
    transport.connect(("127.0.0.1", 5002))
    assert transport.state is TransportState.CONNECTED and not transport.remote_dtls_set
    assert transport.remote == {"ip": "127.0.0.1", "port": 5002}
    transport.close()
    with pytest.raises(InvalidTransition, match="closed -> connected"):
        transport.connect(("127.0.0.1", 5004))


def test_a_closed_producer_cannot_be_paused_or_resumed() -> None:
    producer = _producer()
    producer.set_state(ProducerState.PAUSED)
    assert producer.paused
    producer.set_state(ProducerState.LIVE)
    producer.close()
    for state in (ProducerState.PAUSED, ProducerState.LIVE):
        with pytest.raises(InvalidTransition, match=f"producer 2 of peer 'alice': no transition closed -> {state.value}"):
            producer.set_state(state)
    assert producer.closed and not producer.paused


def test_a_producer_names_the_notification_of_each_move() -> None:
    assert CONSUMER_NOTIFICATION == {ProducerState.PAUSED: "consumerPaused", ProducerState.LIVE: "consumerResumed"}
    assert OWNER_NOTIFICATION[ProducerState.CLOSED] == "producerClosed"


def test_a_consumer_goes_back_to_new_when_its_transport_goes_and_may_be_enabled_again() -> None:
    consumer = _consumer()
    first, second = _transport(), _transport()
    consumer.enable(first, paused=True, profile="low")
    assert consumer.state is ConsumerState.ENABLED and consumer.enabled and consumer.paused_by_client
    with pytest.raises(InvalidTransition, match="enabled -> enabled"):
        consumer.enable(second, paused=False, profile="high")
    assert consumer.transport is first  # the refused move changed nothing
    assert consumer.effective_changed("low") and not consumer.effective_changed("low")
    assert consumer.detach() is first
    assert consumer.state is ConsumerState.NEW and consumer.effective_profile is None
    consumer.enable(second, paused=False, profile="high")
    assert consumer.transport is second


def test_a_closed_consumer_detaches_but_stays_closed() -> None:
    consumer = _consumer()
    transport = _transport()
    consumer.enable(transport, paused=False, profile="default")
    consumer.close()
    assert consumer.detach() is transport
    assert consumer.closed and not consumer.enabled
    with pytest.raises(InvalidTransition):
        consumer.enable(transport, paused=False, profile="default")
    assert not consumer.effective_changed("high")  # not enabled: nothing to tell
