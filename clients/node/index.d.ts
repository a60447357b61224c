// Type declarations of @tureen/client: the Node client of Tureen's control API
// (docs/control-api.md). Times are in milliseconds.

import { EventEmitter } from 'node:events';

export declare const DEFAULT_ENDPOINT: string;

/** The error codes of docs/control-api.md ("Envelope"). */
export declare const ErrorCode: {
  readonly BAD_REQUEST: 'bad_request';
  readonly UNKNOWN_METHOD: 'unknown_method';
  readonly NOT_FOUND: 'not_found';
  readonly DUPLICATE: 'duplicate';
  readonly INVALID_STATE: 'invalid_state';
  readonly UNSUPPORTED: 'unsupported';
  readonly UNAVAILABLE: 'unavailable';
  readonly LIMIT: 'limit';
  readonly INTERNAL: 'internal';
};
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** A refused request: switch on `code`, show `message`. */
export declare class TureenError extends Error {
  constructor(code: string, message: string, method?: string | null);
  readonly code: ErrorCodeValue;
  /** The control method of the request (null for event waits). */
  readonly method: string | null;
  static fromWire(error: unknown, method?: string | null): TureenError;
}

/** No reply within the timeout (code `unavailable`); the request may still run later. */
export declare class TureenTimeoutError extends TureenError {
  constructor(message: string, method: string | null, timeoutMs: number);
  readonly code: 'unavailable';
  /** The timeout that passed, in ms. */
  readonly timeout: number;
}

/** A request id: an integer (this client uses 1, 2, ...) or a string. */
export type RequestId = number | string;

export interface CurveCertOptions {
  /** This client's secret certificate (NAME.key_secret from `tureen keys generate`). */
  cert: string;
  /** The server's public certificate (NAME.key) or its 40-character Z85 public key. */
  serverKey: string;
}
export interface CurveKeyOptions {
  /** This client's public and secret keys, 40 Z85 characters each. */
  publicKey: string;
  secretKey: string;
  /** The server's public certificate (NAME.key) or its 40-character Z85 public key. */
  serverKey: string;
}

export interface TureenClientOptions {
  /** Default timeout of every request in ms (15000). */
  timeout?: number;
  /** Connect as a CURVE client (docs/security.md). */
  curve?: CurveCertOptions | CurveKeyOptions;
  /** Events kept for nextEvent(), oldest dropped first (1000; 0 keeps none). */
  maxQueuedEvents?: number;
  /** A ZeroMQ routing id of your own (docs/control-api.md, "Transport"); random by default. */
  routingId?: string;
  /** Subscribe again to this client's rooms after a reconnection (true). */
  resubscribe?: boolean;
}

export interface Certificate {
  publicKey: string;
  /** null in a public certificate (NAME.key). */
  secretKey: string | null;
}

export declare function parseCertificate(text: string, where?: string): Certificate;
export declare function loadCertificate(path: string): Certificate;
export declare function loadPublicKey(value: string): string;

// ------------------------------------------------------------------ messages

export type AppData = unknown;

export interface MediaCodec {
  kind: 'audio' | 'video';
  name: string;
  clockRate: number;
  channels?: number;
  parameters?: Record<string, unknown>;
}

export interface RtpCapabilities {
  codecs: Array<Record<string, unknown>>;
  headerExtensions: Array<Record<string, unknown>>;
  fecMechanisms: string[];
}

export interface CreatedRoom {
  roomId: string;
  rtpCapabilities: RtpCapabilities;
}

export interface RoomSummary {
  roomId: string;
  peers: number;
  transports: number;
  producers: number;
  consumers: number;
}

export interface Subscription {
  roomId: string;
  subscribers: number;
}

export interface WorkerInfo {
  index: number;
  /** null while the worker is being (re)started. */
  pid: number | null;
  /** The CPU it is pinned to, or null. */
  cpu: number | null;
  alive: boolean;
  uptime: number;
  /** The worker's last report: transports, producers, consumers, packetsIn, ... */
  load: Record<string, unknown> | null;
}

export interface HostEntry {
  name: string;
  /** up: takes new peers; draining: an operator drained it (hostsDrain); lost: its link is gone. */
  state: 'up' | 'draining' | 'lost';
  /** Whether this is the supervisor's own machine (config host_name). */
  local: boolean;
  /** Indexes (as in serverInfo().workers) of its live workers. */
  workers: number[];
  transports: number;
  cpuPercent: number;
}

export interface HostList {
  /** hosts_listen, or null when the server accepts no remote hosts. */
  listening: string | null;
  hosts: HostEntry[];
}

export interface PlaceOptions {
  /** A host's name: its least loaded worker. */
  host?: string;
  /** A worker's index; with `host`, it must be on that host. */
  worker?: number;
}

export interface ServerInfo {
  version: string;
  pid: number;
  uptime: number;
  controlEndpoint: string;
  rooms: number;
  /** true once the start finished and at least one worker is alive. */
  ready: boolean;
  tasks: number;
  rss: number;
  workers: WorkerInfo[];
  [key: string]: unknown;
}

export interface ScaleResult {
  /** The workers after the change (as in server.info). */
  workers: WorkerInfo[];
  /** Indexes of the retired workers. */
  retired: number[];
}

/** A client->server (or server->client) mediasoup v2 protocol message. */
export interface ProtocolMessage {
  method: string;
  target: 'room' | 'peer';
  notification?: true;
  [key: string]: unknown;
}

export interface NotificationEvent {
  event: 'notification';
  roomId: string;
  peerName: string;
  notification: ProtocolMessage;
}
export interface PeerJoinedEvent {
  event: 'peer.joined';
  roomId: string;
  peerName: string;
  spy: boolean;
  appData: AppData;
}
export interface PeerClosedEvent {
  event: 'peer.closed';
  roomId: string;
  peerName: string;
}
export interface TransportClosedEvent {
  event: 'transport.closed';
  roomId: string;
  peerName: string;
  transportId: number;
  reason: string;
}
export interface TransportStateEvent {
  event: 'transport.iceState' | 'transport.dtlsState';
  roomId: string;
  peerName: string;
  transportId: number;
  state: string;
}
export interface RoomClosedEvent {
  event: 'room.closed';
  roomId: string;
}
export interface RoomCreatedEvent {
  event: 'room.created';
  roomId: string;
  appData: AppData;
}
export interface AudioLevel {
  peerName: string;
  producerId: number;
  /** dBov, 0 loudest, -127 silence. */
  audioLevel: number;
}
export interface AudioLevelsEvent {
  event: 'room.audioLevels';
  roomId: string;
  /** Loudest first; empty when nobody is above the threshold. */
  levels: AudioLevel[];
}
export interface ActiveSpeakerEvent {
  event: 'room.activeSpeaker';
  roomId: string;
  peerName: string | null;
  producerId: number | null;
}
export interface RtpStreamerClosedEvent {
  event: 'rtpStreamer.closed';
  roomId: string;
  streamerId: number;
}
export type TureenEvent =
  | NotificationEvent
  | RoomCreatedEvent
  | AudioLevelsEvent
  | ActiveSpeakerEvent
  | RtpStreamerClosedEvent
  | PeerJoinedEvent
  | PeerClosedEvent
  | TransportClosedEvent
  | TransportStateEvent
  | RoomClosedEvent;

export interface ConnectionInfo {
  endpoint: string;
}

export interface TureenClientEvents {
  /** Every event, as received. */
  event: [event: TureenEvent];
  /** A server->client protocol message: send `notification` to that peer's client as is. */
  notification: [roomId: string, peerName: string, notification: ProtocolMessage, event: NotificationEvent];
  'peer.joined': [event: PeerJoinedEvent];
  'peer.closed': [event: PeerClosedEvent];
  'transport.closed': [event: TransportClosedEvent];
  'transport.iceState': [event: TransportStateEvent];
  'transport.dtlsState': [event: TransportStateEvent];
  'room.closed': [event: RoomClosedEvent];
  /** Only on a server.subscribe'd connection. */
  'room.created': [event: RoomCreatedEvent];
  'room.audioLevels': [event: AudioLevelsEvent];
  'room.activeSpeaker': [event: ActiveSpeakerEvent];
  'rtpStreamer.closed': [event: RtpStreamerClosedEvent];
  /** A ZeroMQ connection came up (`reconnect`: not the first one). */
  connect: [info: ConnectionInfo & { reconnect: boolean }];
  disconnect: [info: ConnectionInfo];
  /** The handshake failed (CURVE key refused, CURVE on one side only). */
  handshakeError: [info: ConnectionInfo & { message: string }];
  /** A room of this client the server no longer has (it restarted): create it again. */
  roomLost: [roomId: string];
  /** A room subscription renewed after a reconnection (null: the server-wide one). */
  resubscribed: [roomId: string | null];
  resubscribeError: [roomId: string | null, error: TureenError];
  /** The socket's reader failed (not on close()). */
  clientError: [error: Error];
  close: [];
}

export interface RequestOptions {
  /** This request's timeout in ms (the client's `timeout` otherwise). */
  timeout?: number;
}

export declare class TureenClient extends EventEmitter {
  constructor(endpoint?: string, options?: TureenClientOptions);
  readonly endpoint: string;
  timeout: number;
  readonly maxQueuedEvents: number;
  /** Whether a ZeroMQ connection to the server is up now. */
  readonly connected: boolean;
  /** Why the last handshake failed, or null. */
  readonly handshakeError: string | null;

  connect(): Promise<this>;
  close(): Promise<void>;

  /** Any control method: resolves with the reply's `data`. */
  request<T = unknown>(method: string, params?: Record<string, unknown>, options?: RequestOptions): Promise<T>;

  createRoom(mediaCodecs: MediaCodec[], options?: { roomId?: string; appData?: AppData }): Promise<CreatedRoom>;
  closeRoom(roomId: string): Promise<null>;
  listRooms(): Promise<RoomSummary[]>;
  dumpRoom(roomId: string): Promise<Record<string, unknown>>;
  subscribe(roomId: string): Promise<Subscription>;
  unsubscribe(roomId: string): Promise<Subscription>;
  /** server.subscribe: every room's lifecycle events on this connection (renewed after a reconnection). */
  subscribeServer(): Promise<{ subscribers: number }>;
  unsubscribeServer(): Promise<{ subscribers: number }>;

  /** room.request: peerName null for queryRoom and join. Resolves with the protocol response. */
  peerRequest<T = any>(roomId: string, peerName: string | null, request: ProtocolMessage): Promise<T>;
  /** room.notify. */
  peerNotify(roomId: string, peerName: string, notification: ProtocolMessage): Promise<null>;

  serverInfo(): Promise<ServerInfo>;
  ping(): Promise<{ pong: true }>;
  dumpWorker(index: number): Promise<Record<string, unknown>>;
  scaleWorkers(count: number, options?: RequestOptions): Promise<ScaleResult>;
  /** server.setLogLevel, until restart; `logger` narrows it to one area (e.g. 'tureen.room'). */
  setLogLevel(
    level: 'debug' | 'info' | 'warning' | 'error',
    logger?: string | null,
  ): Promise<{ level: string; logger: string | null; workers: number[]; failed: number[] }>;
  /** Poll server.info until `ready` (default timeout 30000, interval 200). */
  waitReady(options?: { timeout?: number; interval?: number }): Promise<ServerInfo>;

  closePeer(roomId: string, peerName: string, appData?: AppData): Promise<null>;
  closeTransport(roomId: string, peerName: string, transportId: number, appData?: AppData): Promise<null>;
  pauseProducer(roomId: string, peerName: string, producerId: number, appData?: AppData): Promise<null>;
  resumeProducer(roomId: string, peerName: string, producerId: number, appData?: AppData): Promise<null>;
  closeProducer(roomId: string, peerName: string, producerId: number, appData?: AppData): Promise<null>;
  pauseConsumer(roomId: string, peerName: string, consumerId: number, appData?: AppData): Promise<null>;
  resumeConsumer(roomId: string, peerName: string, consumerId: number, appData?: AppData): Promise<null>;
  setConsumerPreferredProfile(
    roomId: string,
    peerName: string,
    consumerId: number,
    profile: 'default' | 'low' | 'medium' | 'high',
  ): Promise<null>;

  /** transport.setMaxBitrate (0: no cap). */
  setTransportMaxBitrate(roomId: string, peerName: string, transportId: number, bitrate: number): Promise<{ bitrate: number }>;
  /** consumer.requestKeyFrame. */
  requestConsumerKeyFrame(roomId: string, peerName: string, consumerId: number): Promise<Record<string, never>>;
  getProducerStats(roomId: string, peerName: string, producerId: number): Promise<Array<Record<string, unknown>>>;
  getConsumerStats(roomId: string, peerName: string, consumerId: number): Promise<Array<Record<string, unknown>>>;
  getTransportStats(roomId: string, peerName: string, transportId: number): Promise<Array<Record<string, unknown>>>;
  /** peer.dump: the peer's part of room.dump. */
  listHosts(): Promise<HostList>;
  drainHost(name: string, drain?: boolean): Promise<HostEntry>;
  placePeer(roomId: string, peerName: string, where: PlaceOptions): Promise<{ worker: number }>;
  dumpPeer(roomId: string, peerName: string): Promise<Record<string, unknown>>;
  createRtpStreamer(roomId: string, producerId: number, options: RtpStreamerOptions): Promise<CreatedRtpStreamer>;
  closeRtpStreamer(roomId: string, streamerId: number): Promise<Record<string, never>>;
  /** room.setAudioLevels: room.audioLevels events every `interval` ms (0: off). */
  setAudioLevels(roomId: string, interval: number, threshold?: number): Promise<{ interval: number; threshold: number }>;

  /** The queued events, oldest first. */
  pendingEvents(): TureenEvent[];
  /** The oldest queued event matching `predicate` (removed), or the next to arrive. */
  nextEvent(predicate?: (event: TureenEvent) => boolean, options?: { timeout?: number }): Promise<TureenEvent>;
  /** The next notification `method` for `peerName` whose fields equal `match`'s. */
  nextNotification(
    peerName: string,
    method: string,
    options?: { timeout?: number; match?: Record<string, unknown> },
  ): Promise<ProtocolMessage>;

  on<K extends keyof TureenClientEvents>(name: K, listener: (...args: TureenClientEvents[K]) => void): this;
  once<K extends keyof TureenClientEvents>(name: K, listener: (...args: TureenClientEvents[K]) => void): this;
  off<K extends keyof TureenClientEvents>(name: K, listener: (...args: TureenClientEvents[K]) => void): this;
  emit<K extends keyof TureenClientEvents>(name: K, ...args: TureenClientEvents[K]): boolean;
}

export interface RtpStreamerOptions {
  remoteIP: string;
  remotePort: number;
  localIP?: string;
  appData?: AppData;
}
export interface CreatedRtpStreamer {
  streamerId: number;
  localIP: string;
  localPort: number;
  rtpParameters: Record<string, unknown>;
  /** An SDP file ffmpeg or GStreamer can receive the stream with. */
  sdp: string;
}

// ------------------------------------------------ mediasoup v2's server API (require('mediasoup'))

/** v2's error for a closed object (`mediasoup.errors.InvalidStateError`). */
export declare class InvalidStateError extends Error {
  readonly name: 'InvalidStateError';
}
export declare const errors: { InvalidStateError: typeof InvalidStateError };

export type Profile = 'default' | 'low' | 'medium' | 'high';
/** Who closed or paused: the server app ('local'), the client ('remote'), a consumer's producer ('source'). */
export type Originator = 'local' | 'remote';

export interface ServerOptions {
  /** Tureen's control endpoint (else TUREEN_CONTROL, else tcp://127.0.0.1:4477). */
  control?: string;
  /** CURVE keys of this app (docs/security.md). */
  curve?: CurveCertOptions | CurveKeyOptions;
  /** Timeout of each control request, ms. */
  timeout?: number;
  /** v2's worker options (numWorkers, logLevel, rtcIPv4, rtcMinPort, ...) are accepted and ignored: they are Tureen's configuration. */
  [v2Option: string]: unknown;
}

declare class V2Emitter<Events extends Record<string, unknown[]>> extends EventEmitter {
  on<K extends keyof Events & string>(name: K, listener: (...args: Events[K]) => void): this;
  once<K extends keyof Events & string>(name: K, listener: (...args: Events[K]) => void): this;
  off<K extends keyof Events & string>(name: K, listener: (...args: Events[K]) => void): this;
  addListener<K extends keyof Events & string>(name: K, listener: (...args: Events[K]) => void): this;
  removeListener<K extends keyof Events & string>(name: K, listener: (...args: Events[K]) => void): this;
}

export declare class MediaServer extends V2Emitter<{ newroom: [room: Room]; close: [] }> {
  readonly closed: boolean;
  /** The control client under it, for Tureen's own methods. */
  readonly tureen: TureenClient;
  close(): void;
  dump(): Promise<ServerInfo>;
  /** `logLevel`: 'debug', 'warn' or 'error' (server.setLogLevel). */
  updateSettings(options: { logLevel?: 'debug' | 'warn' | 'error' | 'none'; [key: string]: unknown }): Promise<unknown[]>;
  /** The room, at once; throws for codecs Tureen does not support. */
  Room(mediaCodecs: MediaCodec[]): Room;
}

/** `mediasoup.Server(options)`, with or without `new`. */
export declare const Server: {
  (options?: ServerOptions): MediaServer;
  new (options?: ServerOptions): MediaServer;
  prototype: MediaServer;
};

export interface AudioLevelEntry {
  producer: Producer;
  audioLevel: number;
}

export declare class Room extends V2Emitter<{ newpeer: [peer: Peer]; audiolevels: [levels: AudioLevelEntry[]]; close: [appData?: AppData] }> {
  readonly id: number;
  /** The room's id in Tureen (its control API). */
  readonly tureenRoomId: string;
  readonly closed: boolean;
  readonly rtpCapabilities: RtpCapabilities;
  readonly peers: Peer[];
  getPeerByName(name: string): Peer | undefined;
  /** queryRoom and join (resolves with the protocol response). */
  receiveRequest(request: ProtocolMessage): Promise<any>;
  createActiveSpeakerDetector(): ActiveSpeakerDetector;
  createRtpStreamer(producer: Producer, options: RtpStreamerOptions): Promise<RtpStreamer>;
  dump(): Promise<Record<string, unknown>>;
  /** Resolves once Tureen has the room (not in v2). */
  ready(): Promise<this>;
  close(appData?: AppData): void;
}

export declare class Peer extends V2Emitter<{
  notify: [notification: ProtocolMessage];
  newtransport: [transport: WebRtcTransport | PlainRtpTransport];
  newproducer: [producer: Producer];
  newconsumer: [consumer: Consumer];
  close: [originator: Originator, appData?: AppData];
}> {
  readonly name: string;
  readonly closed: boolean;
  appData: AppData;
  readonly rtpCapabilities: RtpCapabilities;
  readonly spy: boolean;
  readonly transports: Array<WebRtcTransport | PlainRtpTransport>;
  readonly producers: Producer[];
  readonly consumers: Consumer[];
  getTransportById(id: number): WebRtcTransport | PlainRtpTransport | undefined;
  getProducerById(id: number): Producer | undefined;
  getConsumerById(id: number): Consumer | undefined;
  getConsumerForSource(source: Producer): Consumer | undefined;
  receiveRequest(request: ProtocolMessage): Promise<any>;
  /** Never rejects for a refused notification (v2 logs it; NODE_DEBUG=tureen here). */
  receiveNotification(notification: ProtocolMessage): Promise<void>;
  dump(): Promise<Record<string, unknown>>;
  toJson(): { name: string; appData: AppData };
  close(appData?: AppData): void;
}

declare class Transport extends V2Emitter<{
  close: [originator: Originator, appData?: AppData];
  icestatechange: [state: string];
  dtlsstatechange: [state: string];
}> {
  readonly id: number;
  readonly closed: boolean;
  appData: AppData;
  readonly direction: 'send' | 'recv';
  close(appData?: AppData): void;
  dump(): Promise<Record<string, unknown> | undefined>;
  getStats(): Promise<Array<Record<string, unknown>>>;
}

export declare class WebRtcTransport extends Transport {
  readonly iceRole: 'controlled';
  readonly iceLocalParameters: Record<string, unknown>;
  readonly iceLocalCandidates: Array<Record<string, unknown>>;
  readonly iceState: string;
  readonly dtlsLocalParameters: Record<string, unknown>;
  readonly dtlsState: string;
  /** Send transports only; resolves with the transport. */
  setMaxBitrate(bitrate: number): Promise<this>;
}

export declare class PlainRtpTransport extends Transport {
  readonly localIP: string;
  readonly localPort: number;
  readonly tuple: { localIP: string; localPort: number; protocol: 'udp' };
}

export declare class Producer extends V2Emitter<{
  close: [originator: Originator, appData?: AppData];
  pause: [originator: Originator, appData?: AppData];
  resume: [originator: Originator, appData?: AppData];
}> {
  readonly id: number;
  readonly closed: boolean;
  appData: AppData;
  readonly kind: 'audio' | 'video';
  readonly peer: Peer;
  readonly transport: WebRtcTransport | PlainRtpTransport;
  readonly rtpParameters: Record<string, unknown>;
  readonly locallyPaused: boolean;
  readonly remotelyPaused: boolean;
  readonly paused: boolean;
  readonly preferredProfile: Profile;
  /** Returns whether it is paused now. */
  pause(appData?: AppData): boolean;
  /** Returns whether it is not paused now. */
  resume(appData?: AppData): boolean;
  setPreferredProfile(profile: Profile): void;
  close(appData?: AppData): void;
  dump(): Promise<Record<string, unknown> | undefined>;
  getStats(): Promise<Array<Record<string, unknown>>>;
}

export declare class Consumer extends V2Emitter<{
  close: [];
  pause: [originator: Originator | 'source', appData?: AppData];
  resume: [originator: Originator | 'source', appData?: AppData];
  effectiveprofilechange: [profile: Profile | null];
  handled: [];
  unhandled: [];
}> {
  readonly id: number;
  readonly closed: boolean;
  appData: AppData;
  readonly kind: 'audio' | 'video';
  /** The producer's peer (v2). */
  readonly peer: Peer | undefined;
  /** The very Producer object it receives. */
  readonly source: Producer | undefined;
  readonly transport: WebRtcTransport | PlainRtpTransport | undefined;
  readonly rtpParameters: Record<string, unknown>;
  readonly enabled: boolean;
  readonly locallyPaused: boolean;
  readonly remotelyPaused: boolean;
  readonly sourcePaused: boolean;
  readonly paused: boolean;
  readonly preferredProfile: Profile;
  readonly effectiveProfile: Profile | null;
  hasPeer(): boolean;
  toJson(): Record<string, unknown>;
  pause(appData?: AppData): boolean;
  resume(appData?: AppData): boolean;
  setPreferredProfile(profile: Profile): void;
  requestKeyFrame(): void;
  close(): void;
  dump(): Promise<Record<string, unknown> | undefined>;
  getStats(): Promise<Array<Record<string, unknown>>>;
}

export declare class ActiveSpeakerDetector extends V2Emitter<{
  activespeakerchange: [peer: Peer | undefined, producer: Producer | undefined];
  close: [];
}> {
  readonly closed: boolean;
  close(): void;
}

export declare class RtpStreamer extends V2Emitter<{ close: [] }> {
  readonly id: number;
  readonly closed: boolean;
  readonly consumer: { id: number; kind: string; source: Producer; rtpParameters: Record<string, unknown>; closed: boolean };
  readonly transport: { id: number; localIP: string; localPort: number; closed: boolean };
  /** An SDP file for ffmpeg or GStreamer (not in v2). */
  readonly sdp: string;
  close(): void;
}
