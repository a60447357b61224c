"""Record the RTP captures of this folder from a real sender: ffmpeg, on loopback.

    .venv/bin/python tests/vectors/rtp/record.py     # needs ffmpeg (libvpx, libopus, libx264)

For each codec it binds a UDP socket on 127.0.0.1, starts ffmpeg sending a synthetic source
(lavfi testsrc / sine) as RTP there, keeps the first COUNT datagrams and writes them as hex,
one packet per line, to <codec>.hex. ffmpeg picks random SSRCs, sequence numbers and
timestamps, so each run records different (equally valid) bytes; the tests read the fields
from the packets instead of assuming values.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COUNT = 40
SOURCES = {
    # codec: ffmpeg arguments before the output (-f rtp rtp://127.0.0.1:PORT)
    "vp8": ["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15", "-c:v", "libvpx",
            "-b:v", "300k", "-g", "15", "-deadline", "realtime", "-payload_type", "96"],
    "h264": ["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15", "-c:v", "libx264",
             "-profile:v", "baseline", "-tune", "zerolatency", "-g", "15", "-pix_fmt", "yuv420p",
             "-b:v", "300k", "-payload_type", "103"],
    "opus": ["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "libopus",
             "-b:a", "32k", "-payload_type", "111"],
}  # fmt: skip


def record(codec: str) -> list[bytes]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    port = sock.getsockname()[1]
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", *SOURCES[codec], "-f", "rtp", f"rtp://127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # its SDP
    packets: list[bytes] = []
    try:
        while len(packets) < COUNT:
            data = sock.recv(65536)
            if len(data) >= 2 and 192 <= data[1] <= 223:
                continue  # ffmpeg's RTCP sender reports share the port (rtcp-mux is not used)
            packets.append(data)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        sock.close()
    return packets


def main() -> int:
    for codec in sys.argv[1:] or list(SOURCES):
        packets = record(codec)
        (HERE / f"{codec}.hex").write_text("".join(p.hex() + "\n" for p in packets))
        print(f"{codec}: {len(packets)} packets, {sum(map(len, packets))} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
