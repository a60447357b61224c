"""The supervisor's three dispatch tables agree with what they dispatch: every protocol
message has one handler, every worker event about an object has one room handler for that
object's kind, and the server routes exactly the app actions the rooms know (each one
documented for apps)."""

from __future__ import annotations

from pathlib import Path

from tureen.shared import contract
from tureen.supervisor import app_actions, room, server, worker_events
from tureen.supervisor.consumer import Consumer
from tureen.supervisor.producer import Producer
from tureen.supervisor.transport import Transport

ROOT = Path(__file__).resolve().parents[2]


def test_every_protocol_message_has_one_handler_and_is_a_request_or_a_notification() -> None:
    handled = room.ROOM_HANDLERS.keys() | room.PEER_HANDLERS.keys()
    assert not room.ROOM_HANDLERS.keys() & room.PEER_HANDLERS.keys()
    assert room.REQUESTS <= handled, f"requests without a handler: {sorted(room.REQUESTS - handled)}"
    assert room.NOTIFICATIONS == handled - room.REQUESTS
    assert room.ROOM_TARGET == {"queryRoom", "join"}


def test_every_event_about_an_object_has_a_room_handler_for_its_kind() -> None:
    kinds = {"transportId": Transport, "producerId": Producer, "consumerId": Consumer}
    about_objects = {cls for cls in contract.EVENTS.values() if cls.SUBJECT}
    assert set(worker_events.HANDLERS) == about_objects
    for cls, (kind, _) in worker_events.HANDLERS.items():
        assert kinds[cls.SUBJECT] is kind, cls


def test_the_server_routes_exactly_the_app_actions_and_apps_can_read_about_each() -> None:
    assert server.APP_ACTIONS == set(app_actions.ACTIONS)
    control_api = (ROOT / "docs" / "control-api.md").read_text()
    missing = [name for name in app_actions.ACTIONS if f"`{name}`" not in control_api]
    assert not missing, f"actions docs/control-api.md does not describe: {missing}"
