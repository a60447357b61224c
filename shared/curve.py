"""ZeroMQ CURVE keys for the control API: generating, loading, and which endpoints need them.

Keys are stored in ZeroMQ's certificate format (`zmq.auth`, the same files czmq and pyzmq
write): NAME.key holds the public key, NAME.key_secret the public and the secret key. Keys
are the Z85 text form (40 characters) that libzmq's CURVE options take. docs/security.md
explains how the server, the clients and the operator use them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from tureen.shared.endpoint import ALL_SCHEMES, parse_endpoint
from zmq.utils import z85

Z85_KEY = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


@dataclass(frozen=True)
class ClientKeys:
    """What a client socket needs for CURVE: its own key pair and the server's public key."""

    public: bytes
    secret: bytes
    server_public: bytes

    def apply(self, sock: zmq.Socket) -> None:  # type: ignore[type-arg]
        """Make `sock` a CURVE client (call before connect)."""
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_serverkey = self.server_public


def _check_key(key: bytes | None, what: str) -> bytes:
    if key is None or not Z85_KEY.match(key):
        raise ValueError(f"{what} is not a CURVE key (40 Z85 characters)")
    z85.decode(key)  # raises on characters Z85 does not know
    return key


def load_key_pair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """(public, secret) from a secret certificate (NAME.key_secret). Raises ValueError/OSError
    with a sentence that says which file to give instead."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CURVE certificate {path} does not exist (make one with `tureen keys generate`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except ValueError as exc:
        raise ValueError(f"{path} is not a ZeroMQ certificate: {exc}") from None
    if secret is None:
        raise ValueError(
            f"{path} holds only a public key: give the secret certificate (the .key_secret file)"
        )
    return _check_key(public, f"the public key in {path}"), _check_key(secret, f"the secret key in {path}")


def load_public_key(value: str) -> bytes:
    """A public key given either as its 40 Z85 characters or as a certificate file (public or
    secret: only the public key is read)."""
    raw = value.strip().encode()
    if Z85_KEY.match(raw) and not Path(value).exists():
        return _check_key(raw, "the server key")
    path = Path(value)
    if not path.is_file():
        raise ValueError(
            f"server key {value!r} is neither a CURVE public key (40 Z85 characters) nor a "
            "certificate file: give the server's NAME.key file or its public key"
        )
    try:
        public, _ = zmq.auth.load_certificate(path)
    except ValueError as exc:
        raise ValueError(f"{path} is not a ZeroMQ certificate: {exc}") from None
    return _check_key(public, f"the public key in {path}")


def load_client_keys(cert: str | None, server_key: str | None) -> ClientKeys | None:
    """The CURVE settings of a client, or None when neither is given. Both or neither."""
    if not cert and not server_key:
        return None
    if not cert or not server_key:
        missing = "--curve-cert (TUREEN_CURVE_CERT)" if not cert else "--curve-server-key (TUREEN_CURVE_SERVER_KEY)"
        raise ValueError(
            f"CURVE needs both the client's certificate and the server's public key: {missing} is missing"
        )
    public, secret = load_key_pair(cert)
    return ClientKeys(public, secret, load_public_key(server_key))


def generate_keys(out_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write NAME.key (public, mode 0644) and NAME.key_secret (mode 0600) into `out_dir`
    (created 0700 if missing); refuses to overwrite. Returns (public, secret) paths."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"key name {name!r} must be a plain file name (no '/', not starting with '.')")
    out = Path(out_dir)
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise ValueError(f"{path} already exists: remove it or choose another --name")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The secret file must never exist with a wider mode, not even for a moment.
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(out, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


def key_prefix(key: bytes) -> str:
    """The first 8 Z85 characters of a public key: enough to tell keys apart in a log."""
    return key[:8].decode("ascii", "replace")


def endpoint_is_local(endpoint: str) -> bool:
    """Whether binding `endpoint` exposes nothing beyond this host: ipc:// and inproc://
    (filesystem / process), or tcp:// and ws:// on a loopback address. Anything that could
    be reached from the network (0.0.0.0, *, an interface name, a host name other than
    localhost, another transport) is not, and neither is what does not parse
    (shared/endpoint.py: the one reading of endpoints)."""
    try:
        return parse_endpoint(endpoint, schemes=ALL_SCHEMES).is_local
    except ValueError:
        return False
