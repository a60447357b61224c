"""Protocol handlers and operations on transports: createTransport, updateTransport,
restartTransport, closeTransport, and closing a transport with what runs on it.

A transport lives on its peer's worker (placement: `Room.worker_for`). Closing one closes its
producers (their consumers hear consumerClosed) and takes its consumers off it (they stay,
not enabled).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.contract import WEBRTC_OPTIONS
from tureen.shared.errors import (
    UNAVAILABLE,
    ProtocolError,
    bad_request,
    duplicate,
    invalid_state,
    limit,
)
from tureen.shared.protocol.validate import get_bool, get_id, get_int, get_obj, get_str
from tureen.supervisor.consumer_handlers import detach_consumer
from tureen.supervisor.peer import Peer
from tureen.supervisor.producer_handlers import close_producer
from tureen.supervisor.transport import Transport, TransportState

if TYPE_CHECKING:
    from tureen.supervisor.room import Room

log = logging.getLogger("tureen.room")


async def create_transport(room: Room, peer: Peer, msg: dict[str, Any]) -> Any:
    tid = get_id(msg, "id")
    if tid in room.transports:
        raise duplicate(f"duplicated Transport: id {tid} is already used in room {room.id!r}")
    direction = get_str(msg, "direction", choices=("send", "recv"))
    assert direction is not None
    options = get_obj(msg, "options", required=False) or {}
    dtls = get_obj(msg, "dtlsParameters", required=False)
    plain_params = get_obj(msg, "plainRtpParameters", required=False)
    app_data = msg.get("appData")
    if plain_params is not None:
        remote = _plain_remote(plain_params)
        comedia = get_bool(plain_params, "comedia")
        if remote is None and not comedia:
            raise bad_request("plainRtpParameters needs ip and port (or comedia: true)")
    else:
        flags = {key: get_bool(options, key, default=default) for key, default in WEBRTC_OPTIONS.items()}
        if not flags["udp"] and not flags["tcp"]:
            raise bad_request("options: at least one of udp and tcp must be true")
    if len(peer.transports) >= room.quotas.transports_per_peer:
        raise limit(
            f"{peer.describe()} has {len(peer.transports)} transports, the most a peer may "
            "have (max_transports_per_peer): close one before creating another"
        )
    gid = room.new_gid()
    deadline = asyncio.get_running_loop().time() + room.services.worker_wait
    # A peer is placed by its first transport: if that creation fails, it stays unplaced
    # (a refused request changes nothing), so its next try is placed afresh.
    placed_before = peer.worker
    for attempt in range(3):
        worker = await room.worker_for(peer, deadline)
        transport = Transport(
            id=tid,
            gid=gid,
            peer_name=peer.name,
            direction=direction,
            plain=plain_params is not None,
            worker=worker,
            app_data=app_data,
        )
        try:
            if transport.plain:
                response = await _create_plain_on_worker(room, transport, remote, comedia)
            else:
                response = await _create_webrtc_on_worker(room, transport, flags, dtls)
            break
        except ProtocolError as exc:
            # The worker died under the request: nothing exists there any more. Place
            # the transport again (waiting for the replacement if it was the last one).
            if exc.code != UNAVAILABLE or room.services.worker_alive(worker) or attempt == 2:
                if not peer.transports:
                    peer.worker = placed_before
                raise
            log.info("room %r: worker %d died while creating a transport; placing it again", room.id, worker)
            if peer.worker == worker:
                peer.worker = None
    transport.created = response
    peer.transports[tid] = transport
    room.transports[tid] = transport
    room.register(transport)
    log.info(
        "room %r: %s created %s %d (worker id %d) on worker %d",
        room.id,
        peer.describe(),
        transport.kind_name,
        tid,
        transport.gid,
        worker,
        extra=room.names(peer.name, transport=tid, workerId=transport.gid),
    )
    return response


async def _create_plain_on_worker(
    room: Room, transport: Transport, remote: tuple[str, int] | None, comedia: bool | None
) -> dict[str, Any]:
    data = await room.request(
        transport.worker,
        contract.TransportCreatePlain(
            transportId=transport.gid,
            remoteIp=remote[0] if remote else None,
            remotePort=remote[1] if remote else None,
            comedia=comedia,
            room=room.id,
            peer=transport.peer_name,
            clientId=transport.id,
        ),
    )
    if remote is not None:
        transport.connect(remote)
    transport.local = {"ip": data["ip"], "port": data["port"]}
    return {"plainRtpParameters": dict(transport.local)}


async def _create_webrtc_on_worker(
    room: Room, transport: Transport, flags: dict[str, bool], dtls: dict[str, Any] | None
) -> dict[str, Any]:
    worker = transport.worker
    data = await room.request(
        worker,
        contract.TransportCreateWebRtc(
            transportId=transport.gid,
            udp=flags["udp"],
            tcp=flags["tcp"],
            preferIPv4=flags["preferIPv4"],
            preferIPv6=flags["preferIPv6"],
            preferUdp=flags["preferUdp"],
            preferTcp=flags["preferTcp"],
            room=room.id,
            peer=transport.peer_name,
            clientId=transport.id,
        ),
    )
    response = {
        "iceParameters": data["iceParameters"],
        "iceCandidates": data["iceCandidates"],
        "dtlsParameters": data["dtlsParameters"],
    }
    if dtls is not None:
        # Applied first; on failure the transport is dropped and the request fails.
        try:
            applied = await room.request(
                worker,
                contract.TransportSetRemoteDtls(transportId=transport.gid, dtlsParameters=dtls),
            )
        except ProtocolError:
            await room.request_quiet(worker, contract.TransportClose(transportId=transport.gid))
            raise
        response["dtlsParameters"] = applied["dtlsParameters"]
        transport.connect()
    return response


def _plain_remote(params: dict[str, Any]) -> tuple[str, int] | None:
    ip = get_str(params, "ip", required=False, max_length=64)
    port = get_int(params, "port", required=False, minimum=1, maximum=65535)
    if ip is None and port is None:
        return None
    if ip is None or port is None:
        raise bad_request("plainRtpParameters needs both ip and port")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise bad_request(f"plainRtpParameters.ip {ip!r} is not an IP address") from None
    return ip, port


async def update_transport(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    transport = room.transport_of(peer, msg)
    remote: tuple[str, int] | None = None
    if transport.plain:
        params = get_obj(msg, "plainRtpParameters")
        assert params is not None
        remote = _plain_remote(params)
        if remote is None:
            raise bad_request("plainRtpParameters needs ip and port")
    else:
        dtls = get_obj(msg, "dtlsParameters")
        assert dtls is not None
        if transport.state is TransportState.CONNECTED:
            # v2: setting them twice fails, and a failed updateTransport closes it.
            await fail_transport(room, transport, "remote DTLS parameters were already set")
            raise invalid_state(
                f"{transport.describe()}: remote DTLS parameters were already set; the transport was closed"
            )
    try:
        # Built inside: a command the contract refuses fails the update like a worker would.
        command: contract.Command = (
            contract.TransportConnectPlain(transportId=transport.gid, remoteIp=remote[0], remotePort=remote[1])
            if remote is not None
            else contract.TransportSetRemoteDtls(transportId=transport.gid, dtlsParameters=dtls)
        )
        await room.request(transport.worker, command)
    except ProtocolError as exc:
        await fail_transport(room, transport, exc.message)
        raise ProtocolError(
            exc.code, f"updateTransport failed, {transport.describe()} closed: {exc.message}"
        ) from None
    transport.connect(remote)


async def fail_transport(room: Room, transport: Transport, reason: str) -> None:
    log.warning(
        "room %r: closing %s: %s",
        room.id,
        transport.describe(),
        reason,
        extra=room.names(transport.peer_name, transport=transport.id, workerId=transport.gid),
    )
    await close_transport(room, transport, notify_owner=True)


async def restart_transport(room: Room, peer: Peer, msg: dict[str, Any]) -> Any:
    transport = room.transport_of(peer, msg)
    if transport.plain:
        raise invalid_state(f"{transport.describe()} is a PlainRtpTransport: no ICE to restart")
    data = await room.request(transport.worker, contract.TransportRestartIce(transportId=transport.gid))
    return {"iceParameters": data["iceParameters"]}


async def close_transport_msg(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    await close_transport(room, room.transport_of(peer, msg), notify_owner=False)


async def close_transport(
    room: Room, transport: Transport, *, notify_owner: bool, app_data: Any = None
) -> None:
    """Producers on it close (their consumers get consumerClosed); consumers detach.
    The owner's transportClosed carries `app_data`: the server app's, as v2's
    transport.close(appData), never the transport's own."""
    if not room.begin_close(transport):
        return
    peer = room.peers.get(transport.peer_name)
    owner_alive = peer is not None and not peer.closed
    if peer is not None:
        for producer in [p for p in peer.producers.values() if p.transport is transport]:
            await close_producer(room, producer, notify_consumers=owner_alive)
        for consumer in [c for c in peer.consumers.values() if c.transport is transport]:
            await detach_consumer(room, consumer)
        peer.transports.pop(transport.id, None)
    room.transports.pop(transport.id, None)
    room.unregister(transport)
    await room.request_quiet(transport.worker, contract.TransportClose(transportId=transport.gid))
    if notify_owner and peer is not None:
        room.notify(peer, "transportClosed", id=transport.id, appData=app_data)
