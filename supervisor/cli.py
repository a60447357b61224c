"""The `tureen` command: serve, keys, demo here; status, rooms, room, peer, workers in cli_client.py."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from ..shared import __version__
from ..shared.config import Config, load_config
from ..shared.curve import generate_keys, load_client_keys, load_key_pair
from ..shared.logs import configure
from . import cli_client, sd_notify
from .cli_client import CurveCertOpt, CurveServerKeyOpt

app = typer.Typer(help="Tureen: a WebRTC SFU speaking the mediasoup v2 protocol.", no_args_is_help=True)
# status, rooms, room, peer, workers: the operator's commands against a running server.
cli_client.register(app)
keys_app = typer.Typer(help="CURVE keys for the control API (docs/security.md).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
log = logging.getLogger("tureen.cli")



def _version(value: bool) -> None:
    if value:
        typer.echo(f"tureen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Tureen: a WebRTC SFU speaking the mediasoup v2 protocol."""


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
        pinger: asyncio.Task[None] | None = None
        try:
            control.start()
            await server.start()
            log.info("tureen ready: %d workers, control API on %s", len(server.pool.links), config.control_endpoint)
            # systemd (Type=notify): every worker is up and the control API answers.
            sd_notify.notify(f"READY=1\nSTATUS={len(server.pool.links)} workers, control API on {config.control_endpoint}")
            interval = sd_notify.watchdog_interval()
            if interval is not None:
                pinger = loop.create_task(sd_notify.watchdog(interval), name="systemd watchdog")
            await stop.wait()
            log.info("shutting down")
            sd_notify.notify("STOPPING=1")
        finally:
            if pinger is not None:
                pinger.cancel()
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
    curve_server_cert: Annotated[
        str | None, typer.Option(help="Enable CURVE: the server's secret certificate (NAME.key_secret).")
    ] = None,
    curve_clients: Annotated[
        str | None, typer.Option(help="CURVE: folder of the allowed clients' public certificates (*.key).")
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option("--insecure", help="Allow a control endpoint reachable from the network without CURVE."),
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
            curve_server_cert=curve_server_cert,
            curve_clients_dir=curve_clients,
            insecure=insecure,
        )
        config.validate()
        config.validate_control_security()
        if config.curve_server_cert:
            from .curve_auth import check_clients_dir

            load_key_pair(config.curve_server_cert)
            check_clients_dir(config.curve_clients_dir)
        configure(config.log_level, "supervisor")
    except (ValueError, OSError) as exc:
        typer.echo(f"tureen: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        asyncio.run(_serve(config))
    except RuntimeError as exc:
        typer.echo(f"tureen: {exc}", err=True)
        raise typer.Exit(1) from None


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the key pair into (created 0700).")],
    name: Annotated[str, typer.Option(help="File name of the pair: NAME.key and NAME.key_secret.")] = "tureen",
) -> None:
    """Write a CURVE key pair in ZeroMQ's certificate format: NAME.key (public) and
    NAME.key_secret (secret, mode 0600). Never overwrites."""
    try:
        public, secret = generate_keys(out, name)
    except (ValueError, OSError) as exc:
        typer.echo(f"tureen keys: {exc}", err=True)
        raise typer.Exit(2) from None
    key = load_key_pair(secret)[0].decode()
    typer.echo(
        f"public key  {public}  ({key})\n"
        f"secret key  {secret}  (mode 600: keep it on this machine only)\n"
        "For the server: tureen serve --curve-server-cert SECRET --curve-clients CLIENTS_DIR,\n"
        "  and give the public key to the clients (--curve-server-key).\n"
        "For a client: copy the public .key file into the server's CLIENTS_DIR (takes effect on\n"
        "  the next connection), and use --curve-cert SECRET --curve-server-key SERVER_KEY.\n"
        "See docs/security.md."
    )


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
    curve_cert: CurveCertOpt = None,
    curve_server_key: CurveServerKeyOpt = None,
) -> None:
    """Run the browser demo: a `tureen serve` child plus the signaling app (docs/browser.md).
    The --curve-* keys are used with --connect only (the child server listens on loopback)."""
    from ..demo.app import serve_demo

    if not connect:
        curve_cert = curve_server_key = None
    try:
        load_client_keys(curve_cert, curve_server_key)  # a bad key stops here, before anything runs
    except (ValueError, OSError) as exc:
        typer.echo(f"tureen demo: {exc}", err=True)
        raise typer.Exit(2) from None

    configure(log_level, "demo")
    serve_args = ["--log-level", log_level]
    if rtc_ip:
        serve_args += ["--rtc-ip", rtc_ip]
    if announced_ip:
        serve_args += ["--announced-ip", announced_ip]
    try:
        asyncio.run(serve_demo(host, port, connect, workers, serve_args, curve_cert=curve_cert, curve_server_key=curve_server_key))
    except (RuntimeError, OSError) as exc:
        typer.echo(f"tureen demo: {exc}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
