"""The control API for applications: a ZeroMQ ROUTER speaking the envelope of shared/wire.py.

This is the one boundary where ProtocolError becomes `{ok: false, error}` (STYLE.md §8). Any
garbage on the socket gets an error reply when it can be answered (it has an identity and a
frame), or is dropped and logged; the server keeps serving everyone else. Specified in
docs/control-api.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import zmq
import zmq.asyncio

from ..shared import wire
from ..shared.errors import INTERNAL, ProtocolError, bad_request
from .server import Server

log = logging.getLogger("tureen.control")

# ZeroMQ drops (and disconnects) anything larger than this before we see it; between
# wire.MAX_FRAME and this, the sender gets a readable error instead.
ZMQ_MAX_MESSAGE = 4 * wire.MAX_FRAME
EVENT_HWM = 100_000  # queued events per app connection before ZeroMQ drops them


class ControlServer:
    def __init__(self, server: Server, endpoint: str) -> None:
        self.server = server
        self.endpoint = endpoint
        self._socket: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._replies: set[asyncio.Task[None]] = set()
        self.bad_messages = 0

    def start(self) -> None:
        sock = self.server.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, ZMQ_MAX_MESSAGE)
        sock.setsockopt(zmq.SNDHWM, EVENT_HWM)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise RuntimeError(
                f"cannot bind the control API to {self.endpoint}: {exc}. Is another Tureen "
                "running there? Set control_endpoint (--control) to a free address."
            ) from None
        self._socket = sock
        self.server.set_event_sink(self._send_event)
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="control server")
        log.info("control API listening on %s", self.endpoint)

    async def stop(self, linger: float = 0.0) -> None:
        """Stop serving; replies and events already queued get `linger` s to go out."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._replies):
            task.cancel()
        if self._socket is not None:
            self._socket.close(linger=int(linger * 1000))
            self._socket = None

    # ------------------------------------------------------------------ receive

    async def _serve(self) -> None:
        assert self._socket is not None
        while True:
            frames = await self._socket.recv_multipart(copy=True)
            try:
                self._handle(frames)
            except Exception:  # never let one message stop the server
                log.exception("control: unexpected error handling a message")

    def _handle(self, frames: list[bytes]) -> None:
        # DEALER clients send [payload] -> we see [identity, payload]; REQ clients add an
        # empty delimiter: [identity, b"", payload]. Anything else cannot be answered.
        if len(frames) == 2:
            identity, envelope, payload = frames[0], [frames[0]], frames[1]
        elif len(frames) == 3 and frames[1] == b"":
            identity, envelope, payload = frames[0], [frames[0], b""], frames[2]
        else:
            self.bad_messages += 1
            log.warning("control: dropped a message of %d frames (expected one JSON frame)", len(frames) - 1)
            return
        request_id: Any = None
        try:
            message = wire.decode(payload)
            request_id = message.get("id")
            if request_id is None or isinstance(request_id, dict | list | bool):
                raise bad_request("every request needs an 'id' (a string or a number)")
            method = message.get("method")
            if not isinstance(method, str):
                raise bad_request("every request needs a 'method' string")
            pending = self.server.dispatch(method, message, identity)
        except ProtocolError as exc:
            self.bad_messages += 1
            log.info("control: rejected %s: %s", _what(request_id), exc.message)
            self._send(envelope, wire.reply_error(request_id, exc))
            return
        task = asyncio.get_running_loop().create_task(self._reply(envelope, request_id, method, pending))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def _reply(self, envelope: list[bytes], request_id: Any, method: str, pending: Any) -> None:
        try:
            data = await pending
        except ProtocolError as exc:
            log.info("control: %s %s failed: %s", method, _what(request_id), exc.message)
            reply = wire.reply_error(request_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("control: %s %s crashed", method, _what(request_id))
            reply = wire.reply_error(
                request_id, ProtocolError(INTERNAL, f"internal error in {method}: {exc!r}; see the server log")
            )
        else:
            reply = wire.reply_ok(request_id, data)
        self._send(envelope, reply)

    # ------------------------------------------------------------------ send

    def _send(self, envelope: list[bytes], message: dict[str, Any]) -> None:
        if self._socket is None:
            return
        try:
            self._socket.send_multipart([*envelope, wire.encode(message)], flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("control: connection is not reading; dropped a message")
        except zmq.ZMQError as exc:
            log.warning("control: send failed: %s", exc)

    def _send_event(self, room_id: str, event: dict[str, Any]) -> None:
        identity = self.server.subscriptions.get(room_id)
        if identity is None:
            log.debug("control: no subscriber for room %r; event %s dropped", room_id, event.get("event"))
            return
        self._send([identity], event)


def _what(request_id: Any) -> str:
    return f"request {request_id!r}" if request_id is not None else "message"
