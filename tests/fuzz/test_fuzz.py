"""The fuzz tier of `make test`: for every target (tests/fuzz/<target>.py, docs/fuzzing.md)
1. its corpus (tests/fuzz/corpus/<target>/: seeds, inputs that found new coverage, and the
   inputs of every crash found so far) replays without a failure;
2. hypothesis feeds it EXAMPLES[target] random inputs (plus structured ones for some);
3. atheris (libFuzzer, coverage-guided) runs it RUNS[target] iterations in a subprocess
   (test_fuzz_atheris.py), starting from the corpus; new inputs go to a temporary folder.
   Skipped where atheris is not installed (no wheel for this Python or machine), unless
   TUREEN_REQUIRE_ATHERIS=1.

Budgets are iteration counts, not times; all of it takes ~40 s on 2 cores. `make fuzz` runs
the same targets far longer and grows the corpus.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .harness import TARGETS, corpus_files, json_text

ROOT = Path(__file__).resolve().parents[2]

# Per target: hypothesis examples and atheris iterations, sized by what one iteration costs
# (a Room with two peers and three transports is ~10 ms; a datagram parse is ~50 µs).
# libFuzzer counts its pass over the corpus as runs: RUNS must stay above the corpus size.
EXAMPLES = {
    "rtp": 300,
    "rtcp": 300,
    "stun": 150,
    "demux": 60,
    "tcp_framing": 300,
    "wire": 300,
    "capabilities": 200,
    "room": 60,
    "fanout": 40,
}
RUNS = {
    "rtp": 8000,
    "rtcp": 8000,
    "stun": 2000,
    "demux": 400,
    "tcp_framing": 8000,
    "wire": 10000,
    "capabilities": 1500,
    "room": 500,
    "fanout": 200,
}


def _module(target: str):
    return importlib.import_module(f"{__package__}.{target}")


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays(target: str) -> None:
    files = corpus_files(target)
    assert files, f"tests/fuzz/corpus/{target}/ has no seeds"
    fuzz_one = _module(target).fuzz_one
    for path in files:
        try:
            fuzz_one(path.read_bytes())
        except Exception as exc:
            raise AssertionError(f"corpus input {path.relative_to(ROOT)} fails: {exc!r}") from exc


@pytest.mark.parametrize("target", TARGETS)
def test_hypothesis_inputs(target: str) -> None:
    fuzz_one = _module(target).fuzz_one

    @settings(
        max_examples=EXAMPLES[target],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.binary(max_size=2048))
    def check(data: bytes) -> None:
        fuzz_one(data)

    check()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 64), 1 << 64) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "mediaCodecs": st.lists(
                st.fixed_dictionaries(
                    {"kind": st.sampled_from(["audio", "video", "depth"]),
                     "name": st.sampled_from(["opus", "VP8", "H264", "VP9", "PCMU", "rtx"])},
                    optional={"clockRate": st.sampled_from([48000, 90000, 8000, -1]),
                              "channels": st.sampled_from([1, 2, 0]),
                              "parameters": _JSON},
                ),  # fmt: skip
                max_size=4,
            ),
            "rtpCapabilities": _JSON,
            "kind": st.sampled_from(["audio", "video", "depth"]) | _JSON,
            "rtpParameters": _JSON,
        },
    )
)
def test_capabilities_with_json_shaped_input(given_input: dict) -> None:
    """Structured: JSON the capability functions could get from a client, through the
    target's JSON path (a part left out is the valid shape of tests/fuzz/shapes.py)."""
    _module("capabilities").fuzz_one(json_text(given_input))


@settings(max_examples=300, deadline=None, database=None)
@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    two_byte=st.booleans(),
    elements=st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=6),
    payload=st.binary(max_size=1200),
    padding=st.integers(0, 255),
    tail=st.binary(max_size=64),
)
def test_rtp_packets_built_from_fields(
    pt, seq, ts, ssrc, marker, csrcs, two_byte, elements, payload, padding, tail
) -> None:
    """Structured: well-formed packets (every extension form) go through the rtp target and
    parse back to the fields they were built from."""
    from tureen.shared.rtp.packet import RtpPacket

    packet = RtpPacket(pt, seq, ts, ssrc, marker, csrcs, payload=payload, padding_size=padding)
    if elements:
        packet.set_extensions(elements, two_byte)
    data = packet.serialize()
    parsed = RtpPacket.parse(data)
    assert parsed == packet and parsed.extensions == elements
    _module("rtp").fuzz_one(data + tail if not padding else data)
