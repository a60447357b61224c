"""Typed access to the params of one channel request; every failure is a bad_request naming
the method and the field, raised before the handler changes anything."""

from __future__ import annotations

import ipaddress
from typing import Any, NoReturn

from tureen.shared.errors import bad_request

U32 = (1 << 32) - 1


class Params:
    def __init__(self, method: str, message: dict[str, Any]) -> None:
        self.method = method
        self._m = message

    def _fail(self, key: str, want: str, value: Any) -> NoReturn:
        raise bad_request(f"{self.method}: {key} must be {want}, got {value!r:.60}")

    def raw(self, key: str) -> Any:
        """The value as sent (None when absent), for a validator of its own."""
        return self._m.get(key)

    def has(self, key: str) -> bool:
        """The key is there and not null."""
        return self._m.get(key) is not None

    def require_key(self, key: str) -> None:
        """The key must be there, null allowed."""
        if key not in self._m:
            raise bad_request(f"{self.method}: {key} is required (null allowed)")

    def check_int(self, name: str, v: Any, lo: int = 0, hi: int = U32) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            self._fail(name, f"an integer in {lo}..{hi}", v)
        return v

    def int(self, key: str, lo: int = 0, hi: int = U32) -> int:
        if self._m.get(key) is None:
            raise bad_request(f"{self.method}: {key} is required")
        return self.check_int(key, self._m[key], lo, hi)

    def opt_int(self, key: str, lo: int = 0, hi: int = U32) -> int | None:
        return None if self._m.get(key) is None else self.int(key, lo, hi)

    def opt_str(self, key: str, max_bytes: int) -> str | None:
        """A non-empty string of at most `max_bytes` bytes of UTF-8, or None when absent."""
        v = self._m.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v or len(v.encode()) > max_bytes:
            self._fail(key, f"a non-empty string of at most {max_bytes} bytes", v)
        return v

    def bool(self, key: str, default: bool | None = None) -> bool:
        v = self._m.get(key)
        if v is None:
            if default is None:
                raise bad_request(f"{self.method}: {key} is required")
            return default
        if not isinstance(v, bool):
            self._fail(key, "a boolean", v)
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        v = self._m.get(key)
        if v is None and default is not None:
            return default
        if v not in choices:
            self._fail(key, "one of " + ", ".join(repr(c) for c in choices), v)
        return v

    def ipv4(self, key: str) -> str:
        v = self._m.get(key)
        try:
            return str(ipaddress.IPv4Address(v))
        except (ValueError, TypeError):
            self._fail(key, "an IPv4 address", v)

    def list(self, key: str, required: bool = True) -> list[Any]:
        v = self._m.get(key)
        if v is None and not required:
            return []
        if not isinstance(v, list):
            self._fail(key, "a list", v)
        return v

    def obj(self, value: Any, where: str) -> Params:
        if not isinstance(value, dict):
            raise bad_request(f"{self.method}: {where} must be an object, got {value!r:.60}")
        return Params(self.method, value)

    def pairs(self, key: str, lo: int, hi: int) -> list[tuple[int, int]]:
        """[[from, to], ...] with both in lo..hi and no `from` twice."""
        out: list[tuple[int, int]] = []
        seen: set[int] = set()
        for i, item in enumerate(self.list(key, required=False)):
            if not isinstance(item, list) or len(item) != 2:
                self._fail(f"{key}[{i}]", "a [from, to] pair", item)
            a = self.check_int(f"{key}[{i}][0]", item[0], lo, hi)
            b = self.check_int(f"{key}[{i}][1]", item[1], lo, hi)
            if a in seen:
                raise bad_request(f"{self.method}: {key} maps {a} twice")
            seen.add(a)
            out.append((a, b))
        return out
