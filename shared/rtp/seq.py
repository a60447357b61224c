"""Wrap-around masks for RTP sequence numbers (16 bits) and timestamps (32 bits).

RTP counters wrap: 65535 + 1 = 0, so every offset a consumer adds (workers/rtp/consumer.py)
is taken modulo the counter's size with these masks. The data path (workers/forward.py,
workers/_native.c) inlines the same literals (0xFFFF, 0xFFFFFFFF) to save a global lookup
per packet.
"""

from __future__ import annotations

SEQ_MASK = 0xFFFF
TS_MASK = 0xFFFFFFFF
