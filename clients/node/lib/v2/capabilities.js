'use strict';
// A room's rtpCapabilities from its mediaCodecs, computed here so that Server.Room() can return
// a room with its capabilities synchronously, as mediasoup v2 does. The same rule as Tureen's
// shared/rtp/capabilities.py (room_rtp_capabilities); the server's reply to room.create
// replaces this result when it arrives (a test checks that both agree).

// Dynamic payload types in the order v2 hands them out (Opus, VP8 -> 100, 101, ...).
const DYNAMIC_PAYLOAD_TYPES = [];
for (const [from, to] of [[100, 128], [96, 100], [77, 96], [35, 72]]) {
  for (let pt = from; pt < to; pt += 1) DYNAMIC_PAYLOAD_TYPES.push(pt);
}

const VIDEO_FEEDBACK = [
  { type: 'nack' },
  { type: 'nack', parameter: 'pli' },
  { type: 'ccm', parameter: 'fir' },
  { type: 'goog-remb' },
];

// [kind, name, clockRates, static payload type, row parameters]
const SUPPORTED_CODECS = [
  ['audio', 'opus', [48000], null, {}],
  ['audio', 'PCMU', [8000], 0, {}],
  ['audio', 'PCMA', [8000], 8, {}],
  ['audio', 'ISAC', [32000, 16000], null, {}],
  ['audio', 'G722', [8000], 9, {}],
  ['audio', 'iLBC', [8000], null, {}],
  ['audio', 'SILK', [24000, 16000, 12000, 8000], null, {}],
  ['audio', 'CN', [32000, 16000, 8000], 13, {}],
  ['audio', 'telephone-event', [48000, 32000, 16000, 8000], null, {}],
  ['video', 'VP8', [90000], null, {}],
  ['video', 'VP9', [90000], null, {}],
  ['video', 'H264', [90000], null, { 'packetization-mode': 0 }],
  ['video', 'H264', [90000], null, { 'packetization-mode': 1 }],
  ['video', 'H265', [90000], null, {}],
];

const SDES_MID_URI = 'urn:ietf:params:rtp-hdrext:sdes:mid';
const HEADER_EXTENSIONS = [
  ['audio', 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', 1],
  ['video', 'urn:ietf:params:rtp-hdrext:toffset', 2],
  ['audio', 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', 3],
  ['video', 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', 3],
  ['video', 'urn:3gpp:video-orientation', 4],
  ['audio', SDES_MID_URI, 5],
  ['video', SDES_MID_URI, 5],
  ['video', 'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id', 6],
];

const clone = (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));

function kindAndName(codec) {
  let { kind, name } = codec;
  if (typeof codec.mimeType === 'string' && codec.mimeType.includes('/')) {
    const [mimeKind, ...rest] = codec.mimeType.split('/');
    name = rest.join('/');
    kind = kind || mimeKind.toLowerCase();
  }
  return [kind || null, String(name || '')];
}

function describe(codec) {
  const [kind, name] = kindAndName(codec);
  let text = kind ? `${kind}/${name}` : name;
  text += ` ${codec.clockRate}`;
  if (codec.channels !== undefined && codec.channels !== null && codec.channels !== 1) text += `/${codec.channels}`;
  return text;
}

/** v2's codec match: kind, name (any case), clockRate, audio channels, H264 packetization-mode. */
function codecMatches(a, b) {
  const [aKind, aName] = kindAndName(a);
  const [bKind, bName] = kindAndName(b);
  if (aKind && bKind && aKind !== bKind) return false;
  if (aName.toLowerCase() !== bName.toLowerCase() || a.clockRate !== b.clockRate) return false;
  const one = (ch) => ch === undefined || ch === null || ch === 1;
  if ((aKind === 'audio' || bKind === 'audio') && (!one(a.channels) || !one(b.channels)) && a.channels !== b.channels) return false;
  if (aName.toLowerCase() === 'h264') {
    const pm = (c) => (c.parameters || {})['packetization-mode'] || 0;
    if (pm(a) !== pm(b)) return false;
  }
  return true;
}

function supportedRows() {
  const rows = [];
  for (const [kind, name, clockRates, pt, params] of SUPPORTED_CODECS) {
    for (const clockRate of clockRates) {
      const row = { kind, name, mimeType: `${kind}/${name}`, clockRate };
      if (kind === 'audio') row.channels = name === 'opus' ? 2 : 1;
      row.parameters = { ...params };
      row.rtcpFeedback = kind === 'video' ? VIDEO_FEEDBACK.map((fb) => ({ ...fb })) : [];
      if (pt !== null) row.preferredPayloadType = pt;
      rows.push(row);
    }
  }
  return rows;
}

const isPositiveInteger = (value) => Number.isInteger(value) && value > 0;

/**
 * The room's rtpCapabilities for `mediaCodecs` (v2's generateRoomRtpCapabilities); throws a
 * TypeError saying which entry is wrong, or an Error for a codec Tureen does not support.
 */
function roomRtpCapabilities(mediaCodecs) {
  if (!Array.isArray(mediaCodecs)) throw new TypeError('mediaCodecs must be an array of codecs');
  if (mediaCodecs.length === 0) throw new TypeError('mediaCodecs cannot be empty');
  const rows = supportedRows();
  let nextDynamic = 0;
  const codecs = [];
  mediaCodecs.forEach((mediaCodec, index) => {
    const where = `mediaCodecs[${index}]`;
    if (mediaCodec === null || typeof mediaCodec !== 'object' || Array.isArray(mediaCodec)) throw new TypeError(`${where} must be an object`);
    if (mediaCodec.kind !== 'audio' && mediaCodec.kind !== 'video') throw new TypeError(`${where}.kind must be 'audio' or 'video', not ${JSON.stringify(mediaCodec.kind)}`);
    if (typeof mediaCodec.name !== 'string' || !mediaCodec.name) throw new TypeError(`${where}.name must be a non-empty string`);
    if (!isPositiveInteger(mediaCodec.clockRate)) throw new TypeError(`${where}.clockRate must be a positive integer`);
    if (mediaCodec.channels !== undefined && mediaCodec.channels !== null && !isPositiveInteger(mediaCodec.channels)) {
      throw new TypeError(`${where}.channels must be a positive integer`);
    }
    const params = mediaCodec.parameters;
    if (params !== undefined && params !== null && (typeof params !== 'object' || Array.isArray(params))) {
      throw new TypeError(`${where}.parameters must be an object`);
    }
    const { mimeType, ...wanted } = mediaCodec; // v2 ignores an app's mimeType
    void mimeType;
    const row = rows.find((r) => codecMatches(wanted, r));
    if (row === undefined) throw new Error(`${where}: codec ${describe(wanted)} is not supported`);
    if (codecs.some((c) => codecMatches(row, c))) throw new TypeError(`${where}: codec ${describe(row)} is listed twice`);
    const codec = clone(row);
    Object.assign(codec.parameters, clone(params || {}));
    if (codec.preferredPayloadType === undefined) codec.preferredPayloadType = DYNAMIC_PAYLOAD_TYPES[nextDynamic++];
    codecs.push(codec);
    if (codec.kind === 'video') {
      codecs.push({
        kind: 'video',
        name: 'rtx',
        mimeType: 'video/rtx',
        preferredPayloadType: DYNAMIC_PAYLOAD_TYPES[nextDynamic++],
        clockRate: codec.clockRate,
        parameters: { apt: codec.preferredPayloadType },
      });
    }
  });
  const headerExtensions = HEADER_EXTENSIONS.map(([kind, uri, preferredId]) => ({ kind, uri, preferredId, preferredEncrypt: false }));
  return { codecs, headerExtensions, fecMechanisms: [] };
}

module.exports = { roomRtpCapabilities };
