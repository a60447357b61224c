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
export type TureenEvent =
  | NotificationEvent
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
  /** A ZeroMQ connection came up (`reconnect`: not the first one). */
  connect: [info: ConnectionInfo & { reconnect: boolean }];
  disconnect: [info: ConnectionInfo];
  /** The handshake failed (CURVE key refused, CURVE on one side only). */
  handshakeError: [info: ConnectionInfo & { message: string }];
  /** A room of this client the server no longer has (it restarted): create it again. */
  roomLost: [roomId: string];
  resubscribed: [roomId: string];
  resubscribeError: [roomId: string, error: TureenError];
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

  /** room.request: peerName null for queryRoom and join. Resolves with the protocol response. */
  peerRequest<T = any>(roomId: string, peerName: string | null, request: ProtocolMessage): Promise<T>;
  /** room.notify. */
  peerNotify(roomId: string, peerName: string, notification: ProtocolMessage): Promise<null>;

  serverInfo(): Promise<ServerInfo>;
  ping(): Promise<{ pong: true }>;
  dumpWorker(index: number): Promise<Record<string, unknown>>;
  scaleWorkers(count: number, options?: RequestOptions): Promise<ScaleResult>;
  /** Poll server.info until `ready` (default timeout 30000, interval 200). */
  waitReady(options?: { timeout?: number; interval?: number }): Promise<ServerInfo>;

  closePeer(roomId: string, peerName: string, appData?: AppData): Promise<null>;
  closeTransport(roomId: string, peerName: string, transportId: number): Promise<null>;
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
