"""ICE-TCP framing: workers/transport/tcp.py's RFC 4571 Deframer and frame().

The input is a byte stream (its second half also says where the stream is cut into reads).
Properties: fed in any cuts, the deframer gives the same frames as a one-pass reference
reading of the whole stream, in order, and counts the same empty frames; it raises
FramingError exactly where the reference meets a length above max_frame, and stays broken
after; it never holds more than max_frame + 2 bytes; frame() of each frame read re-frames to
the stream it came from.
"""

from __future__ import annotations

from tureen.workers.transport.tcp import Deframer, FramingError, frame

from .harness import Draw


def _reference(stream: bytes, max_frame: int) -> tuple[list[bytes], int, bool]:
    frames, empty, pos = [], 0, 0
    while len(stream) - pos >= 2:
        length = int.from_bytes(stream[pos : pos + 2], "big")
        if length > max_frame:
            return frames, empty, True
        if len(stream) - pos - 2 < length:
            break
        if length:
            frames.append(stream[pos + 2 : pos + 2 + length])
        else:
            empty += 1
        pos += 2 + length
    return frames, empty, False


def fuzz_one(data: bytes) -> None:
    draw = Draw(data[::-1])
    max_frame = (64, 1532, 0xFFFF)[draw.u8() % 3]
    stream = data
    expected, empty, breaks = _reference(stream, max_frame)
    deframer = Deframer(max_frame)
    got: list[bytes] = []
    pos = 0
    broken = False
    while pos < len(stream):
        cut = draw.below(64) + 1 if draw.remaining else len(stream)
        chunk = stream[pos : pos + cut]
        pos += len(chunk)
        try:
            got += deframer.feed(memoryview(chunk) if draw.flag() else chunk)
        except FramingError:
            broken = True
            break
        assert deframer.pending <= max_frame + 2
    assert broken == breaks
    if broken:
        assert deframer.broken and got == expected[: len(got)]
        try:
            deframer.feed(b"\0\1x")
        except FramingError:
            pass
        else:
            raise AssertionError("a broken deframer accepted more input")
        return
    assert got == expected and deframer.empty_frames == empty
    consumed = len(stream) - deframer.pending
    assert sum(len(frame(f)) for f in got) + 2 * empty == consumed
    if not empty:
        assert b"".join(frame(f) for f in got) == stream[:consumed]
