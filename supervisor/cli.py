"""The `tureen` command: serve, keys, demo here; status, rooms, room, peer, workers in cli_client.py."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from tureen.shared import __version__
from tureen.shared.config import Config, ConfigError, env_name, parse_listen, resolve
from tureen.shared.curve import generate_keys, load_client_keys, load_key_pair
from tureen.shared.logs import configure
from tureen.supervisor import cli_client, sd_notify
from tureen.supervisor.cli_client import CurveCertOpt, CurveServerKeyOpt

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
    from tureen.supervisor.control_server import ControlServer
    from tureen.supervisor.server import Server

    # A context of our own: terminating it at the end waits (CONTROL_LINGER at most) until
    # the last events have left, which the shared instance would not.
    ctx = zmq.asyncio.Context()
    try:
        server = Server(config, ctx)
        control = ControlServer(server, config.control_endpoint)
        metrics = _metrics(server, control, config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        pinger: asyncio.Task[None] | None = None
        try:
            control.start()
            if metrics is not None:
                host, port = await metrics.start(config.metrics_listen) or ("", 0)
                log.info("metrics on http://%s/metrics", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
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
            if metrics is not None:
                await metrics.stop()
            await server.stop()
            log.info("stopped")
    finally:
        ctx.destroy(linger=0)  # sockets closed before keep their own linger


def _setting(name: str, *decls: str, help: str) -> Any:  # noqa: A002 - typer's own word
    """A `serve` option for the setting `name`: its help shows the default and TUREEN_<NAME>.

    typer reads the variable too (so the value is checked as the flag's type); serve() then
    hands such values back to the loader as "env", so `config show` tells the truth."""
    default = getattr(Config(), name)
    if name == "workers":
        shown = "0: one per CPU"
    elif isinstance(default, bool):
        shown = "true" if default else "false"  # as TOML and TUREEN_* write it
    else:
        shown = str(default) if default != "" else "none"
    return typer.Option(*decls, help=help, envvar=env_name(name), show_envvar=True, show_default=shown)


# serve()'s parameters and the settings they set.
SERVE_FLAGS = {
    "workers": "workers",
    "control": "control_endpoint",
    "rtc_ip": "rtc_ipv4",
    "announced_ip": "rtc_announced_ipv4",
    "rtc_ipv6": "rtc_ipv6",
    "announced_ipv6": "rtc_announced_ipv6",
    "min_port": "rtc_min_port",
    "max_port": "rtc_max_port",
    "run_dir": "run_dir",
    "pin": "pin_workers",
    "log_level": "log_level",
    "log_format": "log_format",
    "fanout": "fanout",
    "io_uring": "io_uring",
    "native_rx": "native_rx",
    "native_loop": "native_loop",
    "curve_server_cert": "curve_server_cert",
    "curve_clients": "curve_clients_dir",
    "insecure": "insecure",
    "metrics_listen": "metrics_listen",
    "hosts_listen": "hosts_listen",
    "curve_hosts": "curve_hosts_dir",
    "host_name": "host_name",
}


def _metrics(server: Any, control: Any, config: Config) -> Any:
    """The Prometheus endpoint's registry, tied to the control server; None when "off"."""
    if parse_listen(config.metrics_listen) is None:
        return None
    from tureen.supervisor.metrics import Metrics

    metrics = Metrics(server)
    control.metrics = metrics
    return metrics


@app.command()
def serve(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML configuration file (docs/configuration.md).")
    ] = None,
    workers: Annotated[int | None, _setting("workers", help="Worker processes (0 = one per CPU).")] = None,
    control: Annotated[
        str | None, _setting("control_endpoint", "--control", "-c", help="Control API endpoint to bind.")
    ] = None,
    rtc_ip: Annotated[str | None, _setting("rtc_ipv4", "--rtc-ip", help="IPv4 address media sockets bind to.")] = None,
    announced_ip: Annotated[
        str | None, _setting("rtc_announced_ipv4", "--announced-ip", help="IPv4 address announced to clients (NAT).")
    ] = None,
    rtc_ipv6: Annotated[str | None, _setting("rtc_ipv6", help="IPv6 address WebRTC sockets also bind to.")] = None,
    announced_ipv6: Annotated[
        str | None, _setting("rtc_announced_ipv6", "--announced-ipv6", help="IPv6 address announced to clients.")
    ] = None,
    min_port: Annotated[int | None, _setting("rtc_min_port", "--min-port", help="Lowest media port.")] = None,
    max_port: Annotated[int | None, _setting("rtc_max_port", "--max-port", help="Highest media port.")] = None,
    run_dir: Annotated[str | None, _setting("run_dir", help="Folder for worker ipc sockets.")] = None,
    pin: Annotated[bool | None, _setting("pin_workers", "--pin/--no-pin", help="Pin workers to CPUs.")] = None,
    log_level: Annotated[str | None, _setting("log_level", help="debug, info, warning or error.")] = None,
    log_format: Annotated[
        str | None, _setting("log_format", help="Log lines: text, or json (one object per line).")
    ] = None,
    fanout: Annotated[str | None, _setting("fanout", help="Workers' fan-out core: auto, native or python.")] = None,
    io_uring: Annotated[
        bool | None, _setting("io_uring", "--io-uring/--no-io-uring", help="Native core: send with io_uring.")
    ] = None,
    native_rx: Annotated[
        bool | None,
        _setting("native_rx", "--native-rx/--no-native-rx", help="Native core: take the common receive path in C."),
    ] = None,
    native_loop: Annotated[
        bool | None,
        _setting(
            "native_loop", "--native-loop/--no-native-loop", help="Native receive: drain ready media sockets in the loop's wait, in C."
        ),
    ] = None,
    curve_server_cert: Annotated[
        str | None,
        _setting("curve_server_cert", help="Enable CURVE: the server's secret certificate (NAME.key_secret)."),
    ] = None,
    curve_clients: Annotated[
        str | None,
        _setting(
            "curve_clients_dir", "--curve-clients", help="CURVE: folder of the allowed clients' public certificates (*.key)."
        ),
    ] = None,
    insecure: Annotated[
        bool | None,
        _setting("insecure", "--insecure", help="Allow a control endpoint reachable from the network without CURVE."),
    ] = None,
    metrics_listen: Annotated[
        str | None,
        _setting("metrics_listen", help="HOST:PORT of the Prometheus /metrics endpoint, or off."),
    ] = None,
    hosts_listen: Annotated[
        str | None,
        _setting("hosts_listen", help="tcp://ADDR:PORT remote hosts (`tureen host`) connect to (CURVE)."),
    ] = None,
    curve_hosts: Annotated[
        str | None,
        _setting("curve_hosts_dir", "--curve-hosts", help="Folder of the allowed hosts' public certificates (*.key)."),
    ] = None,
    host_name: Annotated[
        str | None,
        _setting("host_name", help="The name of this machine among the hosts (`tureen hosts`, drain, peer.place)."),
    ] = None,
) -> None:
    """Run the supervisor and its workers in the foreground until SIGINT/SIGTERM."""
    params = locals()
    try:
        config = _resolve_serve(ctx, config_file, {SERVE_FLAGS[p]: params[p] for p in SERVE_FLAGS})[0]
        config.validate_control_security()
        if config.curve_server_cert:
            from tureen.supervisor.curve_auth import check_clients_dir

            load_key_pair(config.curve_server_cert)
            check_clients_dir(config.curve_clients_dir)
            if config.curve_hosts_dir:
                check_clients_dir(config.curve_hosts_dir)
        configure(config.log_level, "supervisor", config.log_format)
    except (ValueError, OSError) as exc:
        _config_errors(exc, "tureen: configuration error")
    try:
        asyncio.run(_serve(config))
    except RuntimeError as exc:
        typer.echo(f"tureen: {exc}", err=True)
        raise typer.Exit(1) from None


# --- configuration: `serve`'s sources and `tureen config check/show` (issue 13) -----------

config_app = typer.Typer(help="Check and show the configuration (docs/configuration.md).", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _resolve_serve(
    ctx: typer.Context | None, config_file: Path | None, flags: dict[str, Any]
) -> tuple[Config, dict[str, str]]:
    """The effective settings of `serve` and their sources. A value typer took from TUREEN_*
    is left to the loader, which reads the same variable: its source is "env", not "flag"."""
    if ctx is not None:
        from_env = {
            SERVE_FLAGS[name]
            for name in SERVE_FLAGS
            # By name: typer's click (its own copy in recent typer) has ParameterSource.ENVIRONMENT.
            if getattr(ctx.get_parameter_source(name), "name", None) == "ENVIRONMENT"
        }
        flags = {k: v for k, v in flags.items() if k not in from_env}
    return resolve(config_file, flags=flags)


def _config_errors(exc: Exception, prefix: str) -> NoReturn:
    """Print each wrong setting on a line of its own (no traceback) and exit 2."""
    for line in exc.errors if isinstance(exc, ConfigError) else [str(exc)]:
        typer.echo(f"{prefix}: {line}", err=True)
    raise typer.Exit(2)


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="TOML configuration file to check.")],
) -> None:
    """Check FILE (types and ranges of every setting, with TUREEN_* applied as `serve` would):
    print "ok" and exit 0, or print each wrong setting and exit 2."""
    try:
        config = resolve(file)[0]
        config.validate_control_security()
    except ValueError as exc:
        _config_errors(exc, "tureen config")
    typer.echo("ok")


@config_app.command("show")
def config_show(
    config_file: Annotated[Path | None, typer.Option("--config", help="TOML configuration file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: {setting: {value, source}}.")] = False,
) -> None:
    """Show the effective settings (defaults, then --config FILE, then TUREEN_*) and where each
    came from: default, file or env."""
    try:
        config, sources = resolve(config_file)
    except ValueError as exc:
        _config_errors(exc, "tureen config")
    values = config.to_dict()
    if as_json:
        typer.echo(json.dumps({k: {"value": v, "source": sources[k]} for k, v in values.items()}, indent=2))
        return
    width = max(map(len, values))
    for name, value in values.items():
        typer.echo(f"{name:<{width}}  {json.dumps(value):<24}  {sources[name]}")


# --- end of the configuration block ----------------------------------------------------


host_app = typer.Typer(
    help="Run a remote host (`tureen host --connect ... --name ...`), or drain one of a running server (`tureen host drain NAME`).",
)
app.add_typer(host_app, name="host")
# `tureen host drain NAME`, `tureen host undrain NAME`: against a running server (cli_client.py).
cli_client.register_host_commands(host_app)


@host_app.callback(invoke_without_command=True)
def host(
    ctx: typer.Context,
    connect: Annotated[str | None, typer.Option(help="The supervisor's hosts endpoint, tcp://ADDR:PORT (its --hosts-listen).")] = None,
    name: Annotated[
        str | None, typer.Option(help="This host's name: the name of its key file in the supervisor's hosts folder (h1.key: h1).")
    ] = None,
    curve_cert: Annotated[
        str | None, typer.Option(help="This host's secret certificate (NAME.key_secret; its .key is in the supervisor's --curve-hosts).")
    ] = None,
    curve_server_key: Annotated[
        str | None, typer.Option(help="The supervisor's public key: its certificate file or the 40 Z85 characters.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (0 = one per CPU).")] = 0,
    rtc_ipv4: Annotated[str, typer.Option("--rtc-ipv4", help="IPv4 address this host's media sockets bind to.")] = "127.0.0.1",
    rtc_announced_ipv4: Annotated[
        str | None, typer.Option("--rtc-announced-ipv4", help="IPv4 address announced to clients (NAT).")
    ] = None,
    min_port: Annotated[int | None, typer.Option(help="Lowest media port.")] = None,
    max_port: Annotated[int | None, typer.Option(help="Highest media port.")] = None,
    run_dir: Annotated[str | None, typer.Option(help="Folder for this host's worker ipc sockets.")] = None,
    pin: Annotated[bool, typer.Option("--pin/--no-pin", help="Pin workers to CPUs.")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run a remote host: start pinned workers here and put them at the disposal of the
    supervisor at --connect, over a CURVE link (docs/operations.md, "Hosts"). Runs until
    SIGINT/SIGTERM; a lost supervisor stops the workers, and the host registers afresh.
    Under systemd (Type=notify, systemd/tureen-host.service): READY once the workers are up,
    STATUS says whether it is registered, WATCHDOG from the event loop, STOPPING at the end."""
    if ctx.invoked_subcommand is not None:
        return
    from tureen.shared.endpoint import parse_endpoint

    given = {"--connect": connect, "--name": name, "--curve-cert": curve_cert, "--curve-server-key": curve_server_key}
    missing = [flag for flag, value in given.items() if value is None]
    if missing:
        typer.echo(f"tureen host: missing {', '.join(missing)} (`tureen host --help`)", err=True)
        raise typer.Exit(2)
    assert connect is not None and name is not None and curve_cert is not None and curve_server_key is not None
    try:
        parse_endpoint(connect, "--connect", schemes=("tcp",))
        if not name or len(name) > 64:
            raise ValueError(f"--name must be 1..64 characters, got {name!r}")
        keys = load_client_keys(curve_cert, curve_server_key)
        assert keys is not None  # both given
        config = Config().updated(
            workers=workers, rtc_ipv4=rtc_ipv4, rtc_announced_ipv4=rtc_announced_ipv4, rtc_min_port=min_port,
            rtc_max_port=max_port, run_dir=run_dir, pin_workers=pin, log_level=log_level,
        )
        config.validate()
        configure(config.log_level, f"host[{name}]", config.log_format)
    except (ValueError, OSError) as exc:
        _config_errors(exc, "tureen host")

    async def run() -> None:
        from tureen.supervisor.host_agent import HostAgent

        agent = HostAgent(config, connect, name, config.resolved_workers(), keys)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            sd_notify.notify("STOPPING=1")  # systemd: the stop has begun (workers stop next)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping)
        log.info("host %s: %d workers, supervisor at %s", name, config.resolved_workers(), connect)
        interval = sd_notify.watchdog_interval()
        pinger = loop.create_task(sd_notify.watchdog(interval), name="systemd watchdog") if interval else None
        try:
            await agent.run(stop)
        finally:
            if pinger is not None:
                pinger.cancel()
        log.info("host %s stopped", name)

    try:
        asyncio.run(run())
    except RuntimeError as exc:
        typer.echo(f"tureen host: {exc}", err=True)
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
    # Imported here, never at module level: the product CLI runs without the demo package
    # (the demo depends on tureen.shared, nothing in the product depends on the demo).
    try:
        from tureen.demo.app import serve_demo
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("tureen.demo"):
            raise
        typer.echo(
            "tureen demo: the browser demo (tureen.demo) is not installed with this Tureen; "
            "install Tureen from its repository (pip install .) to get it",
            err=True,
        )
        raise typer.Exit(2) from None

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
