"""Configuration of a Tureen server: defaults, a TOML file, TUREEN_* environment, CLI flags.

Later sources override earlier ones. Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tureen.shared.curve import endpoint_is_local
from tureen.shared.endpoint import parse_endpoint

FANOUTS = ("auto", "native", "python")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
MAX_WORKERS = 1024
# Where a setting's value came from, in the order they override each other.
SOURCES = ("default", "file", "env", "flag")
# The quota keys of Config (each a number >= 1).
LIMITS = (
    "max_rooms",
    "max_peers_per_room",
    "max_transports_per_peer",
    "max_producers_per_peer",
    "max_consumers_per_peer",
    "max_app_data_bytes",
    "max_requests_per_second",
    "max_requests_burst",
)


class ConfigError(ValueError):
    """One or more wrong settings; str() lists them, one a line, each naming its field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Config:
    # ZeroMQ endpoint of the control API (ROUTER): tcp://HOST:PORT or ipc://PATH, checked
    # strictly at start (shared/endpoint.py).
    control_endpoint: str = "tcp://127.0.0.1:4477"
    # Number of worker processes; 0 = one per CPU.
    workers: int = 0
    # Pin each worker to one CPU (psutil cpu_affinity); off where affinity is not allowed.
    pin_workers: bool = True
    # Folder for the supervisor <-> worker ipc:// sockets; empty = a fresh temporary folder
    # (claimed, locked and cleaned by supervisor/run_dir.py).
    run_dir: str = ""
    # Address the media sockets bind to, and the address announced to clients (NAT).
    rtc_ipv4: str = "127.0.0.1"
    rtc_announced_ipv4: str = ""
    rtc_ipv6: str = ""
    rtc_announced_ipv6: str = ""
    # UDP/TCP port range of media sockets, inclusive.
    rtc_min_port: int = 40000
    rtc_max_port: int = 49999
    # Bitrate (bps) announced with REMB to every sender of video, per transport: browsers
    # ramp their send bitrate up to it (and down on loss, from our receiver reports).
    max_incoming_bitrate: int = 2_000_000
    # A new room's room.audioLevels (and room.activeSpeaker) interval in ms, 100..60000;
    # 0 = off until the app turns it on (room.setAudioLevels). mediasoup v2 used 500.
    audio_levels_interval: int = 0
    # The workers' fan-out core: "auto" (the native core when it was built at install,
    # else Python), "native" (refuse to start without it) or "python" (docs/benchmarks.md).
    fanout: str = "auto"
    # Whether the native core sends with io_uring where the kernel allows it (one system
    # call per flush for all consumers); false: one sendmmsg per consumer.
    io_uring: bool = True
    # Whether the native core also takes the common case of the receive path (a known SSRC,
    # plain header, in order, no start point awaited: workers/_native.c "Receiver"); false:
    # every packet through the Python receive path (docs/internals.md).
    native_rx: bool = True
    # Whether, with the native receive, the worker's event loop waits natively too
    # (workers/native_loop.py): a transport's connected socket is drained and flushed in C
    # when ready, without asyncio's Python per readiness; false: asyncio's own selector.
    native_loop: bool = True
    # The scheduler slice each worker asks for (sched_setattr's sched_runtime, SCHED_OTHER,
    # Linux >= 6.12), in µs: 100..100000, or 0 = the kernel's default. A short slice lets a
    # worker woken by a packet (the cross-worker pipe's destination) preempt a busy task on
    # its core sooner (docs/benchmarks.md, "The pipe hop": 100 cut the hop's p50 about 2.5x).
    # Refused by the kernel: logged, the worker runs with the kernel's default.
    worker_slice_us: int = 100
    # How long the supervisor waits for a worker's reply before failing the request (s).
    worker_timeout: float = 10.0
    # Faults (docs/operations.md): a worker that answers no heartbeat (one a second) for
    # this long is treated as dead: killed, its requests failed, its peers told, replaced.
    worker_heartbeat_timeout: float = 5.0
    # Limits (docs/configuration.md, "Limits"): what one app connection, room or peer may
    # take. Past one, the request fails with code `limit` and changes nothing. The defaults
    # stop one client from taking every port or filling memory, and leave a real conference
    # (hundreds of peers, a few transports and producers each) far from them.
    max_rooms: int = 1000
    max_peers_per_room: int = 500
    max_transports_per_peer: int = 8
    max_producers_per_peer: int = 16
    max_consumers_per_peer: int = 1000
    max_app_data_bytes: int = 16 * 1024
    max_requests_per_second: float = 1000.0  # per control connection (token bucket)
    max_requests_burst: int = 5000  # an app relaying a join storm of a few hundred peers
    # Log level name: debug, info, warning, error.
    log_level: str = "info"
    # Log lines: "text" (one readable line each) or "json" (one JSON object per line, with
    # ts, level, process, logger, message and room/peer/ids when known; docs/operations.md).
    log_format: str = "text"
    # Prometheus metrics (docs/operations.md, "Metrics"): HOST:PORT of the supervisor's
    # /metrics endpoint ([::1]:PORT for IPv6; port 0 = any free port, logged), or "off".
    metrics_listen: str = "127.0.0.1:9477"
    # Authentication of the control API with ZeroMQ CURVE (docs/security.md). The server's
    # secret certificate (NAME.key_secret from `tureen keys generate`) and the folder of the
    # public certificates (*.key) of the clients it accepts, re-read on each new connection;
    # both or neither. Without them, a control endpoint reachable from the network is
    # refused unless `insecure` is true.
    curve_server_cert: str = ""
    curve_clients_dir: str = ""
    insecure: bool = False
    # Remote hosts (docs/operations.md, "Hosts"): the tcp:// endpoint `tureen host` processes
    # connect to ("" = none), always with CURVE: the server's key pair is curve_server_cert,
    # and curve_hosts_dir the folder of the public certificates (*.key) of the hosts accepted.
    hosts_listen: str = ""
    curve_hosts_dir: str = ""
    # The supervisor's own machine is a host too (hosts.list, drain, peer.place, placement):
    # its name, which no remote host may take.
    host_name: str = "local"
    # Placement keeps a room on the hosts that already serve it until they are busy: a host
    # whose idlest worker measures this much CPU use (percent of one core) or more.
    host_busy_cpu_percent: float = 70.0
    # Extra, free-form settings for later features (kept so old files keep loading).
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def problems(self) -> list[str]:
        """Every wrong value, each naming its field: types first, then ranges and forms."""
        errors = type_problems(self.to_dict())
        if errors:
            return errors  # ranges of values of the wrong type would only repeat them
        try:
            # Read strictly before anything binds: libzmq would bind `tcp://127.0.0.1:4477}`.
            parse_endpoint(self.control_endpoint, "control_endpoint")
        except ValueError as exc:
            errors.append(str(exc))
        if not (1 <= self.rtc_min_port <= self.rtc_max_port <= 65535):
            errors.append(
                f"rtc port range {self.rtc_min_port}-{self.rtc_max_port} is invalid: "
                "need 1 <= rtc_min_port <= rtc_max_port <= 65535"
            )
        if not 30_000 <= self.max_incoming_bitrate <= 100_000_000:
            errors.append(
                f"max_incoming_bitrate must be 30000..100000000 bps, got {self.max_incoming_bitrate}"
            )
        if self.audio_levels_interval != 0 and not 100 <= self.audio_levels_interval <= 60_000:
            errors.append(
                f"audio_levels_interval must be 0 (off) or 100..60000 ms, got {self.audio_levels_interval}"
            )
        if self.fanout not in FANOUTS:
            errors.append(f"fanout must be one of {', '.join(FANOUTS)}, got {self.fanout!r}")
        if self.log_level.lower() not in LOG_LEVELS:
            errors.append(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            errors.append(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.worker_slice_us != 0 and not 100 <= self.worker_slice_us <= 100_000:
            errors.append(
                f"worker_slice_us must be 0 (the kernel's default) or 100..100000 µs "
                f"(the range the kernel takes), got {self.worker_slice_us}"
            )
        if not 0.5 <= self.worker_heartbeat_timeout <= 600:
            errors.append(f"worker_heartbeat_timeout must be 0.5..600 s, got {self.worker_heartbeat_timeout}")
        if not 0.1 <= self.worker_timeout <= 600:
            errors.append(f"worker_timeout must be 0.1..600 s, got {self.worker_timeout}")
        if not 0 < len(self.host_name) <= 64:
            errors.append(f"host_name must be 1..64 characters, got {self.host_name!r}")
        if not 1 <= self.host_busy_cpu_percent <= 100:
            errors.append(f"host_busy_cpu_percent must be 1..100 (percent of one core), got {self.host_busy_cpu_percent}")
        if not 0 <= self.workers <= MAX_WORKERS:
            errors.append(f"workers must be 0..{MAX_WORKERS} (0 = one per CPU), got {self.workers}")
        for name, family in (
            ("rtc_ipv4", 4),
            ("rtc_announced_ipv4", 4),
            ("rtc_ipv6", 6),
            ("rtc_announced_ipv6", 6),
        ):
            value = getattr(self, name)
            if value:
                try:
                    ok = ipaddress.ip_address(value).version == family
                except ValueError:
                    ok = False
                if not ok:
                    errors.append(f"{name} must be an IPv{family} address, got {value!r}")
        for name in LIMITS:
            value = getattr(self, name)
            if value < 1:
                errors.append(f"{name} must be a number >= 1, got {value!r}")
        if self.max_app_data_bytes < 64:
            errors.append(f"max_app_data_bytes must be >= 64, got {self.max_app_data_bytes}")
        if not self.rtc_ipv4 and not self.rtc_ipv6:
            errors.append("set rtc_ipv4 or rtc_ipv6: media sockets need an address to bind")
        try:
            parse_listen(self.metrics_listen)
        except ValueError as exc:
            errors.append(str(exc))
        if self.hosts_listen:
            try:
                parse_endpoint(self.hosts_listen, "hosts_listen", schemes=("tcp",))
            except ValueError as exc:
                errors.append(str(exc))
        return errors

    def validate(self) -> None:
        """Raise ConfigError listing every wrong value (problems()), or return."""
        errors = self.problems()
        if errors:
            raise ConfigError(errors)

    def validate_control_security(self) -> None:
        """CURVE settings complete, and no unauthenticated control API on the network.

        Separate from validate(): `tureen serve` runs it once every source (file, env, flags)
        is merged, so that e.g. a file's endpoint and a flag's --insecure go together."""
        if bool(self.curve_server_cert) != bool(self.curve_clients_dir):
            raise ValueError(
                "CURVE needs both curve_server_cert (--curve-server-cert) and curve_clients_dir "
                "(--curve-clients), or neither"
            )
        if self.hosts_listen and not (self.curve_server_cert and self.curve_hosts_dir):
            raise ValueError(
                "hosts_listen (--hosts-listen) needs CURVE: the server's key pair in curve_server_cert "
                "(--curve-server-cert) and the hosts' public keys in curve_hosts_dir (--curve-hosts); "
                "docs/security.md, \"The host link\""
            )
        if not self.curve_server_cert and not self.insecure and not endpoint_is_local(self.control_endpoint):
            raise ValueError(
                f"control_endpoint {self.control_endpoint} can be reached from the network but the "
                "control API has no authentication: set curve_server_cert and curve_clients_dir "
                "(--curve-server-cert, --curve-clients; docs/security.md), bind a loopback or ipc:// "
                "address, or set insecure = true (--insecure) if a firewall protects it"
            )

    def updated(self, **changes: Any) -> Config:
        """A copy with the given non-None fields replaced (CLI flags pass None when unset)."""
        known = {f.name for f in dataclasses.fields(self)}
        clean = {k: v for k, v in changes.items() if v is not None}
        unknown = set(clean) - known
        if unknown:
            raise ConfigError([f"unknown configuration keys: {', '.join(sorted(unknown))} (docs/configuration.md lists them)"])
        errors = type_problems(clean)
        if errors:
            raise ConfigError(errors)
        # An integer where a float is expected (TOML's `worker_timeout = 10`) is a float.
        clean = {k: float(v) if _KINDS[k] is float else v for k, v in clean.items()}
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_KINDS: dict[str, type] = {f.name: type(getattr(Config(), f.name)) for f in dataclasses.fields(Config)}
_KIND_NAMES = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string", dict: "a table"}


def _type_ok(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def type_problems(values: dict[str, Any]) -> list[str]:
    """For each known field of `values` whose value has the wrong type: a line naming the field,
    the type expected and the value given (TOML `workers = "4"` is a string, not an integer)."""
    return [
        f"{name} must be {_KIND_NAMES[_KINDS[name]]}, got {value!r} ({type(value).__name__})"
        for name, value in values.items()
        if name in _KINDS and not _type_ok(_KINDS[name], value)
    ]


def parse_listen(value: str) -> tuple[str, int] | None:
    """`metrics_listen`: None for "off", else (host, port) from HOST:PORT or [IPv6]:PORT."""
    if value.strip().lower() == "off":
        return None
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    why = ""
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        why = "need HOST:PORT with a port 0..65535"
    else:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                why = "HOST must be an IP address or localhost"
    if why:
        raise ValueError(f"metrics_listen must be HOST:PORT ([::1]:PORT for IPv6) or off, got {value!r}: {why}")
    return host, int(port)


def env_name(field_name: str) -> str:
    """The environment variable of a setting: TUREEN_<FIELD>."""
    return f"TUREEN_{field_name.upper()}"


def _coerce(name: str, value: str) -> Any:
    """An environment variable's text as the setting's type, or ValueError naming both."""
    kind = _KINDS[name]
    var = env_name(name)
    text = value.strip()
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{var}={value!r}: {name} must be a boolean (true/false, yes/no, on/off, 1/0)")
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ValueError(f"{var}={value!r}: {name} must be {_KIND_NAMES[kind]}") from None
    return value


def _read_file(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it: {exc.strerror or exc}"]) from None
    unknown = sorted(set(data) - set(_KINDS))
    errors = [f"{path}: unknown setting {key!r} (docs/configuration.md lists them)" for key in unknown]
    errors += [f"{path}: {line}" for line in type_problems(data)]
    if errors:
        raise ConfigError(errors)
    return data


def resolve(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> tuple[Config, dict[str, str]]:
    """The effective configuration and, per field, where its value came from ("default",
    "file", "env" or "flag"). Later sources override earlier ones; every wrong value of every
    source is gathered into one ConfigError (the file's, the environment's, then the ranges)."""
    sources = dict.fromkeys(_KINDS, "default")
    config = Config()
    errors: list[str] = []
    if path:
        data = _read_file(path)
        config = config.updated(**data)
        sources.update(dict.fromkeys(data, "file"))
    env = os.environ if env is None else env
    overrides: dict[str, Any] = {}
    for name in _KINDS:
        var = env_name(name)
        if var in env and name != "extra":
            try:
                overrides[name] = _coerce(name, env[var])
            except ValueError as exc:
                errors.append(str(exc))
    if errors:
        raise ConfigError(errors)
    config = config.updated(**overrides)
    sources.update(dict.fromkeys(overrides, "env"))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    config = config.updated(**given)
    sources.update(dict.fromkeys(given, "flag"))
    config.validate()
    return config, sources


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file at `path` (if any), then TUREEN_<FIELD> variables; checked
    (ConfigError, a ValueError, naming each wrong field)."""
    return resolve(path, env)[0]
