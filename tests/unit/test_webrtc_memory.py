"""What a WebRtcTransport allocates, and when: a real transport on loopback sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

from tureen.workers.forward import Forwarder
from tureen.workers.transport.srtp import AEAD_AES_128_GCM, SrtpContext
from tureen.workers.transport.webrtc import WebRtcTransport


class Listener:
    """The worker's side of a transport: nothing to do for these tests."""

    def transport_ready(self, transport) -> None:
        pass

    def transport_event(self, transport, event) -> None:
        pass

    def transport_failed(self, transport, reason) -> None:
        pass

    def transport_rtcp(self, transport, packet) -> None:
        pass


def rtp(seq: int, size: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0xABCDEF01) + bytes(size)


def test_per_copy_scratch_is_made_on_first_send_and_protects_right() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport = WebRtcTransport(1, Listener(), loop, Forwarder(), [("127.0.0.1", None)],
                                    20000, 32000, {"tcp": False})
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(5)
        try:
            # Not made with the transport: most transports never send per copy.
            assert transport._scratch is None
            transport._select(sink.getsockname())  # as ICE selecting the sink's tuple
            ours, theirs = os.urandom(28), os.urandom(28)
            # What the DTLS connected event does.
            transport.srtp = SrtpContext(AEAD_AES_128_GCM, ours, theirs)
            transport._protect = transport.srtp.protect_rtp_into
            receiver = SrtpContext(AEAD_AES_128_GCM, theirs, ours)
            send = transport.sender()
            assert send is not None and transport._scratch is None
            for seq, size in ((1, 1000), (2, 40), (3, 1200)):
                send(memoryview(rtp(seq, size)))
                assert receiver.unprotect_rtp(sink.recv(2048)) == rtp(seq, size)
            assert transport._scratch is not None
        finally:
            transport.close()
            sink.close()

    asyncio.run(scenario())
