"""A mediasoup-client v2 look-alike on aiortc, to drive Tureen over the control API in tests.

`MsPeer` behaves on the wire like mediasoup-client 2.4.12 with its Chrome70 (Unified Plan)
handler, as docs/browser.md describes the browser tier: the same messages, in the same order, with
the same shapes, and the same SDP built locally from the server's answers. Only the browser
is replaced: aiortc's RTCPeerConnection encodes, packetizes, does ICE, DTLS and SRTP.

    peer = MsPeer()
    await peer.join(room, "alice")                    # queryRoom + join
    producer = await peer.produce(VideoStreamTrack())  # createTransport(send) + createProducer
    other = MsPeer()
    await other.join(room, "bob")                     # bob gets alice's consumer in the reply
    consumer = await other.consume(await other.next_consumer(kind="video"))
    await consumer.wait_frames(10)                    # decoded av.VideoFrames
    await peer.leave(); await other.leave()

How each step maps onto mediasoup-client (file names under its lib/):

- join(): Room.join() -> `queryRoom`, then Chrome70.getNativeRtpCapabilities() (an offer
  probe with one audio and one video transceiver: here aiortc's), ortc.js
  getExtendedRtpCapabilities() against the room's, then `join` with getRtpCapabilities():
  room PTs and extension ids, rtcpFeedback intersected, RTX where both sides have it.
- produce(): Chrome70 SendHandler.addProducer(): addTransceiver(track, sendonly), createOffer,
  setLocalDescription; the first time `createTransport {direction: 'send', dtlsParameters:
  {role: 'server', fingerprints}}`; the remote answer from RemoteUnifiedPlanSdp (send side);
  rtpParameters from ortc.getSendingRtpParameters() + fillRtpParametersForTrack(); then
  Transport `createProducer`.
- consume(): Chrome70 RecvHandler.addConsumer(): the first time `createTransport {direction:
  'recv'}` (no dtlsParameters); a remote offer of every consumer so far (RemoteUnifiedPlanSdp
  recv side); setRemoteDescription, createAnswer, setLocalDescription; the first time the
  `updateTransport {dtlsParameters}` notification; then Transport `enableConsumer`.
- leave(): Room.leave() -> `leave` notification; nothing after it. Closing a producer sends
  `closeProducer`; closing a consumer sends nothing (both as the client does).

The SDP and RTP-parameter helpers at the top are pure functions (tested in
tests/unit/test_msclient_sdp.py); MsPeer does the I/O.

Where aiortc differs from Chrome, and what this client does about it:

- aiortc writes no `a=ssrc:N msid:` lines, which fillRtpParametersForTrack() reads with
  planBSimulcast; SSRCs are taken from the `a=ssrc:N cname:` lines and `a=ssrc-group:FID`.
- aiortc offers three fingerprints (sha-256, -384, -512); Chrome one (sha-256). The client
  sends the first, as Chrome does (`all_fingerprints=True` sends all three).
- A remote answer without `a=setup` (the client's answer when the server's DTLS role is
  'auto') makes aiortc fail; 'auto' is written as `a=setup:active`, which is what Chrome does
  with a missing line (the server acts as DTLS client, aiortc as server).
- ICE: aiortc is controlling when it makes the offer (send side) and, when it applies a
  remote offer with `a=ice-lite`, it sets `ice_controlling = iceLite` (recv side); aioice 0.13
  then uses regular nomination against a lite peer (a check without USE-CANDIDATE, then one
  with it), as Chrome does. So no monkeypatch is needed; `_ensure_ice_controlling()` checks it
  and only forces it on an aiortc that would not do so.
- aiortc cannot gather or pair ICE-TCP candidates (they are written to the SDP, as the client
  does, and aioice ignores them), so transports are created with `{udp: true, tcp: false}`.
- SRTP: aiortc offers SRTP_AEAD_AES_256_GCM, SRTP_AEAD_AES_128_GCM and SRTP_AES128_CM_SHA1_80
  (not _32), so against Tureen (AES-CM 80/32 and AEAD_AES_128_GCM) it negotiates
  AEAD_AES_128_GCM if the server prefers it, else AES_CM_128_HMAC_SHA1_80.
- Not supported by aiortc, so not here: legacy SSRC simulcast (SDP munging), ICE restart
  (`restartTransport` needs createOffer({iceRestart})), removeTrack (closeProducer stops the
  sender without the client's local renegotiation, which sends nothing to the server anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import MediaDescription, SessionDescription

Json = dict[str, Any]

SDES_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
DEFAULT_TRANSPORT_OPTIONS: Json = {"udp": True, "tcp": False}
SIMULCAST_PROFILES = ("low", "medium", "high")


class MsClientError(Exception):
    """A step of the client failed before or after the server answered (not a server error)."""


def random_id() -> int:
    """A transport/producer id as the client makes them (utils.randomNumber)."""
    return random.randint(10_000_000, 99_999_999)


# ------------------------------------------------------------------------------------------
# Capabilities and RTP parameters (ortc.js and commonUtils.extractRtpCapabilities)
# ------------------------------------------------------------------------------------------


def _fmtp_value(value: Any) -> Any:
    # sdp-transform's parseFmtpConfig turns integer strings into numbers, and ortc.js compares
    # H264 packetization-mode with ===, so "1" must become 1 as it does in the browser.
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _feedback(fb_type: str, parameter: str | None) -> Json:
    """{type, parameter?}: an empty parameter is left out, as the client does."""
    return {"type": fb_type, **({"parameter": parameter} if parameter else {})}


def extract_rtp_capabilities(sdp: str) -> Json:
    """Native RTP capabilities from a local offer, as commonUtils.extractRtpCapabilities().

    Only the first audio and the first video m-section count. Codecs keep the SDP's order
    (by PT, later duplicates replacing earlier ones), with `channels` for audio only (default
    1), fmtp parameters and rtcp-fb; header extensions are `{kind, uri, preferredId}`.
    """
    description = SessionDescription.parse(sdp)
    codecs: dict[int, Json] = {}
    extensions: list[Json] = []
    seen: set[str] = set()
    for media in description.media:
        if media.kind not in ("audio", "video") or media.kind in seen:
            continue
        seen.add(media.kind)
        for codec in media.rtp.codecs:
            name = codec.mimeType.split("/", 1)[1]
            entry: Json = {
                "name": name,
                "mimeType": f"{media.kind}/{name}",
                "kind": media.kind,
                "clockRate": codec.clockRate,
                "preferredPayloadType": codec.payloadType,
                "rtcpFeedback": [_feedback(fb.type, fb.parameter) for fb in codec.rtcpFeedback],
                "parameters": {k: _fmtp_value(v) for k, v in codec.parameters.items()},
            }
            if media.kind == "audio":
                entry["channels"] = codec.channels or 1
            codecs[codec.payloadType] = entry
        for ext in media.rtp.headerExtensions:
            extensions.append({"kind": media.kind, "uri": ext.uri, "preferredId": ext.id})
    return {"codecs": list(codecs.values()), "headerExtensions": extensions, "fecMechanisms": []}


def _is_rtx(codec: Json) -> bool:
    return str(codec.get("name", "")).lower() == "rtx"


def _codecs_match(a: Json, b: Json) -> bool:
    """ortc.js matchCapCodecs: mimeType (any case), clockRate, channels, H264 pm."""
    mime = a["mimeType"].lower()
    if mime != b["mimeType"].lower() or a["clockRate"] != b["clockRate"]:
        return False
    if a.get("channels") != b.get("channels"):
        return False
    if mime == "video/h264":
        a_pm = (a.get("parameters") or {}).get("packetization-mode") or 0
        b_pm = (b.get("parameters") or {}).get("packetization-mode") or 0
        return a_pm == b_pm
    return True


def _reduce_feedback(local: Json, remote: Json) -> list[Json]:
    """The remote's rtcpFeedback entries the local codec also has, in the local order."""
    out: list[Json] = []
    for fb in local.get("rtcpFeedback") or []:
        match = next(
            (
                r
                for r in remote.get("rtcpFeedback") or []
                if r["type"] == fb["type"] and (r.get("parameter") or None) == (fb.get("parameter") or None)
            ),
            None,
        )
        if match is not None:
            out.append(copy.deepcopy(match))
    return out


def get_extended_rtp_capabilities(local_caps: Json, remote_caps: Json) -> Json:
    """ortc.getExtendedRtpCapabilities: room codecs (room order) the local side has.

    Each codec: name, mimeType, kind, clockRate, sendPayloadType (local PT),
    sendRtxPayloadType, recvPayloadType (room PT), recvRtxPayloadType, channels (if any),
    rtcpFeedback (intersection), parameters (the room's). Extensions: {kind, uri, sendId,
    recvId} for room extensions whose uri (and kind) the local side has.
    """
    local_codecs = local_caps.get("codecs") or []
    remote_codecs = remote_caps.get("codecs") or []
    codecs: list[Json] = []
    for remote in remote_codecs:
        if _is_rtx(remote):
            continue
        local = next((c for c in local_codecs if _codecs_match(c, remote)), None)
        if local is None:
            continue
        codec: Json = {
            "name": remote["name"],
            "mimeType": remote["mimeType"],
            "kind": remote["kind"],
            "clockRate": remote["clockRate"],
            "sendPayloadType": local["preferredPayloadType"],
            "sendRtxPayloadType": None,
            "recvPayloadType": remote["preferredPayloadType"],
            "recvRtxPayloadType": None,
            "rtcpFeedback": _reduce_feedback(local, remote),
            "parameters": copy.deepcopy(remote.get("parameters") or {}),
        }
        if remote.get("channels"):
            codec["channels"] = remote["channels"]
        codecs.append(codec)

    for codec in codecs:
        local_rtx = next(
            (
                c
                for c in local_codecs
                if _is_rtx(c) and (c.get("parameters") or {}).get("apt") == codec["sendPayloadType"]
            ),
            None,
        )
        remote_rtx = next(
            (
                c
                for c in remote_codecs
                if _is_rtx(c) and (c.get("parameters") or {}).get("apt") == codec["recvPayloadType"]
            ),
            None,
        )
        if local_rtx is not None and remote_rtx is not None:
            codec["sendRtxPayloadType"] = local_rtx["preferredPayloadType"]
            codec["recvRtxPayloadType"] = remote_rtx["preferredPayloadType"]

    extensions: list[Json] = []
    for remote in remote_caps.get("headerExtensions") or []:
        local = next(
            (
                e
                for e in local_caps.get("headerExtensions") or []
                if e["uri"] == remote["uri"]
                and not (e.get("kind") and remote.get("kind") and e["kind"] != remote["kind"])
            ),
            None,
        )
        if local is not None:
            extensions.append(
                {
                    "kind": remote.get("kind"),
                    "uri": remote["uri"],
                    "sendId": local["preferredId"],
                    "recvId": remote["preferredId"],
                }
            )
    return {"codecs": codecs, "headerExtensions": extensions, "fecMechanisms": []}


def get_rtp_capabilities(extended: Json) -> Json:
    """ortc.getRtpCapabilities: join's rtpCapabilities, with the room's PTs and ids."""
    codecs: list[Json] = []
    for cap in extended["codecs"]:
        codec: Json = {
            "name": cap["name"],
            "mimeType": cap["mimeType"],
            "kind": cap["kind"],
            "clockRate": cap["clockRate"],
            "preferredPayloadType": cap["recvPayloadType"],
            "rtcpFeedback": copy.deepcopy(cap["rtcpFeedback"]),
            "parameters": copy.deepcopy(cap["parameters"]),
        }
        if cap.get("channels"):
            codec["channels"] = cap["channels"]
        codecs.append(codec)
        if cap["recvRtxPayloadType"]:
            codecs.append(
                {
                    "name": "rtx",
                    "mimeType": f"{cap['kind']}/rtx",
                    "kind": cap["kind"],
                    "clockRate": cap["clockRate"],
                    "preferredPayloadType": cap["recvRtxPayloadType"],
                    "parameters": {"apt": cap["recvPayloadType"]},
                }
            )
    extensions = [
        {"kind": ext["kind"], "uri": ext["uri"], "preferredId": ext["recvId"]}
        for ext in extended["headerExtensions"]
    ]
    return {"codecs": codecs, "headerExtensions": extensions, "fecMechanisms": []}


def unsupported_mandatory_codecs(
    remote_caps: Json, mandatory_payload_types: Iterable[int] | None, extended: Json
) -> list[Json]:
    """ortc.getUnsupportedCodecs: room codecs listed as mandatory that we cannot receive."""
    out: list[Json] = []
    for pt in mandatory_payload_types or []:
        if any(c["recvPayloadType"] == pt for c in extended["codecs"]):
            continue
        codec = next((c for c in remote_caps["codecs"] if c["preferredPayloadType"] == pt), None)
        if codec is None:
            raise MsClientError(f"mandatory codec PT {pt} not found in remote codecs")
        out.append(codec)
    return out


def can_send(kind: str, extended: Json) -> bool:
    """ortc.canSend: some room codec of that kind is available locally."""
    return any(c["kind"] == kind for c in extended["codecs"])


def can_receive(rtp_parameters: Json, extended: Json) -> bool:
    """ortc.canReceive: the consumer's first codec PT is one of our room (recv) PTs."""
    codecs = rtp_parameters.get("codecs") or []
    if not codecs:
        return False
    return any(c["recvPayloadType"] == codecs[0].get("payloadType") for c in extended["codecs"])


def _rtp_parameters(kind: str, extended: Json, *, send: bool) -> Json:
    prefix = "send" if send else "recv"
    params: Json = {"muxId": None, "codecs": [], "headerExtensions": [], "encodings": [], "rtcp": {}}
    for cap in extended["codecs"]:
        if cap["kind"] != kind:
            continue
        codec: Json = {
            "name": cap["name"],
            "mimeType": cap["mimeType"],
            "clockRate": cap["clockRate"],
            "payloadType": cap[f"{prefix}PayloadType"],
        }
        if cap.get("channels"):
            codec["channels"] = cap["channels"]
        codec["rtcpFeedback"] = copy.deepcopy(cap["rtcpFeedback"])
        codec["parameters"] = copy.deepcopy(cap["parameters"])
        params["codecs"].append(codec)
        if cap[f"{prefix}RtxPayloadType"]:
            params["codecs"].append(
                {
                    "name": "rtx",
                    "mimeType": f"{kind}/rtx",
                    "clockRate": cap["clockRate"],
                    "payloadType": cap[f"{prefix}RtxPayloadType"],
                    "parameters": {"apt": cap[f"{prefix}PayloadType"]},
                }
            )
        if send:
            break  # the client sends with the first codec of the kind (plus its RTX) only
    for ext in extended["headerExtensions"]:
        if ext.get("kind") and ext["kind"] != kind:
            continue
        params["headerExtensions"].append({"uri": ext["uri"], "id": ext[f"{prefix}Id"]})
    return params


def get_sending_rtp_parameters(kind: str, extended: Json) -> Json:
    """ortc.getSendingRtpParameters: first codec of the kind (+RTX) with local PTs and ids."""
    return _rtp_parameters(kind, extended, send=True)


def get_receiving_full_rtp_parameters(kind: str, extended: Json) -> Json:
    """ortc.getReceivingFullRtpParameters: every codec of the kind with room PTs and ids."""
    return _rtp_parameters(kind, extended, send=False)


# ------------------------------------------------------------------------------------------
# Local SDP readers (commonUtils.extractDtlsParameters, unifiedPlanUtils)
# ------------------------------------------------------------------------------------------

_SETUP_TO_ROLE = {"client": "client", "server": "server", "auto": "auto"}


def _media_by_mid(description: SessionDescription, mid: str) -> MediaDescription:
    for media in description.media:
        if media.rtp.muxId == str(mid):
            return media
    raise MsClientError(f"SDP section with mid={mid} not found")


def extract_dtls_parameters(sdp: str, *, all_fingerprints: bool = False) -> Json:
    """DTLS parameters of the first active m-section, as commonUtils.extractDtlsParameters.

    role: a=setup active -> 'client', passive -> 'server', actpass -> 'auto'. Chrome writes one
    fingerprint (sha-256); aiortc writes three, of which the first (sha-256) is sent unless
    `all_fingerprints`.
    """
    description = SessionDescription.parse(sdp)
    media = next((m for m in description.media if m.ice.usernameFragment and m.port != 0), None)
    if media is None or media.dtls is None or not media.dtls.fingerprints:
        raise MsClientError("no active m-section with DTLS parameters in the local SDP")
    # aiortc's parser already turns a=setup into a role: active=client, passive=server.
    role = _SETUP_TO_ROLE.get(media.dtls.role or "auto", "auto")
    prints = media.dtls.fingerprints if all_fingerprints else media.dtls.fingerprints[:1]
    return {
        "role": role,
        "fingerprints": [{"algorithm": f.algorithm, "value": f.value} for f in prints],
    }


def fill_rtp_parameters_for_track(rtp_parameters: Json, local_sdp: str, mid: str) -> Json:
    """Fill muxId, rtcp and encodings from the local offer's m-section `mid`.

    As unifiedPlanUtils.fillRtpParametersForTrack (planBSimulcast): cname from the first
    `a=ssrc:N cname:` line, encodings `[{ssrc, rtx: {ssrc}}]` from the SSRCs and their FID
    groups (three of them get profiles low/medium/high). Chrome's SSRC list comes from
    `a=ssrc:N msid:` lines, which aiortc does not write, so every SSRC of the section is used.
    Returns `rtp_parameters` (changed in place).
    """
    media = _media_by_mid(SessionDescription.parse(local_sdp), mid)
    rtp_parameters["muxId"] = str(mid)
    cname = next((s.cname for s in media.ssrc if s.cname), None)
    if cname is None:
        raise MsClientError("CNAME value not found")
    rtp_parameters["rtcp"] = {"cname": cname, "reducedSize": True, "mux": True}

    ssrcs = [s.ssrc for s in media.ssrc]
    if not ssrcs:
        raise MsClientError("no a=ssrc lines found")
    rtx_of: dict[int, int | None] = {}
    remaining = list(ssrcs)
    for group in media.ssrc_group:
        if group.semantic != "FID" or len(group.items) < 2:
            continue
        primary, rtx = int(group.items[0]), int(group.items[1])
        if primary in remaining:
            remaining.remove(primary)
            if rtx in remaining:
                remaining.remove(rtx)
            rtx_of[primary] = rtx
    for ssrc in remaining:  # no RTX for these
        rtx_of[ssrc] = None

    simulcast = len(rtx_of) > 1
    encodings: list[Json] = []
    for index, (ssrc, rtx) in enumerate(rtx_of.items()):
        encoding: Json = {"ssrc": ssrc}
        if rtx:
            encoding["rtx"] = {"ssrc": rtx}
        if simulcast and index < len(SIMULCAST_PROFILES):
            encoding["profile"] = SIMULCAST_PROFILES[index]
        encodings.append(encoding)
    rtp_parameters["encodings"] = encodings
    return rtp_parameters


# ------------------------------------------------------------------------------------------
# Remote SDP builders (RemoteUnifiedPlanSdp)
# ------------------------------------------------------------------------------------------


@dataclass
class ConsumerInfo:
    """What the recv side keeps per consumer (RecvHandler's consumerInfo)."""

    id: int
    kind: str
    mid: str
    stream_id: str
    track_id: str
    ssrc: int
    cname: str
    rtx_ssrc: int | None = None
    closed: bool = False


def consumer_info(consumer: Json) -> ConsumerInfo:
    """A ConsumerInfo from newConsumer / join consumer data: mid 'a<id>' or 'v<id>'."""
    params = consumer["rtpParameters"]
    encoding = params["encodings"][0]
    rtx = (encoding.get("rtx") or {}).get("ssrc")
    return ConsumerInfo(
        id=consumer["id"],
        kind=consumer["kind"],
        mid=f"{consumer['kind'][0]}{consumer['id']}",
        stream_id=f"recv-stream-{consumer['id']}",
        track_id=f"consumer-{consumer['kind']}-{consumer['id']}",
        ssrc=encoding["ssrc"],
        cname=(params.get("rtcp") or {}).get("cname") or "",
        rtx_ssrc=rtx or None,
    )


def _session_lines(session_id: int, session_version: int, remote: Json, mids: list[str]) -> list[str]:
    ice = remote["iceParameters"]
    # "We take the latest fingerprint": the server lists sha-1 ... sha-512, so sha-512.
    fingerprint = remote["dtlsParameters"]["fingerprints"][-1]
    lines = [
        "v=0",
        f"o=mediasoup-client {session_id} {session_version} IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
    ]
    if ice.get("iceLite"):
        lines.append("a=ice-lite")
    if mids:
        lines.append(f"a=group:BUNDLE {' '.join(mids)}")
    lines.append("a=msid-semantic: WMS *")
    lines.append(f"a=fingerprint:{fingerprint['algorithm']} {fingerprint['value']}")
    return lines


def _transport_lines(remote: Json) -> list[str]:
    """ICE lines of one m-section: credentials, the server's candidates (component 1 only:
    rtcp-mux), end-of-candidates and the renomination option the client announces."""
    ice = remote["iceParameters"]
    lines = [f"a=ice-ufrag:{ice['usernameFragment']}", f"a=ice-pwd:{ice['password']}"]
    for cand in remote["iceCandidates"]:
        line = (
            f"a=candidate:{cand['foundation']} 1 {cand['protocol']} {cand['priority']} "
            f"{cand['ip']} {cand['port']} typ {cand['type']}"
        )
        if cand.get("tcpType"):
            line += f" tcptype {cand['tcpType']}"
        lines.append(line)
    lines += ["a=end-of-candidates", "a=ice-options:renomination"]
    return lines


def _codec_lines(codecs: list[Json]) -> list[str]:
    lines: list[str] = []
    for codec in codecs:
        pt = codec["payloadType"]
        rtpmap = f"a=rtpmap:{pt} {codec['name']}/{codec['clockRate']}"
        if (codec.get("channels") or 1) > 1:
            rtpmap += f"/{codec['channels']}"
        lines.append(rtpmap)
        config = ";".join(f"{k}={v}" for k, v in (codec.get("parameters") or {}).items())
        if config:
            lines.append(f"a=fmtp:{pt} {config}")
        for fb in codec.get("rtcpFeedback") or []:
            lines.append(f"a=rtcp-fb:{pt} {fb['type']}" + (f" {fb['parameter']}" if fb.get("parameter") else ""))
    return lines


def _m_line(kind: str, codecs: list[Json]) -> list[str]:
    # Port 7 and 127.0.0.1 are placeholders: candidates carry the real addresses.
    return [
        f"m={kind} 7 RTP/SAVPF {' '.join(str(c['payloadType']) for c in codecs)}",
        "c=IN IP4 127.0.0.1",
    ]


def setup_for_server_role(role: str | None) -> str:
    """a=setup of the send answer from the server's DTLS role.

    'client' -> active, 'server' -> passive. The client writes no line for 'auto'; Chrome
    takes a missing line as active, while aiortc rejects an answer without a=setup, so 'auto'
    (or none) is written as active: same outcome as in the browser.
    """
    return {"client": "active", "server": "passive"}.get(role or "auto", "active")


def build_send_answer_sdp(
    local_offer_sdp: str,
    remote: Json,
    rtp_parameters_by_kind: dict[str, Json],
    *,
    session_id: int,
    session_version: int,
) -> str:
    """The send transport's remote answer (RemoteUnifiedPlanSdp, send side).

    `remote` is createTransport's response ({iceParameters, iceCandidates, dtlsParameters});
    `rtp_parameters_by_kind` are get_sending_rtp_parameters() per kind (local PTs and ids).
    One m-section per local one, same mid and order: recvonly (inactive for a local
    recvonly/inactive one), the kind's sending codecs, the extensions of those parameters that
    the local section offers (none when inactive), rtcp-mux and rtcp-rsize.
    """
    local = SessionDescription.parse(local_offer_sdp)
    mids = [m.rtp.muxId for m in local.media if m.rtp.muxId is not None]
    lines = _session_lines(session_id, session_version, remote, mids)
    setup = setup_for_server_role(remote["dtlsParameters"].get("role"))
    for media in local.media:
        params = rtp_parameters_by_kind[media.kind]
        closed = media.direction == "inactive"
        lines += _m_line(media.kind, params["codecs"])
        lines += _codec_lines(params["codecs"])
        if not closed:  # the client leaves extmap out of inactive sections (Firefox)
            local_uris = {e.uri for e in media.rtp.headerExtensions}
            for ext in params["headerExtensions"]:
                if ext["uri"] in local_uris:
                    lines.append(f"a=extmap:{ext['id']} {ext['uri']}")
        lines.append(f"a=setup:{setup}")
        lines.append(f"a=mid:{media.rtp.muxId}")
        lines.append("a=recvonly" if media.direction in ("sendrecv", "sendonly") else "a=inactive")
        lines += _transport_lines(remote)
        lines += ["a=rtcp-mux", "a=rtcp-rsize"]
    return "\r\n".join(lines) + "\r\n"


def build_recv_offer_sdp(
    consumer_infos: list[ConsumerInfo],
    remote: Json,
    rtp_parameters_by_kind: dict[str, Json],
    *,
    session_id: int,
    session_version: int,
) -> str:
    """The recv transport's remote offer (RemoteUnifiedPlanSdp, recv side).

    One m-section per consumer so far (closed ones stay, inactive), mid 'a<id>'/'v<id>',
    msid `recv-stream-<id> consumer-<kind>-<id>`; every room codec of the kind with room PTs
    (get_receiving_full_rtp_parameters), every extension but sdes:mid, `a=setup:actpass`
    whatever the server's role, sendonly, and the consumer's SSRC (+RTX, FID group) with its
    cname. Demux is by SSRC.
    """
    lines = _session_lines(session_id, session_version, remote, [i.mid for i in consumer_infos])
    for info in consumer_infos:
        params = rtp_parameters_by_kind[info.kind]
        lines += _m_line(info.kind, params["codecs"])
        lines.append(f"a=mid:{info.mid}")
        lines.append(f"a=msid:{info.stream_id} {info.track_id}")
        lines += _transport_lines(remote)
        lines.append("a=setup:actpass")
        lines.append("a=inactive" if info.closed else "a=sendonly")
        lines += _codec_lines(params["codecs"])
        if not info.closed:
            for ext in params["headerExtensions"]:
                if ext["uri"] != SDES_MID_URI:  # the server never sends our mids
                    lines.append(f"a=extmap:{ext['id']} {ext['uri']}")
        lines += ["a=rtcp-mux", "a=rtcp-rsize"]
        if not info.closed:
            # aiortc takes the first a=ssrc as the media SSRC and the second as RTX.
            lines.append(f"a=ssrc:{info.ssrc} cname:{info.cname}")
            if info.rtx_ssrc:
                lines.append(f"a=ssrc:{info.rtx_ssrc} cname:{info.cname}")
                lines.append(f"a=ssrc-group:FID {info.ssrc} {info.rtx_ssrc}")
    return "\r\n".join(lines) + "\r\n"


# ------------------------------------------------------------------------------------------
# Native capabilities probe (Chrome70.getNativeRtpCapabilities)
# ------------------------------------------------------------------------------------------


def new_peer_connection() -> RTCPeerConnection:
    """A pc configured as Chrome70's: no ICE servers, max-bundle (rtcp-mux is always on).

    No ICE servers also keeps aiortc from querying its default public STUN server.
    """
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


_native_caps: Json | None = None


async def native_rtp_capabilities() -> Json:
    """aiortc's capabilities from an offer with one audio and one video transceiver (cached)."""
    global _native_caps
    if _native_caps is None:
        pc = new_peer_connection()
        try:
            pc.addTransceiver("audio")
            pc.addTransceiver("video")
            offer = await pc.createOffer()
        finally:
            await pc.close()
        _native_caps = extract_rtp_capabilities(offer.sdp)
    return copy.deepcopy(_native_caps)


def _ensure_ice_controlling(pc: RTCPeerConnection) -> None:
    """Make sure aiortc is the ICE-controlling agent towards the ICE-lite server.

    An ICE-lite agent is always controlled, so the full agent must control and nominate.
    aiortc 1.16 does that by itself (controlling when it offers; `ice_controlling =
    media.ice.iceLite` when it applies a remote offer), so this normally changes nothing. It
    pokes aioice's Connection only if an aiortc ever stops doing so, rather than letting both
    sides wait for the other to nominate.
    """
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        if ice.role != "controlling":
            ice._connection.ice_controlling = True


# ------------------------------------------------------------------------------------------
# The client
# ------------------------------------------------------------------------------------------


@dataclass
class MsProducer:
    """A producer created by MsPeer.produce()."""

    id: int
    kind: str
    track: MediaStreamTrack
    transport_id: int
    rtp_parameters: Json
    transceiver: Any
    app_data: Any = None
    closed: bool = False
    paused_by_server: bool = False


@dataclass
class MsConsumer:
    """A consumer received by MsPeer.consume(); counts the frames aiortc decodes."""

    id: int
    kind: str
    peer_name: str | None
    rtp_parameters: Json
    transport_id: int
    track: MediaStreamTrack
    app_data: Any = None
    paused: bool = False
    preferred_profile: str | None = None
    effective_profile: str | None = None
    closed: bool = False
    frames: int = 0
    last_frame: Any = None
    # Longest time between two decoded frames (s): the freeze a viewer would have seen.
    max_gap: float = 0.0
    _last_at: float = 0.0
    _frame_seen: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        """Drain the track in the background (an unread aiortc track queues every frame)."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(
                self._read(), name=f"msclient consumer {self.id}"
            )

    async def _read(self) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await self.track.recv()
                now = asyncio.get_running_loop().time()
                if self.frames:
                    self.max_gap = max(self.max_gap, now - self._last_at)
                self._last_at = now
                self.frames += 1
                self.last_frame = frame
                self._frame_seen.set()

    async def wait_frames(self, count: int, timeout: float = 10.0) -> int:
        """Wait until `count` frames in all were decoded; returns the number so far."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.frames < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"consumer {self.id} ({self.kind}) decoded {self.frames} of {count} frames "
                    f"within {timeout} s"
                )
            self._frame_seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._frame_seen.wait(), remaining)
        return self.frames

    async def stop_reading(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await self._reader
            self._reader = None


RoomLike = Any  # a RoomDriver (has .client and .id) or a (TureenClient, room_id) tuple


def _room_target(room: RoomLike) -> tuple[Any, str]:
    if isinstance(room, tuple):
        client, room_id = room
        return client, room_id
    return room.client, room.id


class MsPeer:
    """One mediasoup-client v2 peer (Chrome70 handler) on aiortc, through the control API.

    All server-bound messages go through a TureenClient (peer_request / peer_notify); that
    client must be the room's event subscriber (the one that created it, or room.subscribe),
    since notifications for this peer arrive as its events. Every step is bounded by `timeout`.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        transport_options: Json | None = None,
        all_fingerprints: bool = False,
        raise_notify_errors: bool = True,
    ) -> None:
        self.timeout = timeout
        self.transport_options = copy.deepcopy(transport_options or DEFAULT_TRANSPORT_OPTIONS)
        self.all_fingerprints = all_fingerprints
        # The client never hears about a failed notification; a test usually wants to.
        self.raise_notify_errors = raise_notify_errors

        self.client: Any = None
        self.room_id: str | None = None
        self.name: str | None = None
        self.joined = False
        self.closed = False
        self.closed_by_server = False
        self.room_capabilities: Json | None = None
        self.extended: Json | None = None
        self.rtp_capabilities: Json | None = None
        self.peers: dict[str, Json] = {}
        self.notifications: list[Json] = []
        self.notify_errors: list[Exception] = []
        self.producers: dict[int, MsProducer] = {}
        self.consumers: dict[int, MsConsumer] = {}
        self.consumer_data: dict[int, Json] = {}  # every consumer announced, by id
        self._unclaimed: list[int] = []  # announced, not yet returned by next_consumer()
        self._changed = asyncio.Event()

        self.send_transport_id = random_id()
        self.recv_transport_id = random_id()
        while self.recv_transport_id == self.send_transport_id:
            self.recv_transport_id = random_id()
        self.send_pc: RTCPeerConnection | None = None
        self.recv_pc: RTCPeerConnection | None = None
        self.send_transport: Json | None = None  # createTransport response
        self.recv_transport: Json | None = None
        self._recv_transport_updated = False
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._session_id = random_id()
        self._send_version = 0
        self._recv_version = 0
        self._consumer_infos: dict[int, ConsumerInfo] = {}

    # -------------------------------------------------------------- signaling

    async def _bounded(self, what: str, awaitable: Any) -> Any:
        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.name}: {what} took more than {self.timeout} s") from None

    async def request(self, method: str, **data: Any) -> Any:
        """Send a client->server request; returns the response (raises ProtocolError)."""
        target = "room" if method in ("queryRoom", "join") else "peer"
        message = {"method": method, "target": target, **data}
        peer = None if target == "room" else self.name
        return await self._bounded(method, self.client.peer_request(self.room_id, peer, message))

    async def notify(self, method: str, **data: Any) -> None:
        """Send a client->server notification (errors raised when raise_notify_errors)."""
        message = {"method": method, "target": "peer", "notification": True, **data}
        try:
            await self._bounded(method, self.client.peer_notify(self.room_id, self.name, message))
        except Exception as exc:
            self.notify_errors.append(exc)
            if self.raise_notify_errors:
                raise

    def _on_event(self, event: Json) -> None:
        """TureenClient callback: keep this peer's notifications and act on them (sync)."""
        if (
            self.closed
            or event.get("event") != "notification"
            or event.get("roomId") != self.room_id
            or event.get("peerName") != self.name
        ):
            return
        note = event.get("notification") or {}
        self.notifications.append(note)
        method = note.get("method")
        note_id = note.get("id")
        if method == "newConsumer":
            self._add_consumer_data(note)
        elif method == "newPeer":
            self.peers[note["name"]] = note
            for data in note.get("consumers") or []:  # always empty in v2, kept for safety
                self._add_consumer_data({**data, "peerName": note["name"]})
        elif method == "peerClosed":
            self.peers.pop(note.get("name"), None)
        elif method == "consumerClosed":
            consumer = self.consumers.get(note_id)
            if consumer is not None:
                consumer.closed = True
                if consumer._reader is not None:
                    consumer._reader.cancel()
            if note_id in self._consumer_infos:
                self._consumer_infos[note_id].closed = True
            with contextlib.suppress(ValueError):
                self._unclaimed.remove(note_id)
        elif method in ("consumerPaused", "consumerResumed") and note_id in self.consumers:
            self.consumers[note_id].paused = method == "consumerPaused"
        elif method == "consumerEffectiveProfileChanged" and note_id in self.consumers:
            self.consumers[note_id].effective_profile = note.get("profile")
        elif method == "consumerPreferredProfileSet" and note_id in self.consumers:
            self.consumers[note_id].preferred_profile = note.get("profile")
        elif method in ("producerPaused", "producerResumed") and note_id in self.producers:
            self.producers[note_id].paused_by_server = method == "producerPaused"
        elif method == "producerClosed" and note_id in self.producers:
            self.producers[note_id].closed = True
        elif method == "transportClosed" and note_id == self.send_transport_id:
            # Chrome70 remoteClosed(): the next producer re-sends createTransport (same id).
            self.send_transport = None
        elif method == "closed":
            self.closed_by_server = True
        self._changed.set()

    def _add_consumer_data(self, data: Json) -> None:
        if data.get("id") in self.consumer_data:
            return
        self.consumer_data[data["id"]] = data
        self._unclaimed.append(data["id"])
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float | None = None) -> Any:
        """Wait until predicate() is truthy (re-checked on each notification); returns it."""
        loop = asyncio.get_running_loop()
        limit = self.timeout if timeout is None else timeout
        deadline = loop.time() + limit
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no {what} within {limit} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.25))

    async def wait_notification(self, method: str, timeout: float | None = None, **match: Any) -> Json:
        """The first notification `method` (with those fields) this peer got, waiting for it."""

        def found() -> Json | None:
            return next(
                (
                    n
                    for n in self.notifications
                    if n.get("method") == method and all(n.get(k) == v for k, v in match.items())
                ),
                None,
            )

        return await self.wait_for(found, f"{method} notification {match or ''}", timeout)

    async def next_consumer(
        self, *, kind: str | None = None, peer_name: str | None = None, timeout: float | None = None
    ) -> Json:
        """The oldest announced consumer (join or newConsumer) not yet handed out, waiting."""

        def found() -> Json | None:
            for consumer_id in self._unclaimed:
                data = self.consumer_data[consumer_id]
                if (kind is None or data["kind"] == kind) and (
                    peer_name is None or data.get("peerName") == peer_name
                ):
                    self._unclaimed.remove(consumer_id)
                    return data
            return None

        return await self.wait_for(found, f"consumer (kind={kind}, peer={peer_name})", timeout)

    # -------------------------------------------------------------- room

    async def join(
        self,
        room: RoomLike,
        name: str,
        *,
        app_data: Any = None,
        spy: bool = False,
        room_settings: Json | None = None,
    ) -> Json:
        """queryRoom (unless room_settings) then join; returns join's response.

        The consumers of the response's peers become available to next_consumer().
        """
        self.client, self.room_id = _room_target(room)
        self.name = name
        self.client.on_event(self._on_event)

        settings = room_settings or await self.request("queryRoom")
        self.room_capabilities = settings["rtpCapabilities"]
        native = await self._bounded("native capabilities probe", native_rtp_capabilities())
        self.extended = get_extended_rtp_capabilities(native, self.room_capabilities)
        missing = unsupported_mandatory_codecs(
            self.room_capabilities, settings.get("mandatoryCodecPayloadTypes"), self.extended
        )
        if missing:
            raise MsClientError(f"mandatory room codecs not supported: {missing}")
        self.rtp_capabilities = get_rtp_capabilities(self.extended)

        data: Json = {"peerName": name, "rtpCapabilities": self.rtp_capabilities, "spy": spy}
        if app_data is not None:  # undefined fields vanish from the client's JSON
            data["appData"] = app_data
        response = await self.request("join", **data)
        self.joined = True
        for peer in response.get("peers") or []:
            self.peers[peer["name"]] = peer
            for consumer in peer.get("consumers") or []:
                self._add_consumer_data({"peerName": peer["name"], **consumer})
        return response

    async def leave(self, app_data: Any = None) -> None:
        """The `leave` notification, then close everything locally (the client sends no more)."""
        if self.joined and not self.closed and not self.closed_by_server:
            data = {} if app_data is None else {"appData": app_data}
            try:
                await self.notify("leave", **data)
            finally:
                await self.close()
        else:
            await self.close()

    async def close(self) -> None:
        """Stop reading consumers and close both peer connections; sends nothing. Idempotent."""
        if self.closed:
            return
        self.closed = True  # also silences _on_event (TureenClient cannot drop a callback)
        for consumer in self.consumers.values():
            await consumer.stop_reading()
        for pc in (self.send_pc, self.recv_pc):
            if pc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), self.timeout)

    async def __aenter__(self) -> MsPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -------------------------------------------------------------- sending

    def _require_joined(self) -> Json:
        if not self.joined or self.closed or self.extended is None:
            raise MsClientError(f"{self.name}: not joined (or closed)")
        return self.extended

    async def produce(
        self,
        track: MediaStreamTrack,
        kind: str | None = None,
        *,
        app_data: Any = None,
        paused: bool = False,
    ) -> MsProducer:
        """producer.send(): negotiate the track on the send pc, then createProducer."""
        extended = self._require_joined()
        kind = kind or track.kind
        if kind not in ("audio", "video"):
            raise MsClientError(f"invalid kind {kind!r}")
        if not can_send(kind, extended):
            raise MsClientError(f"cannot send {kind}")
        producer_id = random_id()
        async with self._send_lock:
            if self.send_pc is None:
                self.send_pc = new_peer_connection()
            pc = self.send_pc
            transceiver = pc.addTransceiver(track, direction="sendonly")
            offer = await self._bounded("createOffer", pc.createOffer())
            await self._bounded("setLocalDescription", pc.setLocalDescription(offer))
            local_sdp = pc.localDescription.sdp
            if self.send_transport is None:
                dtls = extract_dtls_parameters(local_sdp, all_fingerprints=self.all_fingerprints)
                dtls["role"] = "server"  # Chrome70: "we'll be DTLS server (because we can)"
                data: Json = {
                    "id": self.send_transport_id,
                    "direction": "send",
                    "options": self.transport_options,
                    "dtlsParameters": dtls,
                }
                self.send_transport = await self.request("createTransport", **data)
            params_by_kind = {
                k: get_sending_rtp_parameters(k, extended) for k in ("audio", "video")
            }
            self._send_version += 1
            answer = build_send_answer_sdp(
                local_sdp,
                self.send_transport,
                params_by_kind,
                session_id=self._session_id,
                session_version=self._send_version,
            )
            await self._bounded(
                "setRemoteDescription(answer)",
                pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer")),
            )
            rtp_parameters = fill_rtp_parameters_for_track(
                params_by_kind[kind], local_sdp, str(transceiver.mid)
            )

        data = {
            "id": producer_id,
            "kind": kind,
            "transportId": self.send_transport_id,
            "rtpParameters": rtp_parameters,
            "paused": paused,
        }
        if app_data is not None:
            data["appData"] = app_data
        await self.request("createProducer", **data)
        producer = MsProducer(
            id=producer_id,
            kind=kind,
            track=track,
            transport_id=self.send_transport_id,
            rtp_parameters=rtp_parameters,
            transceiver=transceiver,
            app_data=app_data,
        )
        self.producers[producer_id] = producer
        return producer

    async def pause_producer(self, producer: MsProducer, app_data: Any = None) -> None:
        await self.notify("pauseProducer", id=producer.id, **_app(app_data))

    async def resume_producer(self, producer: MsProducer, app_data: Any = None) -> None:
        await self.notify("resumeProducer", id=producer.id, **_app(app_data))

    async def close_producer(self, producer: MsProducer, app_data: Any = None) -> None:
        """`closeProducer`, then stop the sender (aiortc has no removeTrack; the client's
        renegotiation that follows is local and sends nothing)."""
        producer.closed = True
        await self.notify("closeProducer", id=producer.id, **_app(app_data))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.transceiver.sender.stop(), self.timeout)

    # -------------------------------------------------------------- receiving

    async def consume(
        self, consumer: Json, *, paused: bool = False, preferred_profile: str = "default"
    ) -> MsConsumer:
        """consumer.receive(): negotiate it on the recv pc, updateTransport once, enableConsumer.

        `consumer` is a newConsumer notification or a consumer of join's response (with
        peerName). The returned MsConsumer is already draining and counting frames.
        """
        extended = self._require_joined()
        if not can_receive(consumer["rtpParameters"], extended):
            raise MsClientError(f"consumer {consumer['id']}: unsupported codecs")
        if consumer["id"] in self._consumer_infos:
            raise MsClientError(f"consumer {consumer['id']} already added")
        with contextlib.suppress(ValueError):
            self._unclaimed.remove(consumer["id"])
        info = consumer_info(consumer)
        async with self._recv_lock:
            self._consumer_infos[info.id] = info
            if self.recv_pc is None:
                self.recv_pc = new_peer_connection()
            pc = self.recv_pc
            if self.recv_transport is None:
                data: Json = {
                    "id": self.recv_transport_id,
                    "direction": "recv",
                    "options": self.transport_options,
                }
                self.recv_transport = await self.request("createTransport", **data)
            await self._negotiate_recv(pc)
            if not self._recv_transport_updated:
                dtls = extract_dtls_parameters(
                    pc.localDescription.sdp, all_fingerprints=self.all_fingerprints
                )
                await self.notify("updateTransport", id=self.recv_transport_id, dtlsParameters=dtls)
                self._recv_transport_updated = True
            transceiver = next((t for t in pc.getTransceivers() if t.mid == info.mid), None)
            if transceiver is None or transceiver.receiver.track is None:
                raise MsClientError(f"consumer {info.id}: remote track not found")
            track = transceiver.receiver.track

        response = await self.request(
            "enableConsumer",
            id=info.id,
            transportId=self.recv_transport_id,
            paused=paused,
            preferredProfile=preferred_profile,
        )
        result = MsConsumer(
            id=info.id,
            kind=info.kind,
            peer_name=consumer.get("peerName"),
            rtp_parameters=consumer["rtpParameters"],
            transport_id=self.recv_transport_id,
            track=track,
            app_data=consumer.get("appData"),
            paused=bool(response.get("paused")),
            preferred_profile=response.get("preferredProfile"),
            effective_profile=response.get("effectiveProfile"),
        )
        self.consumers[info.id] = result
        result.start_reading()
        return result

    async def _negotiate_recv(self, pc: RTCPeerConnection) -> None:
        """Remote offer of every consumer so far, then our answer (RecvHandler's steps)."""
        assert self.extended is not None and self.recv_transport is not None
        params_by_kind = {
            k: get_receiving_full_rtp_parameters(k, self.extended) for k in ("audio", "video")
        }
        self._recv_version += 1
        offer = build_recv_offer_sdp(
            list(self._consumer_infos.values()),
            self.recv_transport,
            params_by_kind,
            session_id=self._session_id,
            session_version=self._recv_version,
        )
        await self._bounded(
            "setRemoteDescription(offer)",
            pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer")),
        )
        _ensure_ice_controlling(pc)
        answer = await self._bounded("createAnswer", pc.createAnswer())
        await self._bounded("setLocalDescription(answer)", pc.setLocalDescription(answer))

    async def close_consumer(self, consumer: MsConsumer) -> None:
        """consumer.close(): local only (the client sends nothing); its m-section goes inactive."""
        consumer.closed = True
        await consumer.stop_reading()
        async with self._recv_lock:
            info = self._consumer_infos.get(consumer.id)
            if info is not None and not info.closed and self.recv_pc is not None:
                info.closed = True
                await self._negotiate_recv(self.recv_pc)

    async def pause_consumer(self, consumer: MsConsumer, app_data: Any = None) -> None:
        await self.notify("pauseConsumer", id=consumer.id, **_app(app_data))

    async def resume_consumer(self, consumer: MsConsumer, app_data: Any = None) -> None:
        await self.notify("resumeConsumer", id=consumer.id, **_app(app_data))

    async def set_preferred_profile(self, consumer: MsConsumer, profile: str) -> None:
        await self.notify("setConsumerPreferredProfile", id=consumer.id, profile=profile)

    # -------------------------------------------------------------- state

    async def wait_connected(self, direction: str = "send", timeout: float | None = None) -> None:
        """Wait for that pc's connectionState 'connected' (ICE and DTLS up); fails on 'failed'."""
        pc = self.send_pc if direction == "send" else self.recv_pc
        if pc is None:
            raise MsClientError(f"{self.name}: no {direction} transport yet")

        def state() -> str | None:
            if pc.connectionState == "failed":
                raise MsClientError(f"{self.name}: {direction} pc failed (ICE or DTLS)")
            return "connected" if pc.connectionState == "connected" else None

        connected = asyncio.Event()
        pc.on("connectionstatechange", lambda: connected.set())
        loop = asyncio.get_running_loop()
        limit = self.timeout if timeout is None else timeout
        deadline = loop.time() + limit
        while not state():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.name}: {direction} pc not connected within {limit} s "
                    f"(ice {pc.iceConnectionState}, connection {pc.connectionState})"
                )
            connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connected.wait(), min(remaining, 0.25))


def _app(app_data: Any) -> Json:
    return {} if app_data is None else {"appData": app_data}
