"""What every fuzz target shares: the input reader, the corpus, JSON-like values from bytes.

Kept free of `tureen` imports so that the atheris runner (__main__.py) can import it before
it instruments Tureen's modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "corpus"

# The targets, by module name (tests/fuzz/<name>.py); each has a corpus/<name>/ of seeds.
TARGETS = (
    "rtp",
    "rtcp",
    "stun",
    "demux",
    "tcp_framing",
    "wire",
    "capabilities",
    "room",
    "fanout",
)


class Draw:
    """Reads typed values off the front of a fuzz input; past its end every read is 0/empty.

    Both hypothesis (`st.binary()`) and libFuzzer hand a target plain bytes, so a target that
    needs structure (sizes, flags, a sequence of steps) draws it from them with this reader,
    the same way in both runners; a shorter input simply reads as zeros.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return max(0, len(self.data) - self.pos)

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + max(0, n)]
        self.pos += len(out)
        return out

    def uint(self, nbytes: int) -> int:
        return int.from_bytes(self.take(nbytes).ljust(nbytes, b"\0"), "big")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def u32(self) -> int:
        return self.uint(4)

    def below(self, n: int) -> int:
        """An int in 0..n-1 (n >= 1)."""
        return self.uint(2) % n if n > 256 else self.u8() % n

    def flag(self) -> bool:
        return bool(self.u8() & 1)

    def choice(self, options: Any) -> Any:
        return options[self.below(len(options))]

    def rest(self) -> bytes:
        return self.take(self.remaining)


# Values the JSON-like generator picks from: the edges validation code gets wrong.
_ATOMS: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    1,
    -1,
    127,
    128,
    255,
    65535,
    65536,
    (1 << 31),
    (1 << 32),
    (1 << 53),
    (1 << 63),
    (1 << 64),
    -(1 << 63) - 1,
    0.5,
    -0.0,
    1e300,
    "",
    "a",
    "audio",
    "video",
    "opus",
    "VP8",
    "H264",
    "rtx",
    "audio/opus",
    "video/VP8",
    "video/rtx",
    "send",
    "recv",
    "room",
    "peer",
    "low",
    "medium",
    "high",
    "default",
    "alice",
    "bob",
    "x" * 300,
    "\u0000",
    "\u00ff",
)
_KEYS: tuple[str, ...] = (
    "id",
    "method",
    "target",
    "peerName",
    "kind",
    "name",
    "mimeType",
    "clockRate",
    "channels",
    "parameters",
    "preferredPayloadType",
    "payloadType",
    "rtcpFeedback",
    "type",
    "parameter",
    "codecs",
    "headerExtensions",
    "uri",
    "preferredId",
    "encodings",
    "ssrc",
    "rtx",
    "profile",
    "rtpParameters",
    "rtpCapabilities",
    "appData",
    "transportId",
    "producerId",
    "direction",
    "options",
    "dtlsParameters",
    "role",
    "fingerprints",
    "algorithm",
    "value",
    "plainRtpParameters",
    "ip",
    "port",
    "comedia",
    "paused",
    "interval",
    "apt",
    "packetization-mode",
    "profile-level-id",
)


def json_value(draw: Draw, depth: int = 0) -> Any:
    """An arbitrary JSON value (what orjson can decode) steered by the input's bytes."""
    op = draw.u8()
    if depth >= 6 or draw.remaining == 0:
        op %= 3
    kind = op % 8
    if kind == 0:
        return draw.choice(_ATOMS)
    if kind == 1:
        return draw.u32() - (1 << 31) if draw.flag() else draw.uint(8)
    if kind == 2:
        return draw.take(draw.below(24)).decode("utf-8", "replace")
    if kind == 3 and draw.u8() < 16:
        # Deep nesting, up to what orjson decodes (1024 levels): what a hostile client sends.
        value: Any = draw.choice(_ATOMS)
        for _ in range(draw.u16() % 1024):
            value = [value] if draw.u8() & 1 else {"a": value}
        return value
    if kind in (3, 4):
        return [json_value(draw, depth + 1) for _ in range(draw.below(5))]
    out: dict[str, Any] = {}
    for _ in range(draw.below(6)):
        key = draw.choice(_KEYS) if draw.u8() < 224 else draw.take(draw.below(8)).decode("utf-8", "replace")
        out[key] = json_value(draw, depth + 1)
    return out


def mutate(value: Any, draw: Draw, steps: int = 3) -> Any:
    """`value` (a JSON-like tree, not modified) with up to `steps` input-chosen edits: a node
    replaced by an arbitrary value, a key removed or added, a list item dropped or doubled.

    Valid messages mutated a little reach the deep checks that random JSON never passes.
    """
    import copy

    root = [copy.deepcopy(value)]
    for _ in range(draw.below(steps + 1)):
        parent: Any = root
        key: Any = 0
        # Walk down a random path (the top value itself keeps its type: one step at least).
        first = True
        while first or draw.u8() < 192:
            first = False
            node = parent[key]
            if isinstance(node, dict) and node:
                parent, key = node, draw.choice(sorted(node))
            elif isinstance(node, list) and node:
                parent, key = node, draw.below(len(node))
            else:
                break
        action = draw.u8() % 5
        if parent is root:
            continue
        if action == 0:
            parent[key] = json_value(draw)
        elif action == 1:
            del parent[key]
        elif action == 2 and isinstance(parent[key], dict):
            parent[key][draw.choice(_KEYS)] = json_value(draw)
        elif action == 3 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[key] = draw.choice(_ATOMS)
    return root[0]


def corpus_files(target: str) -> list[Path]:
    """The seed and grown inputs of a target, in a stable order."""
    folder = CORPUS / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


class _Token(str):
    """Literal JSON text on json_text's stack (a str subclass, so never a value)."""


def json_text(value: Any) -> bytes:
    """`value` as JSON text, without recursion (any depth) and with integers of any size:
    what a client can put on the wire, which orjson.loads then turns into what the server
    sees (integers beyond 64 bits become floats, more than 1024 levels are refused)."""
    import json

    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Token:
            out.append(item)
        elif isinstance(item, dict | list):
            is_dict = isinstance(item, dict)
            parts: list[Any] = [_Token("{" if is_dict else "[")]
            for i, entry in enumerate(item.items() if is_dict else item):
                if i:
                    parts.append(_Token(","))
                if is_dict:
                    parts.append(_Token(json.dumps(str(entry[0])) + ":"))
                    entry = entry[1]
                parts.append(entry)
            parts.append(_Token("}" if is_dict else "]"))
            stack.extend(reversed(parts))
        else:
            out.append(json.dumps(item))
    return "".join(out).encode()


def over_the_wire(value: Any) -> Any:
    """What the server decodes when a client sends `value` as JSON (orjson, as
    shared/wire.py); raises orjson.JSONDecodeError where it would refuse the text."""
    import orjson

    return orjson.loads(json_text(value))
