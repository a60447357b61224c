"""Producer state: one media source a peer sends into a transport."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tureen.shared.contract import CodecSpec, ProducerCreate, ProducerUpdate, StreamSpec
from tureen.supervisor.states import Stateful

if TYPE_CHECKING:
    from tureen.supervisor.consumer import Consumer
    from tureen.supervisor.transport import Transport


class ProducerState(enum.Enum):
    LIVE = "live"
    PAUSED = "paused"  # by its client (pauseProducer) or the app (producer.pause)
    CLOSED = "closed"


# The notification each move sends: to the receivers of its enabled consumers (unless the
# app paused the consumer), and to the producer's own peer when the app made the move.
CONSUMER_NOTIFICATION = {ProducerState.PAUSED: "consumerPaused", ProducerState.LIVE: "consumerResumed"}
OWNER_NOTIFICATION = {
    ProducerState.PAUSED: "producerPaused",
    ProducerState.LIVE: "producerResumed",
    ProducerState.CLOSED: "producerClosed",
}


@dataclass(eq=False)
class Producer(Stateful):
    TRANSITIONS: ClassVar = {
        ProducerState.LIVE: frozenset({ProducerState.PAUSED, ProducerState.CLOSED}),
        ProducerState.PAUSED: frozenset({ProducerState.LIVE, ProducerState.CLOSED}),
        ProducerState.CLOSED: frozenset(),
    }

    id: int
    gid: int
    peer_name: str
    kind: str
    transport: Transport
    rtp_parameters: dict[str, Any]
    mapping: dict[str, Any]  # capabilities.producer_mapping(): PT/ext maps, streams
    app_data: Any = None
    stats_interval: int | None = None
    # Stats entry id of each stream, by SSRC (supervisor/stats.py): stable while it lives.
    stats_ids: dict[int, str] = field(default_factory=dict)
    # Consumers of other peers, by consumer id.
    consumers: dict[int, Consumer] = field(default_factory=dict)
    # Workers other than the producer's own that hold a piped copy, and what feeds each
    # (supervisor/pipes.py has the model): worker -> its feeder (the producer's worker, or
    # a gateway), host (None: the supervisor's own) -> its gateway worker, gateway -> leg id.
    piped_to: set[int] = field(default_factory=set)
    fed_by: dict[int, int] = field(default_factory=dict)
    gateways: dict[str | None, int] = field(default_factory=dict)
    legs: dict[int, int] = field(default_factory=dict)
    state: ProducerState = ProducerState.LIVE

    @property
    def paused(self) -> bool:
        return self.state is ProducerState.PAUSED

    @property
    def mime_type(self) -> str:
        codecs = self.mapping.get("codecs") or [{}]
        return str(codecs[0].get("mimeType", f"{self.kind}/unknown"))

    @property
    def worker(self) -> int:
        return self.transport.worker

    def describe(self) -> str:
        return f"producer {self.id} of peer {self.peer_name!r}"

    def worker_command(
        self,
        transport_gid: int | None,
        mapping: dict[str, Any] | None = None,
        *,
        update: bool = False,
        room: str | None = None,
    ) -> ProducerCreate:
        """The producer.create (or, `update`, producer.update) command for a worker
        (transport_gid None = a piped copy).

        `mapping` overrides the producer's own (updateProducer checks before committing).
        `room` (the room's id) and the producer's peer and id name it in the worker's log.
        """
        piped = transport_gid is None
        mapping = self.mapping if mapping is None else mapping
        kind = ProducerUpdate if update else ProducerCreate
        return kind(
            producerId=self.gid,
            kind=self.kind,  # type: ignore[arg-type]  # checked by producer_mapping
            transportId=transport_gid,
            # Pause is applied where the packets enter; a piped copy never sees paused input.
            paused=False if piped else self.paused,
            streams=[
                StreamSpec(ssrc=s["ssrc"], rtxSsrc=s["rtxSsrc"], profile=s["profile"])
                for s in mapping["streams"]
            ],
            payloadTypes=[(pt, pt) if piped else (src, pt) for src, pt in mapping["payloadTypes"]],
            headerExtensionIds=[
                (i, i) if piped else (src, i) for src, i in mapping["headerExtensionIds"]
            ],
            codecs=[
                CodecSpec(
                    payloadType=x["payloadType"],
                    mimeType=x["mimeType"],
                    clockRate=x["clockRate"],
                    rtxPayloadType=x["rtxPayloadType"],
                    nack=x.get("nack", False),
                )
                for x in mapping["codecs"]
            ],
            room=room,
            peer=self.peer_name,
            clientId=self.id,
        )

    def dump(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workerId": self.gid,
            "worker": self.worker,
            "kind": self.kind,
            "transportId": self.transport.id,
            "paused": self.paused,
            "rtpParameters": self.rtp_parameters,
            "consumers": sorted(self.consumers),
            "pipedTo": sorted(self.piped_to),
            # Host legs: gateway worker -> leg id (the media crossing to another host).
            "legs": {str(index): leg for index, leg in sorted(self.legs.items())},
            "statsInterval": self.stats_interval,
            "appData": self.app_data,
        }
