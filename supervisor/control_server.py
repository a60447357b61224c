"""The control API for applications: a ZeroMQ ROUTER speaking the envelope of shared/wire.py.

This is the one boundary where ProtocolError becomes `{ok: false, error}` (errors are
mapped at one boundary, nowhere else). Any
garbage on the socket gets an error reply when it can be answered (it has an identity and a
frame), or is dropped and logged; the server keeps serving everyone else. Specified in
docs/control-api.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio
from tureen.shared import wire
from tureen.shared.errors import INTERNAL, ProtocolError, bad_request, limit
from tureen.supervisor.curve_auth import ControlAuthenticator, make_curve_server
from tureen.supervisor.quotas import RateLimiter
from tureen.supervisor.server import Server

if TYPE_CHECKING:
    from tureen.supervisor.metrics import Metrics

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
        # The Prometheus families of control requests (supervisor/metrics.py), when on.
        self.metrics: Metrics | None = None
        self.limited = 0  # requests refused by the rate limit
        self.unencodable = 0  # replies and events that could not be written as JSON
        self.dropped_events = 0  # events ZeroMQ could not queue (a subscriber not reading)
        config = server.config
        self._rate = RateLimiter(config.max_requests_per_second, config.max_requests_burst)
        self._auth: ControlAuthenticator | None = None

    def start(self) -> None:
        sock = self.server.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, ZMQ_MAX_MESSAGE)
        sock.setsockopt(zmq.SNDHWM, EVENT_HWM)
        # A second connection that presents an identity already connected is ignored rather
        # than handed the first one's replies and events (ROUTER_HANDOVER would let any local
        # process hijack an app that sets its own identity). See docs/security.md.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
        config = self.server.config
        try:
            if config.curve_server_cert:
                # The ZAP handler must be bound before the first connection can arrive.
                self._auth = ControlAuthenticator(self.server.ctx, config.curve_clients_dir)
                self._auth.start()
                make_curve_server(sock, config.curve_server_cert)
                self._auth.watch(sock)
            sock.bind(self.endpoint)
        except (ValueError, OSError) as exc:
            sock.close(linger=0)
            self._stop_auth()
            raise RuntimeError(f"cannot set up CURVE on the control API: {exc}") from None
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._stop_auth()
            raise RuntimeError(
                f"cannot bind the control API to {self.endpoint}: {exc}. Is another Tureen "
                "running there? Set control_endpoint (--control) to a free address."
            ) from None
        self._socket = sock
        self.server.set_event_sink(self._send_event)
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="control server")
        log.info(
            "control API listening on %s (%s)", self.endpoint,
            f"CURVE, client keys from {config.curve_clients_dir}" if self._auth else "no authentication",
        )

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

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
        self._stop_auth()

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
        # Every message takes a token, garbage too; the refusal still carries the id.
        allowed = self._rate.allow(identity, time.monotonic())
        if not allowed:
            self.limited += 1
        request_id: Any = None
        method: Any = None
        started = time.perf_counter()
        try:
            try:
                message = wire.decode(payload)
            except wire.MessageError as exc:
                request_id = exc.request_id
                raise
            method = message.get("method")  # a label for the metrics, checked below
            if not allowed:
                request_id = wire.usable_id(message)
                raise self._rate_error()
            request_id = wire.check_request_id(message.get("id"))
            if not isinstance(method, str):
                raise bad_request("every request needs a 'method' string")
            pending = self.server.dispatch(method, message, identity)
            log.debug("control: %s %s accepted", method, _what(request_id))
        except ProtocolError as exc:
            if allowed:
                self.bad_messages += 1
                log.info("control: rejected %s: %s", _what(request_id), exc.message)
            elif self.limited == 1 or self.limited % 1000 == 0:  # a flood must not flood the log
                log.warning("control: %d requests refused by the rate limit so far", self.limited)
            self._send(envelope, wire.reply_error(request_id, exc))
            if self.metrics is not None:
                self.metrics.observe(method, exc.code, time.perf_counter() - started)
            return
        task = asyncio.get_running_loop().create_task(self._reply(envelope, request_id, method, pending, started))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    def _rate_error(self) -> ProtocolError:
        return limit(
            f"too many requests on this connection: more than {self._rate.rate:g} a second "
            f"(max_requests_per_second, bursts of {self._rate.burst}); slow down and send "
            "this request again later"
        )

    async def _reply(
        self, envelope: list[bytes], request_id: Any, method: str, pending: Any, started: float | None = None
    ) -> None:
        started = time.perf_counter() if started is None else started  # the request's arrival
        outcome = "ok"
        try:
            data = await pending
        except ProtocolError as exc:
            log.info("control: %s %s failed: %s", method, _what(request_id), exc.message)
            reply = wire.reply_error(request_id, exc)
            outcome = exc.code
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("control: %s %s crashed", method, _what(request_id))
            reply = wire.reply_error(
                request_id, ProtocolError(INTERNAL, f"internal error in {method}: {exc!r}; see the server log")
            )
            outcome = INTERNAL
        else:
            reply = wire.reply_ok(request_id, data)
        self._send(envelope, reply)
        if self.metrics is not None:
            self.metrics.observe(method, outcome, time.perf_counter() - started)

    # ------------------------------------------------------------------ send

    def _send(self, envelope: list[bytes], message: dict[str, Any]) -> None:
        """Send a reply or an event. Never raises: a reply that cannot be encoded becomes an
        `internal` error reply with the same id, an event that cannot be is logged and dropped
        (the room that emitted it carries on)."""
        if self._socket is None:
            return
        try:
            frame = wire.encode(message)
        except TypeError as exc:  # orjson.JSONEncodeError: too deep, a huge int, ...
            frame = self._unencodable(message, exc)
            if frame is None:
                return
        try:
            # zmq.asyncio puts a NOBLOCK send's error into the returned future, not a raise.
            sent = self._socket.send_multipart([*envelope, frame], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            _log_send_failure(exc)
        else:
            sent.add_done_callback(_reply_sent)

    def _unencodable(self, message: dict[str, Any], exc: Exception) -> bytes | None:
        self.unencodable += 1
        if "event" in message and "id" not in message:
            log.error("control: event %r could not be encoded (%s); dropped", message.get("event"), exc)
            return None
        request_id = message.get("id")
        log.error("control: the reply to %s could not be encoded (%s); sent an internal error", _what(request_id), exc)
        error = ProtocolError(
            INTERNAL, f"the reply could not be written as JSON ({exc}); see the server log"
        )
        try:
            return wire.encode(wire.reply_error(request_id, error))
        except TypeError:  # the id itself: cannot happen for ids check_request_id let in
            return wire.encode(wire.reply_error(None, error))

    def _send_event(self, room_id: str, event: dict[str, Any]) -> None:
        """Send a room's event to every subscriber of the room, and (all but protocol
        notifications) to every server-wide subscriber.

        ROUTER_MANDATORY is on for these sends only, so that a subscriber whose connection
        is gone is reported (EHOSTUNREACH) and removed from the room (and the server-wide
        list) instead of filling its subscriber slots forever; replies keep ZeroMQ's silent
        drop."""
        identities = self.server.subscribers(room_id, event.get("event"))
        if not identities or self._socket is None:
            log.debug("control: no subscriber for room %r; event %s dropped", room_id, event.get("event"))
            return
        try:
            frame = wire.encode(event)
        except TypeError as exc:  # orjson.JSONEncodeError
            self._unencodable(event, exc)
            return
        sock = self._socket
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        try:
            for identity in identities:
                # A NOBLOCK send of zmq.asyncio is done at once; its error is in the future.
                sent = sock.send_multipart([identity, frame], flags=zmq.NOBLOCK)
                if sent.done():
                    self._event_sent(room_id, identity, sent)
                else:
                    sent.add_done_callback(lambda f, i=identity: self._event_sent(room_id, i, f))
        finally:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 0)

    def _event_sent(self, room_id: str, identity: bytes, sent: asyncio.Future[Any]) -> None:
        exc = None if sent.cancelled() else sent.exception()
        if exc is None:
            return
        if isinstance(exc, zmq.Again):
            self.dropped_events += 1
            log.debug("control: a subscriber of room %r is not reading; event dropped", room_id)
        elif isinstance(exc, zmq.ZMQError) and exc.errno == zmq.EHOSTUNREACH:
            self.server.drop_subscriber(room_id, identity)
        else:
            log.warning("control: sending an event of room %r failed: %s", room_id, exc)


def _reply_sent(sent: asyncio.Future[Any]) -> None:
    exc = None if sent.cancelled() else sent.exception()
    if exc is not None:
        _log_send_failure(exc)


def _log_send_failure(exc: BaseException) -> None:
    if isinstance(exc, zmq.Again):
        log.warning("control: connection is not reading; dropped a message")
    else:
        log.warning("control: send failed: %s", exc)


def _what(request_id: Any) -> str:
    return f"request {request_id!r}" if request_id is not None else "message"
