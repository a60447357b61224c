"""The one setter every supervisor state object shares: an enum state, a transition table.

As aiortc's RTCPeerConnection keeps `connectionState` and changes it only through
`__setConnectionState`, a Peer, Transport, Producer or Consumer changes its `state` only
through `set_state`, which checks the move against the class's `TRANSITIONS` and logs it.
Handlers validate a message before they touch anything (room.py's theory), so a refused
transition is a bug in a handler, not bad input: it raises `InvalidTransition`, which the
room's mailbox logs as an internal error.
"""

from __future__ import annotations

import enum
import logging
from typing import ClassVar

log = logging.getLogger("tureen.room")


class InvalidTransition(RuntimeError):
    """A handler asked a state object for a move its table does not have."""


class Stateful:
    """Mixin of the state objects: `state` plus the table of allowed moves."""

    TRANSITIONS: ClassVar[dict[enum.Enum, frozenset[enum.Enum]]]
    state: enum.Enum

    @property
    def closed(self) -> bool:
        return self.state.name == "CLOSED"

    def describe(self) -> str:
        raise NotImplementedError

    def set_state(self, new: enum.Enum) -> None:
        """Move to `new`, or raise InvalidTransition when the table has no such move."""
        old = self.state
        if new not in self.TRANSITIONS[old]:
            raise InvalidTransition(f"{self.describe()}: no transition {old.value} -> {new.value}")
        self.state = new
        log.debug("%s: %s -> %s", self.describe(), old.value, new.value)

    def close(self) -> None:
        """Move to CLOSED (every state enum has it, and every state but CLOSED reaches it)."""
        self.set_state(type(self.state)["CLOSED"])
