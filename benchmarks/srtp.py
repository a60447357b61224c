"""SRTP for the benchmark's C tools: which libsrtp, which profile, which keys.

The C tools (rtpload, cforward) do their SRTP with the libsrtp 2.7 + OpenSSL that is
statically linked inside pylibsrtp's cffi extension, the same crypto a Tureen worker runs
(ctools/srtpdl.h dlopens that extension and calls its exported srtp_* functions).
"""

from __future__ import annotations

import os
from pathlib import Path

from tureen.workers.transport.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, PROFILES

# Short names (command line, table, C tools) -> the DTLS-SRTP profile names Tureen uses.
PROFILE_NAMES: dict[str, str] = {"gcm": AEAD_AES_128_GCM, "cm": AES128_CM_SHA1_80}
POLICY_SIZE = 128  # sizeof(srtp_policy_t) as srtpdl.h declares it


def libsrtp_path() -> Path:
    """pylibsrtp's extension module, checked to be the libsrtp 2 ABI srtpdl.h declares."""
    import pylibsrtp._binding as binding

    size = binding.ffi.sizeof("srtp_policy_t")
    if size != POLICY_SIZE:
        raise RuntimeError(f"pylibsrtp's srtp_policy_t is {size} bytes, srtpdl.h expects {POLICY_SIZE}")
    path = Path(binding.__file__)
    if not path.exists():
        raise RuntimeError(f"pylibsrtp's extension is not a file: {path}")
    return path


def key_length(short: str) -> int:
    return PROFILES[PROFILE_NAMES[short]].key_salt_length


def random_key(short: str) -> bytes:
    """A fresh master key || salt for profile `short` ('gcm' or 'cm')."""
    return os.urandom(key_length(short))
