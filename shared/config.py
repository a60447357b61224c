"""Configuration of a Tureen server: defaults, a TOML file, TUREEN_* environment, CLI flags.

Later sources override earlier ones. Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .curve import endpoint_is_local
from .endpoint import parse_endpoint

FANOUTS = ("auto", "native", "python")
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
    # The workers' fan-out core: "auto" (the native core when it was built at install,
    # else Python), "native" (refuse to start without it) or "python" (docs/benchmarks.md).
    fanout: str = "auto"
    # Whether the native core sends with io_uring where the kernel allows it (one system
    # call per flush for all consumers); false: one sendmmsg per consumer.
    io_uring: bool = True
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
    max_requests_burst: int = 2000
    # Log level name: debug, info, warning, error.
    log_level: str = "info"
    # Authentication of the control API with ZeroMQ CURVE (docs/security.md). The server's
    # secret certificate (NAME.key_secret from `tureen keys generate`) and the folder of the
    # public certificates (*.key) of the clients it accepts, re-read on each new connection;
    # both or neither. Without them, a control endpoint reachable from the network is
    # refused unless `insecure` is true.
    curve_server_cert: str = ""
    curve_clients_dir: str = ""
    insecure: bool = False
    # Extra, free-form settings for later features (kept so old files keep loading).
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def validate(self) -> None:
        # Read strictly before anything binds: libzmq would bind `tcp://127.0.0.1:4477}`.
        parse_endpoint(self.control_endpoint, "control_endpoint")
        if not (1 <= self.rtc_min_port <= self.rtc_max_port <= 65535):
            raise ValueError(
                f"rtc port range {self.rtc_min_port}-{self.rtc_max_port} is invalid: "
                "need 1 <= rtc_min_port <= rtc_max_port <= 65535"
            )
        if not 30_000 <= self.max_incoming_bitrate <= 100_000_000:
            raise ValueError(
                f"max_incoming_bitrate must be 30000..100000000 bps, got {self.max_incoming_bitrate}"
            )
        if self.fanout not in FANOUTS:
            raise ValueError(f"fanout must be one of {', '.join(FANOUTS)}, got {self.fanout!r}")
        if not 0.5 <= self.worker_heartbeat_timeout <= 600:
            raise ValueError(
                f"worker_heartbeat_timeout must be 0.5..600 s, got {self.worker_heartbeat_timeout}"
            )
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per CPU), got {self.workers}")
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
                    raise ValueError(f"{name} must be an IPv{family} address, got {value!r}")
        for name in LIMITS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
                raise ValueError(f"{name} must be a number >= 1, got {value!r}")
        if self.max_app_data_bytes < 64:
            raise ValueError(f"max_app_data_bytes must be >= 64, got {self.max_app_data_bytes}")
        if not self.rtc_ipv4 and not self.rtc_ipv6:
            raise ValueError("set rtc_ipv4 or rtc_ipv6: media sockets need an address to bind")

    def validate_control_security(self) -> None:
        """CURVE settings complete, and no unauthenticated control API on the network.

        Separate from validate(): `tureen serve` runs it once every source (file, env, flags)
        is merged, so that e.g. a file's endpoint and a flag's --insecure go together."""
        if bool(self.curve_server_cert) != bool(self.curve_clients_dir):
            raise ValueError(
                "CURVE needs both curve_server_cert (--curve-server-cert) and curve_clients_dir "
                "(--curve-clients), or neither"
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
            raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, value: str, template: Any) -> Any:
    if isinstance(template, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"TUREEN_{name.upper()}={value!r} is not a boolean")
    if isinstance(template, int):
        return int(value)
    if isinstance(template, float):
        return float(value)
    return value


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Defaults, then the TOML file at `path` (if any), then TUREEN_<FIELD> variables."""
    config = Config()
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        config = config.updated(**data)
    env = os.environ if env is None else env
    overrides: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        key = f"TUREEN_{f.name.upper()}"
        if key in env and f.name != "extra":
            overrides[f.name] = _coerce(f.name, env[key], getattr(config, f.name))
    config = config.updated(**overrides)
    config.validate()
    return config
