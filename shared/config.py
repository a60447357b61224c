"""Configuration of a Tureen server: defaults, a TOML file, TUREEN_* environment, CLI flags.

Later sources override earlier ones. Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FANOUTS = ("auto", "native", "python")


@dataclass
class Config:
    # ZeroMQ endpoint of the control API (ROUTER). tcp:// or ipc://.
    control_endpoint: str = "tcp://127.0.0.1:4477"
    # Number of worker processes; 0 = one per CPU.
    workers: int = 0
    # Pin each worker to one CPU (psutil cpu_affinity); off where affinity is not allowed.
    pin_workers: bool = True
    # Folder for the supervisor <-> worker ipc:// sockets; empty = a fresh temporary folder.
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
    # Log level name: debug, info, warning, error.
    log_level: str = "info"
    # Extra, free-form settings for later features (kept so old files keep loading).
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def resolved_run_dir(self) -> Path:
        if self.run_dir:
            path = Path(self.run_dir)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return Path(tempfile.mkdtemp(prefix="tureen-"))

    def validate(self) -> None:
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
        if not self.rtc_ipv4 and not self.rtc_ipv6:
            raise ValueError("set rtc_ipv4 or rtc_ipv6: media sockets need an address to bind")

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
