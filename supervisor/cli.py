"""The `tureen` command: serve, status, rooms, workers scale."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from ..shared.client import DEFAULT_ENDPOINT, TureenClient
from ..shared.config import Config, load_config
from ..shared.errors import ProtocolError
from ..shared.logs import configure

app = typer.Typer(help="Tureen: a WebRTC SFU speaking the mediasoup v2 protocol.", no_args_is_help=True)
workers_app = typer.Typer(help="Inspect and scale the worker pool.", no_args_is_help=True)
app.add_typer(workers_app, name="workers")
log = logging.getLogger("tureen.cli")

ControlOpt = Annotated[str, typer.Option("--control", "-c", help="Control API endpoint.")]


# Shutdown (SIGTERM/SIGINT): rooms close within ROOMS_CLOSE_TIMEOUT, then the control socket
# gets CONTROL_LINGER to send the last events, then the workers stop (5 s each at most, all
# at once): well inside systemd's TimeoutStopSec (20 s).
ROOMS_CLOSE_TIMEOUT = 8.0
CONTROL_LINGER = 2.0


async def _serve(config: Config) -> None:
    import zmq.asyncio

    from .control_server import ControlServer
    from .server import Server

    # A context of our own: terminating it at the end waits (CONTROL_LINGER at most) until
    # the last events have left, which the shared instance would not.
    ctx = zmq.asyncio.Context()
    try:
        server = Server(config, ctx)
        control = ControlServer(server, config.control_endpoint)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            control.start()
            await server.start()
            log.info("tureen ready: %d workers, control API on %s", len(server.pool.links), config.control_endpoint)
            await stop.wait()
            log.info("shutting down")
        finally:
            # Peers and apps hear it first (`closed`, `room.closed`), through a socket still open.
            await server.close_rooms(ROOMS_CLOSE_TIMEOUT)
            await control.stop(linger=CONTROL_LINGER)
            await server.stop()
            log.info("stopped")
    finally:
        ctx.destroy(linger=0)  # sockets closed before keep their own linger


@app.command()
def serve(
    config_file: Annotated[Path | None, typer.Option("--config", help="TOML configuration file.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (0 = one per CPU).")] = None,
    control: Annotated[str | None, typer.Option("--control", "-c", help="Control API endpoint to bind.")] = None,
    rtc_ip: Annotated[str | None, typer.Option(help="IPv4 address media sockets bind to.")] = None,
    announced_ip: Annotated[str | None, typer.Option(help="IPv4 address announced to clients (NAT).")] = None,
    rtc_ipv6: Annotated[str | None, typer.Option(help="IPv6 address WebRTC sockets also bind to.")] = None,
    announced_ipv6: Annotated[str | None, typer.Option(help="IPv6 address announced to clients.")] = None,
    min_port: Annotated[int | None, typer.Option(help="Lowest media port.")] = None,
    max_port: Annotated[int | None, typer.Option(help="Highest media port.")] = None,
    run_dir: Annotated[str | None, typer.Option(help="Folder for worker ipc sockets.")] = None,
    pin: Annotated[bool | None, typer.Option("--pin/--no-pin", help="Pin workers to CPUs.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    fanout: Annotated[str | None, typer.Option(help="Workers' fan-out core: auto, native or python.")] = None,
    io_uring: Annotated[
        bool | None, typer.Option("--io-uring/--no-io-uring", help="Native core: send with io_uring.")
    ] = None,
) -> None:
    """Run the supervisor and its workers in the foreground until SIGINT/SIGTERM."""
    try:
        config = load_config(config_file).updated(
            workers=workers,
            control_endpoint=control,
            rtc_ipv4=rtc_ip,
            rtc_announced_ipv4=announced_ip,
            rtc_ipv6=rtc_ipv6,
            rtc_announced_ipv6=announced_ipv6,
            rtc_min_port=min_port,
            rtc_max_port=max_port,
            run_dir=run_dir,
            pin_workers=pin,
            log_level=log_level,
            fanout=fanout,
            io_uring=io_uring,
        )
        config.validate()
        configure(config.log_level, "supervisor")
    except (ValueError, OSError) as exc:
        typer.echo(f"tureen: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        asyncio.run(_serve(config))
    except RuntimeError as exc:
        typer.echo(f"tureen: {exc}", err=True)
        raise typer.Exit(1) from None


def _call(endpoint: str, method: str, **params: Any) -> Any:
    async def run() -> Any:
        async with TureenClient(endpoint, timeout=5.0) as client:
            return await client.request(method, **params)

    try:
        return asyncio.run(run())
    except ProtocolError as exc:
        typer.echo(f"tureen: {exc.message}", err=True)
        raise typer.Exit(1) from None


def _print(data: Any, as_json: bool) -> None:
    typer.echo(json.dumps(data, indent=2) if as_json else data)


@app.command()
def status(control: ControlOpt = DEFAULT_ENDPOINT, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show version, workers (pid, cpu, load) and rooms of a running server."""
    info = _call(control, "server.info")
    if as_json:
        _print(info, True)
        return
    typer.echo(f"tureen {info['version']} pid {info['pid']} up {info['uptime']} s, {info['rooms']} rooms")
    for w in info["workers"]:
        load = w.get("load") or {}
        typer.echo(
            f"  worker {w['index']}: pid {w['pid']} cpu {w['cpu']} {'up' if w['alive'] else 'DOWN'} "
            f"transports {load.get('transports', '-')} consumers {load.get('consumers', '-')} "
            f"cpu% {load.get('cpuPercent', '-')} fan-out {load.get('fanout', '-')}"
        )


@app.command()
def rooms(control: ControlOpt = DEFAULT_ENDPOINT, as_json: bool = typer.Option(False, "--json")) -> None:
    """List the rooms of a running server."""
    listing = _call(control, "room.list")
    if as_json:
        _print(listing, True)
        return
    if not listing:
        typer.echo("no rooms")
    for room in listing:
        typer.echo(
            f"{room['roomId']}: {room['peers']} peers, {room['producers']} producers, "
            f"{room['consumers']} consumers"
        )


@workers_app.command("scale")
def workers_scale(count: int, control: ControlOpt = DEFAULT_ENDPOINT) -> None:
    """Grow or shrink the worker pool of a running server to COUNT workers."""
    with contextlib.suppress(KeyboardInterrupt):
        result = _call(control, "workers.scale", count=count)
        typer.echo(f"{len(result['workers'])} workers; retired: {result['retired'] or 'none'}")


@workers_app.command("list")
def workers_list(control: ControlOpt = DEFAULT_ENDPOINT) -> None:
    """Show the workers of a running server."""
    _print(_call(control, "server.info")["workers"], True)


@workers_app.command("dump")
def workers_dump(index: int, control: ControlOpt = DEFAULT_ENDPOINT) -> None:
    """Print worker INDEX's data-path state as JSON: transports (ICE/DTLS state, selected
    tuple, drop counters), producers, consumers and the forwarder's counters."""
    _print(_call(control, "worker.dump", index=index), True)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="HTTP/WebSocket port of the demo page.")] = 8080,
    host: Annotated[str, typer.Option(help="Address the demo page listens on.")] = "127.0.0.1",
    connect: Annotated[
        str | None, typer.Option(help="Use the Tureen already running at this control endpoint.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Workers of the child `tureen serve`.")] = 2,
    rtc_ip: Annotated[str | None, typer.Option(help="rtc_ipv4 of the child `tureen serve`.")] = None,
    announced_ip: Annotated[str | None, typer.Option(help="Announced IPv4 of the child server.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the browser demo: a `tureen serve` child plus the signaling app (docs/browser.md)."""
    from ..demo.app import serve_demo

    configure(log_level, "demo")
    serve_args = ["--log-level", log_level]
    if rtc_ip:
        serve_args += ["--rtc-ip", rtc_ip]
    if announced_ip:
        serve_args += ["--announced-ip", announced_ip]
    try:
        asyncio.run(serve_demo(host, port, connect, workers, serve_args))
    except (RuntimeError, OSError) as exc:
        typer.echo(f"tureen demo: {exc}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
