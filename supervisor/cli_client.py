"""The operator's commands against a running server: status, rooms, room, peer, workers.

Every command finds the control endpoint the same way (first that is set): `--control`,
`TUREEN_CONTROL`, `control_endpoint` of the `--config FILE` that `tureen serve` reads (with its
`TUREEN_CONTROL_ENDPOINT` override), the default. `--json` prints the server's data instead of
a table; errors are one line on stderr that says what to do (exit 1: the server said no or did
not answer; exit 2: a wrong argument or setting).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from tureen.shared import logs
from tureen.shared.client import DEFAULT_ENDPOINT, TureenClient
from tureen.shared.config import load_config
from tureen.shared.endpoint import parse_endpoint
from tureen.shared.errors import NOT_FOUND, UNAVAILABLE, ProtocolError

T = TypeVar("T")
TIMEOUT = 5.0  # s: an answer the operator waits for at the shell

ControlOpt = Annotated[
    str | None,
    typer.Option(
        "--control", "-c",
        help="Control API endpoint (env var TUREEN_CONTROL; default: control_endpoint of --config, "
        f"else {DEFAULT_ENDPOINT}).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="The TOML file of `tureen serve`: its control_endpoint is used."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CurveCertOpt = Annotated[
    str | None,
    typer.Option(
        "--curve-cert", envvar="TUREEN_CURVE_CERT", show_envvar=True,
        help="This client's secret certificate (NAME.key_secret) for a server with CURVE.",
    ),
]
CurveServerKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--curve-server-key", envvar="TUREEN_CURVE_SERVER_KEY", show_envvar=True,
        help="The server's public key: its NAME.key file or the 40 Z85 characters.",
    ),
]

workers_app = typer.Typer(help="Show, inspect and scale the worker pool (no subcommand: a table).")
peer_app = typer.Typer(help="Act on one peer of a room.", no_args_is_help=True)

# Where each way of naming the endpoint is told to the operator when nothing answers.
HOW_TO_SET = "set it with --control, TUREEN_CONTROL or --config FILE"


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit `code` (1: the server; 2: the command line or settings)."""
    typer.echo(f"tureen: {message}", err=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------------- endpoint


@dataclass(frozen=True)
class Target:
    """The server a command talks to, and where its endpoint came from (for the errors)."""

    endpoint: str
    source: str
    curve_cert: str | None = None
    curve_server_key: str | None = None

    @classmethod
    def resolve(
        cls,
        control: str | None,
        config_file: Path | None,
        curve_cert: str | None = None,
        curve_server_key: str | None = None,
    ) -> Target:
        if control:
            source = "--control"
        elif os.environ.get("TUREEN_CONTROL"):
            control, source = os.environ["TUREEN_CONTROL"], "TUREEN_CONTROL"
        else:
            try:
                config = load_config(config_file)
            except (ValueError, OSError) as exc:
                fail(f"cannot read the configuration{f' {config_file}' if config_file else ''}: {exc}", 2)
            control = connectable(config.control_endpoint)
            if "TUREEN_CONTROL_ENDPOINT" in os.environ:
                source = "TUREEN_CONTROL_ENDPOINT"
            elif config_file and config.control_endpoint != DEFAULT_ENDPOINT:
                source = f"control_endpoint of {config_file}"
            else:
                source = "the default"
        try:
            parse_endpoint(control, "the control endpoint")
        except ValueError as exc:
            fail(f"{exc} (from {source}; {HOW_TO_SET})", 2)
        return cls(control, source, curve_cert, curve_server_key)


def connectable(endpoint: str) -> str:
    """An endpoint `serve` binds, as a client on this host connects to it: a wildcard
    (`*`, 0.0.0.0, ::) becomes loopback."""
    for wildcard, local in (("tcp://*:", "tcp://127.0.0.1:"), ("tcp://0.0.0.0:", "tcp://127.0.0.1:"),
                            ("tcp://[::]:", "tcp://[::1]:")):
        if endpoint.startswith(wildcard):
            return local + endpoint[len(wildcard):]
    return endpoint


def run(target: Target, job: Callable[[TureenClient], Awaitable[T]]) -> T:
    """Connect, run `job`, close; a refusal or silence of the server becomes one line."""
    try:
        client = TureenClient(
            target.endpoint, timeout=TIMEOUT, curve_cert=target.curve_cert, curve_server_key=target.curve_server_key
        )
    except (ValueError, OSError) as exc:
        fail(str(exc), 2)

    async def main() -> T:
        async with client:
            return await job(client)

    try:
        return asyncio.run(main())
    except ProtocolError as exc:
        fail(explain(exc, target))


def call(target: Target, method: str, **params: Any) -> Any:
    """One control request."""
    return run(target, lambda client: client.request(method, **params))


def explain(exc: ProtocolError, target: Target) -> str:
    """The server's error, with what the operator can do about it."""
    message = exc.message
    if exc.code == UNAVAILABLE and message.startswith("no answer"):
        return f"{message} (endpoint from {target.source}: {HOW_TO_SET})"
    if exc.code == NOT_FOUND and message.startswith("room "):
        return f"{message}: `tureen rooms` lists the rooms"
    if exc.code == NOT_FOUND and message.startswith("peer "):
        return f"{message}: `tureen room ROOM` lists its peers"
    return message


# ---------------------------------------------------------------------- output


def console() -> Console:
    """Rich output; piped (grep, less, a file), it keeps whole lines whatever COLUMNS says."""
    return Console() if sys.stdout.isatty() else Console(width=250)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    grid = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("-" if cell is None else str(cell) for cell in row))
    return grid


def kbps(bitrate: int | None) -> str:
    return "-" if bitrate is None else f"{bitrate / 1000:.0f} kbit/s"


def address(tuple_or_dict: Any) -> str | None:
    """[ip, port(, proto)] or {ip, port} as ip:port(/proto)."""
    if isinstance(tuple_or_dict, dict):
        return f"{tuple_or_dict.get('ip')}:{tuple_or_dict.get('port')}"
    if isinstance(tuple_or_dict, list) and len(tuple_or_dict) >= 2:
        ip, port = tuple_or_dict[0], tuple_or_dict[1]
        host = f"[{ip}]" if ":" in str(ip) else ip
        return f"{host}:{port}" + (f"/{tuple_or_dict[2]}" if len(tuple_or_dict) > 2 else "")
    return None


# ---------------------------------------------------------------------- status, rooms


def status(
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Show version, readiness, rooms and the workers (pid, cpu, load) of a running server."""
    info = call(Target.resolve(control, config_file, curve_cert, curve_server_key), "server.info")
    if as_json:
        print_json(info)
        return
    state = "ready" if info.get("ready") else "not ready (workers starting or being replaced)"
    typer.echo(f"tureen {info['version']} pid {info['pid']} up {info['uptime']} s, {info['rooms']} rooms, {state}")
    for w in info["workers"]:
        load = w.get("load") or {}
        typer.echo(
            f"  worker {w['index']}: pid {w['pid']} cpu {w['cpu']} {'up' if w['alive'] else 'DOWN'} "
            f"transports {load.get('transports', '-')} consumers {load.get('consumers', '-')} "
            f"cpu% {load.get('cpuPercent', '-')} fan-out {load.get('fanout', '-')}"
        )


def rooms(
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """List the rooms of a running server with their peers."""
    listing = call(Target.resolve(control, config_file, curve_cert, curve_server_key), "room.list", peers=True)
    if as_json:
        print_json(listing)
        return
    if not listing:
        typer.echo("no rooms")
        return
    rows = [
        [r["roomId"], r["peers"], r["transports"], r["producers"], r["consumers"], ", ".join(r.get("peerNames", []))]
        for r in listing
    ]
    console().print(table(f"{len(listing)} rooms", ["room", "peers", "transports", "producers", "consumers", "peer names"], rows))


# ---------------------------------------------------------------------- room


async def room_details(client: TureenClient, room_id: str) -> dict[str, Any]:
    """room.dump, with what only the workers know added from worker.dump: each WebRTC
    transport's selected ICE tuple, each producer stream's and consumer's bitrate."""
    dump = await client.request("room.dump", roomId=room_id)
    peers = dump["peers"]
    indexes = sorted({t["worker"] for p in peers for t in p["transports"]})
    workers: dict[int, dict[str, Any]] = {}
    missing: dict[int, str] = {}
    for index in indexes:
        try:
            workers[index] = await client.request("worker.dump", index=index)
        except ProtocolError as exc:  # being replaced: show the room without its figures
            missing[index] = exc.message
    def on_worker(index: int, key: str, id_key: str) -> dict[int, dict[str, Any]]:
        return {x[id_key]: x for x in workers.get(index, {}).get(key, [])}

    for peer in peers:
        by_id = {t["id"]: t for t in peer["transports"]}
        for transport in peer["transports"]:
            found = on_worker(transport["worker"], "transports", "transportId").get(transport["workerId"], {})
            transport["iceSelectedTuple"] = found.get("iceSelectedTuple")
        for producer in peer["producers"]:
            found = on_worker(producer["worker"], "producers", "producerId").get(producer["workerId"], {})
            producer["streams"] = [
                {k: s.get(k) for k in ("ssrc", "profile", "packets", "bitrate")} for s in found.get("streams", [])
            ]
            producer["bitrate"] = sum(s["bitrate"] or 0 for s in producer["streams"]) if found else None
        for consumer in peer["consumers"]:
            transport = by_id.get(consumer["transportId"])
            consumer["worker"] = transport["worker"] if transport else None
            found = (
                on_worker(transport["worker"], "consumers", "consumerId").get(consumer["workerId"], {})
                if transport else {}
            )
            consumer["bitrate"] = found.get("bitrate")
            consumer["packets"] = found.get("packets")
    if missing:
        dump["workersUnavailable"] = {str(i): reason for i, reason in missing.items()}
    return dump


def show_room(target: Target, room_id: str, as_json: bool) -> None:
    dump = run(target, lambda client: room_details(client, room_id))
    if as_json:
        print_json(dump)
        return
    peers = dump["peers"]
    out = console()
    out.print(
        f"room {dump['roomId']}: {len(peers)} peers, {sum(len(p['transports']) for p in peers)} transports, "
        f"{sum(len(p['producers']) for p in peers)} producers, {sum(len(p['consumers']) for p in peers)} consumers",
        highlight=False,
    )
    for index, reason in (dump.get("workersUnavailable") or {}).items():
        out.print(f"worker {index}: no figures ({reason})", highlight=False)
    if not peers:
        return
    out.print(table("peers", ["peer", "worker", "transports", "producers", "consumers", "spy"], [
        [p["name"], p["worker"], len(p["transports"]), len(p["producers"]), len(p["consumers"]), "yes" if p["spy"] else ""]
        for p in peers
    ]))
    out.print(table("transports", ["peer", "id", "type", "direction", "worker", "ICE", "DTLS", "selected tuple"], [
        # A plain transport has no ICE or DTLS: its remote address is its one tuple.
        [p["name"], t["id"], t["type"], t["direction"], t["worker"], *ice_dtls(t),
         address(t.get("iceSelectedTuple")) or address(t.get("remote"))]
        for p in peers for t in p["transports"]
    ]))
    out.print(table("producers", ["peer", "id", "kind", "worker", "paused", "streams", "bitrate"], [
        [p["name"], x["id"], x["kind"], x["worker"], "yes" if x["paused"] else "",
         " ".join(f"{s['profile']}:{kbps(s['bitrate'])}" for s in x.get("streams", [])), kbps(x.get("bitrate"))]
        for p in peers for x in p["producers"]
    ]))
    out.print(table("consumers", ["peer", "id", "kind", "of", "worker", "profile (preferred/effective)", "paused", "bitrate"], [
        [p["name"], c["id"], c["kind"], f"{c['producerPeerName']}/{c['producerId']}", c.get("worker"),
         f"{c['preferredProfile']}/{c['effectiveProfile']}", paused(c), kbps(c.get("bitrate"))]
        for p in peers for c in p["consumers"]
    ]))


def ice_dtls(transport: dict[str, Any]) -> tuple[str, str]:
    if transport["type"] == "PlainRtpTransport":
        return "-", "-"
    return transport["iceState"], transport["dtlsState"]


def paused(consumer: dict[str, Any]) -> str:
    """Who paused a consumer: the client, the app, the producer (empty: flowing)."""
    by = [who for who, key in (("client", "pausedByClient"), ("app", "pausedByApp"), ("producer", "producerPaused"))
          if consumer.get(key)]
    return ", ".join(by)


def room(
    args: Annotated[list[str], typer.Argument(metavar="ROOM | close ROOM", help="A room to show, or `close ROOM`.")],
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """`tureen room ROOM`: its peers, transports (worker, ICE/DTLS state, selected tuple),
    producers and consumers (profiles, bitrates). `tureen room close ROOM`: close it (every
    peer gets `closed`, the app `room.closed`)."""
    if len(args) == 2 and args[0] == "close":
        target = Target.resolve(control, config_file, curve_cert, curve_server_key)
        call(target, "room.close", roomId=args[1])
        if as_json:
            print_json({"roomId": args[1], "closed": True})
        else:
            typer.echo(f"room {args[1]} closed")
        return
    if len(args) != 1:
        fail(f"unknown room command {' '.join(args)!r}: use `tureen room ROOM` or `tureen room close ROOM`", 2)
    show_room(Target.resolve(control, config_file, curve_cert, curve_server_key), args[0], as_json)


@peer_app.command("kick")
def peer_kick(
    room_id: Annotated[str, typer.Argument(metavar="ROOM")],
    peer_name: Annotated[str, typer.Argument(metavar="PEER")],
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Close peer PEER of room ROOM: its client gets `closed`, the others `peerClosed`."""
    target = Target.resolve(control, config_file, curve_cert, curve_server_key)
    call(target, "peer.close", roomId=room_id, peerName=peer_name)
    if as_json:
        print_json({"roomId": room_id, "peerName": peer_name, "closed": True})
    else:
        typer.echo(f"peer {peer_name} of room {room_id} closed")


def log_level(
    level: Annotated[str, typer.Argument(metavar="LEVEL", help="debug, info, warning or error.")],
    logger: Annotated[
        str | None,
        typer.Option("--logger", metavar="NAME", help="Only this area: a logger name prefix, e.g. tureen.room."),
    ] = None,
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Set the log level of the running server and of every worker, now (until restart):
    for everything, or with --logger for one area (docs/operations.md, "Logs")."""
    try:
        level, logger = logs.check_level_change(level, logger)
    except ValueError as exc:
        fail(f"log-level: {exc}", 2)
    target = Target.resolve(control, config_file, curve_cert, curve_server_key)
    params: dict[str, Any] = {"level": level} | ({"logger": logger} if logger else {})
    result = call(target, "server.setLogLevel", **params)
    if as_json:
        print_json(result)
        return
    typer.echo(f"log level of {logger or 'everything'} set to {level} (supervisor, workers {result['workers']})")
    if result["failed"]:
        fail(f"workers {result['failed']} did not take it (restarting?): run the command again", 1)


# ---------------------------------------------------------------------- workers


@workers_app.callback(invoke_without_command=True)
def workers(
    ctx: typer.Context,
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """A table of the workers: pid, cpu, alive, uptime, load, fan-out core, restarts."""
    if ctx.invoked_subcommand is not None:
        return
    listing = call(Target.resolve(control, config_file, curve_cert, curve_server_key), "server.info")["workers"]
    if as_json:
        print_json(listing)
        return
    # Restart counts where the server reports them (server.info's `restarts` per worker).
    restarts = any("restarts" in w for w in listing)
    rows = []
    for w in listing:
        load = w.get("load") or {}
        rows.append([
            w["index"], w["pid"], w["cpu"], "yes" if w["alive"] else "DOWN", f"{w['uptime']:.0f} s",
            load.get("transports"), load.get("consumers"), load.get("cpuPercent"), load.get("fanout"),
            *([w.get("restarts")] if restarts else []),
        ])
    columns = ["worker", "pid", "cpu", "alive", "uptime", "transports", "consumers", "cpu%", "fan-out"]
    console().print(table(f"{len(listing)} workers", columns + (["restarts"] if restarts else []), rows))


@workers_app.command("scale")
def workers_scale(
    count: int,
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Grow or shrink the worker pool of a running server to COUNT workers."""
    target = Target.resolve(control, config_file, curve_cert, curve_server_key)
    with contextlib.suppress(KeyboardInterrupt):
        result = run(target, lambda client: client.scale_workers(count))
        if as_json:
            print_json(result)
        else:
            typer.echo(f"{len(result['workers'])} workers; retired: {result['retired'] or 'none'}")


@workers_app.command("list")
def workers_list(
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Print the workers of a running server as JSON (as `tureen workers --json`)."""
    print_json(call(Target.resolve(control, config_file, curve_cert, curve_server_key), "server.info")["workers"])


@workers_app.command("dump")
def workers_dump(
    index: int,
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Print worker INDEX's data-path state as JSON: transports (ICE/DTLS state, selected
    tuple, drop counters), producers, consumers (bitrates) and the forwarder's counters."""
    target = Target.resolve(control, config_file, curve_cert, curve_server_key)
    print_json(call(target, "worker.dump", index=index))


# ---------------------------------------------------------------------- hosts


def hosts(
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """A table of the hosts, the supervisor's own and the remote ones (`tureen host`): state
    (up, draining, lost), their workers, load."""
    result = call(Target.resolve(control, config_file, curve_cert, curve_server_key), "hosts.list")
    if as_json:
        print_json(result)
        return
    rows = [
        [h["name"] + (" (this)" if h.get("local") else ""), h["state"], " ".join(map(str, h["workers"])) or "-",
         h["transports"], h["cpuPercent"]]
        for h in result["hosts"]
    ]
    columns = ["host", "state", "workers", "transports", "cpu%"]
    listening = f"listening on {result['listening']}" if result["listening"] else "accepting no remote hosts: no hosts_listen"
    console().print(table(f"{len(rows)} hosts ({listening})", columns, rows))


def _drain(name: str, drain: bool, target: Target, as_json: bool) -> None:
    entry = call(target, "hosts.drain", name=name, drain=drain)
    if as_json:
        print_json(entry)
    elif drain:
        typer.echo(
            f"host {name} is {entry['state']}: no new peers go there; its {entry['transports']} transports stay "
            f"(`tureen hosts` shows them fall; `tureen host undrain {name}` ends the drain)"
        )
    else:
        typer.echo(f"host {name} is {entry['state']}: new peers may go there again")


def host_drain(
    name: Annotated[str, typer.Argument(help="The host's name, as `tureen hosts` lists it.")],
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Stop new peers going to host NAME (its peers stay): before taking it down."""
    _drain(name, True, Target.resolve(control, config_file, curve_cert, curve_server_key), as_json)


def host_undrain(
    name: Annotated[str, typer.Argument(help="The host's name, as `tureen hosts` lists it.")],
    control: ControlOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Let new peers go to host NAME again (ends `tureen host drain NAME`)."""
    _drain(name, False, Target.resolve(control, config_file, curve_cert, curve_server_key), as_json)


def register_host_commands(host_app: typer.Typer) -> None:
    """`tureen host drain NAME` and `tureen host undrain NAME`."""
    host_app.command("drain")(host_drain)
    host_app.command("undrain")(host_undrain)


def register(app: typer.Typer) -> None:
    """Add the client commands to the `tureen` app."""
    app.command()(status)
    app.command()(hosts)
    app.command()(rooms)
    app.command(context_settings={"allow_interspersed_args": True})(room)
    app.add_typer(peer_app, name="peer")
    app.command("log-level")(log_level)
    app.add_typer(workers_app, name="workers")
