'use strict';
// The Node client of Tureen's control API (docs/control-api.md): one ZeroMQ DEALER
// connection to a supervisor's ROUTER. Requests are JSON frames with an integer id, matched to
// their replies by id; events (frames without an id) are emitted and kept in a bounded queue
// for nextEvent(). The mediasoup v2 server API layer builds on this class.

const { EventEmitter } = require('node:events');
const zmq = require('zeromq');
const { ErrorCode, TureenError, TureenTimeoutError } = require('./errors');
const { resolveClientKeys } = require('./curve');

const DEFAULT_ENDPOINT = 'tcp://127.0.0.1:4477';
const DEFAULT_TIMEOUT_MS = 15000;
const SCALE_TIMEOUT_MS = 60000; // workers.scale waits for new workers to start
// Events emitted under their own name (besides 'event'; 'notification' has its own arguments).
const LIFECYCLE_EVENTS = new Set([
  'room.created', 'peer.joined', 'peer.closed', 'transport.closed', 'transport.iceState', 'transport.dtlsState', 'room.closed',
  'room.audioLevels', 'room.activeSpeaker', 'rtpStreamer.closed',
]);
const LOG_LEVELS = new Set(['debug', 'info', 'warning', 'error']);

function handshakeProblem(event, curve) {
  if (event.type === 'handshake:error:auth') {
    return "the server refused this client's CURVE key: copy its public certificate (NAME.key) into the server's curve_clients_dir";
  }
  if (event.type === 'handshake:error:protocol' && event.error && event.error.code === 'ERR_ZMTP_MECHANISM_MISMATCH') {
    return curve
      ? 'the server does not use CURVE: connect without the curve option'
      : 'the server requires CURVE: give the curve option ({cert, serverKey}; docs/security.md)';
  }
  return curve
    ? 'the CURVE handshake failed: is curve.serverKey the public key of this server?'
    : 'the ZeroMQ handshake with the server failed';
}

/** One DEALER connection to a Tureen supervisor. See README.md for the events it emits. */
class TureenClient extends EventEmitter {
  constructor(endpoint = DEFAULT_ENDPOINT, options = {}) {
    super();
    if (typeof endpoint !== 'string' || !endpoint) throw new TypeError('endpoint must be a ZeroMQ endpoint such as tcp://127.0.0.1:4477');
    const { timeout = DEFAULT_TIMEOUT_MS, curve, maxQueuedEvents = 1000, routingId, resubscribe = true } = options;
    if (!(Number.isFinite(timeout) && timeout > 0)) throw new TypeError(`timeout must be a positive number of milliseconds, got ${timeout}`);
    if (!(Number.isInteger(maxQueuedEvents) && maxQueuedEvents >= 0)) throw new TypeError('maxQueuedEvents must be an integer >= 0');
    this.endpoint = endpoint;
    this.timeout = timeout;
    this.maxQueuedEvents = maxQueuedEvents;
    this.resubscribe = resubscribe;
    this.routingId = routingId === undefined ? null : routingId;
    this.curve = resolveClientKeys(curve); // throws here, not at the first request
    /** Why the last handshake failed (null when it succeeded), for timeout messages. */
    this.handshakeError = null;
    /** Whether a ZeroMQ connection to the server is up now. */
    this.connected = false;
    this._socket = null;
    this._nextId = 1;
    this._pending = new Map();
    this._sending = Promise.resolve();
    this._queue = [];
    this._waiters = new Set();
    this._rooms = new Set(); // rooms whose events this connection receives (created or subscribed)
    this._serverSubscribed = false; // server.subscribe sent (and not undone): renewed on reconnection
    this._handshakes = 0;
    /** Frames read so far: the position of each reply and event in the stream (v2 layer). */
    this.framesRead = 0;
  }

  /** Open the socket and connect (ZeroMQ connects in the background and reconnects by itself). */
  async connect() {
    if (this._socket !== null) return this;
    const options = { linger: 0, receiveHighWaterMark: 0 };
    if (this.routingId !== null) options.routingId = this.routingId;
    if (this.curve !== null) {
      options.curvePublicKey = this.curve.publicKey;
      options.curveSecretKey = this.curve.secretKey;
      options.curveServerKey = this.curve.serverKey;
    }
    const socket = new zmq.Dealer(options);
    this._socket = socket;
    this._watch(socket);
    socket.connect(this.endpoint);
    this._reader = this._read(socket);
    return this;
  }

  /** Close the socket; requests still waiting fail with code `unavailable`. */
  async close() {
    const socket = this._socket;
    if (socket === null) return;
    this._socket = null;
    this.connected = false;
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new TureenError(ErrorCode.UNAVAILABLE, `client closed before the reply to ${pending.method}`, pending.method));
      this._pending.delete(id);
    }
    for (const waiter of this._waiters) waiter.fail(new TureenError(ErrorCode.UNAVAILABLE, 'client closed', null));
    socket.close();
    await this._reader;
    this.emit('close');
  }

  _watch(socket) {
    const events = socket.events;
    events.on('handshake', () => {
      this.handshakeError = null;
      this.connected = true;
      this._handshakes += 1;
      this.emit('connect', { endpoint: this.endpoint, reconnect: this._handshakes > 1 });
      if (this._handshakes > 1 && this.resubscribe) this._resubscribe();
    });
    events.on('disconnect', () => {
      if (!this.connected) return;
      this.connected = false;
      this.emit('disconnect', { endpoint: this.endpoint });
    });
    for (const type of ['handshake:error:auth', 'handshake:error:protocol', 'handshake:error:other']) {
      events.on(type, (event) => {
        this.handshakeError = handshakeProblem(event, this.curve !== null);
        this.emit('handshakeError', { endpoint: this.endpoint, message: this.handshakeError });
      });
    }
  }

  // After a reconnection the server sees a new connection (a new ZeroMQ identity): it sends
  // the events of this client's rooms to the old one. Subscribe again; a room the server no
  // longer has (it restarted) is reported with 'roomLost' and must be created again.
  _resubscribe() {
    if (this._serverSubscribed) {
      this.request('server.subscribe').then(
        () => this.emit('resubscribed', null),
        (err) => this.emit('resubscribeError', null, err),
      );
    }
    for (const roomId of [...this._rooms]) {
      this.request('room.subscribe', { roomId }).then(
        () => this.emit('resubscribed', roomId),
        (err) => {
          if (err.code === ErrorCode.NOT_FOUND) {
            this._rooms.delete(roomId);
            this.emit('roomLost', roomId);
          } else {
            this.emit('resubscribeError', roomId, err);
          }
        },
      );
    }
  }

  async _read(socket) {
    try {
      for await (const frames of socket) {
        this._dispatch(frames[frames.length - 1]);
      }
    } catch (err) {
      // Closing the socket ends the loop with an error; anything else is reported.
      if (this._socket === socket) this.emit('clientError', err);
    }
  }

  _dispatch(frame) {
    this.framesRead += 1;
    let message;
    try {
      message = JSON.parse(frame.toString('utf8'));
    } catch {
      return; // never sent by Tureen
    }
    if (message === null || typeof message !== 'object' || Array.isArray(message)) return;
    if (!('id' in message) && typeof message.event === 'string') {
      this._event(message);
      return;
    }
    const pending = this._pending.get(message.id);
    if (pending === undefined) return; // a late reply to a request that timed out
    this._pending.delete(message.id);
    clearTimeout(pending.timer);
    const data = message.data === undefined ? null : message.data;
    if (message.ok === true) pending.resolve(pending.withPosition ? { data, position: this.framesRead } : data);
    else {
      const err = TureenError.fromWire(message.error, pending.method);
      err.position = this.framesRead;
      pending.reject(err);
    }
  }

  _event(event) {
    if (event.event === 'room.closed') this._rooms.delete(event.roomId);
    if (this.maxQueuedEvents > 0) {
      this._queue.push(event);
      if (this._queue.length > this.maxQueuedEvents) this._queue.shift();
    }
    for (const waiter of [...this._waiters]) {
      if (waiter.offer(event)) break;
    }
    this._emitSafely('event', event);
    if (event.event === 'notification') {
      this._emitSafely('notification', event.roomId, event.peerName, event.notification, event);
    } else if (LIFECYCLE_EVENTS.has(event.event)) {
      this._emitSafely(event.event, event);
    }
  }

  // A listener that throws must not stop the reader: the error surfaces as an uncaught
  // exception (as from any other event source), after this event's dispatch.
  _emitSafely(name, ...args) {
    try {
      this.emit(name, ...args);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  // ------------------------------------------------------------------ requests

  /**
   * Send one control request and resolve with its `data`; reject with TureenError (the reply's
   * code) or TureenTimeoutError. `params` are the envelope's other fields.
   */
  request(method, params = {}, { timeout, withPosition = false } = {}) {
    if (typeof method !== 'string' || !method) return Promise.reject(new TypeError('method must be a non-empty string'));
    if (params === null || typeof params !== 'object' || Array.isArray(params)) {
      return Promise.reject(new TypeError(`params of ${method} must be an object`));
    }
    if ('id' in params || 'method' in params) return Promise.reject(new TypeError('params must not contain id or method: the client sets them'));
    if (this._socket === null) {
      return Promise.reject(new TureenError(ErrorCode.UNAVAILABLE, 'client is not connected: call connect() first', method));
    }
    const ms = timeout === undefined ? this.timeout : timeout;
    const id = this._nextId;
    this._nextId = id >= Number.MAX_SAFE_INTEGER ? 1 : id + 1;
    let frame;
    try {
      frame = JSON.stringify({ id, method, ...params });
    } catch (err) {
      return Promise.reject(new TypeError(`params of ${method} cannot be written as JSON: ${err.message}`));
    }
    const socket = this._socket;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        const err = new TureenTimeoutError(this._timeoutMessage(method, ms), method, ms);
        err.position = this.framesRead;
        reject(err);
      }, ms);
      this._pending.set(id, { resolve, reject, timer, method, withPosition });
      // zeromq allows one blocked send at a time: chain them.
      this._sending = this._sending.then(() => socket.send(frame)).catch((err) => {
        const pending = this._pending.get(id);
        if (pending === undefined) return;
        this._pending.delete(id);
        clearTimeout(pending.timer);
        pending.reject(new TureenError(ErrorCode.UNAVAILABLE, `could not send ${method}: ${err.message}`, method));
      });
    });
  }

  _timeoutMessage(method, ms) {
    let hint;
    if (this.handshakeError !== null) hint = this.handshakeError;
    else if (this.curve !== null) hint = "is `tureen serve` running there, and is this client's public key in its curve_clients_dir?";
    else hint = 'is `tureen serve` running there?';
    return `no answer to ${method} from ${this.endpoint} within ${ms} ms; ${hint}`;
  }

  async createRoom(mediaCodecs, { roomId, appData } = {}) {
    const params = { mediaCodecs };
    if (roomId !== undefined && roomId !== null) params.roomId = roomId;
    if (appData !== undefined) params.appData = appData;
    const data = await this.request('room.create', params);
    this._rooms.add(data.roomId);
    return data;
  }

  async closeRoom(roomId) {
    await this.request('room.close', { roomId });
    this._rooms.delete(roomId);
    return null;
  }

  listRooms() {
    return this.request('room.list');
  }

  dumpRoom(roomId) {
    return this.request('room.dump', { roomId });
  }

  /** Receive roomId's events on this connection too (the creator keeps them). */
  async subscribe(roomId) {
    const data = await this.request('room.subscribe', { roomId });
    this._rooms.add(roomId);
    return data;
  }

  /** Stop receiving roomId's events on this connection. */
  async unsubscribe(roomId) {
    const data = await this.request('room.unsubscribe', { roomId });
    this._rooms.delete(roomId);
    return data;
  }

  /** Receive every room's lifecycle events on this connection (not `notification`s). */
  async subscribeServer() {
    const data = await this.request('server.subscribe');
    this._serverSubscribed = true;
    return data;
  }

  /** Stop receiving every room's lifecycle events. */
  async unsubscribeServer() {
    const data = await this.request('server.unsubscribe');
    this._serverSubscribed = false;
    return data;
  }

  /** Hand over a client->server protocol request (peerName null for queryRoom and join). */
  peerRequest(roomId, peerName, request) {
    const params = { roomId, request };
    if (peerName !== undefined && peerName !== null) params.peerName = peerName;
    return this.request('room.request', params);
  }

  /** Hand over a client->server protocol notification (errors still come back). */
  async peerNotify(roomId, peerName, notification) {
    await this.request('room.notify', { roomId, peerName, notification });
    return null;
  }

  serverInfo() {
    return this.request('server.info');
  }

  ping() {
    return this.request('server.ping');
  }

  dumpWorker(index) {
    return this.request('worker.dump', { index });
  }

  /** Set the log level of the supervisor and its workers until restart (`logger`: one area). */
  setLogLevel(level, logger) {
    if (!LOG_LEVELS.has(level)) return Promise.reject(new TypeError(`level must be one of ${[...LOG_LEVELS].join(', ')}, not ${JSON.stringify(level)}`));
    const params = { level };
    if (logger !== undefined && logger !== null) params.logger = logger;
    return this.request('server.setLogLevel', params);
  }

  scaleWorkers(count, { timeout = SCALE_TIMEOUT_MS } = {}) {
    return this.request('workers.scale', { count }, { timeout });
  }

  /**
   * Poll server.info until it says `ready` (workers up); reject with TureenTimeoutError after
   * `timeout` ms. For apps that start Tureen themselves.
   */
  async waitReady({ timeout = 30000, interval = 200 } = {}) {
    const deadline = Date.now() + timeout;
    let last = null;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        const info = await this.request('server.info', {}, { timeout: Math.max(1, Math.min(left, 1000)) });
        if (info.ready) return info;
        last = 'ready: false';
      } catch (err) {
        if (!(err instanceof TureenTimeoutError)) throw err;
        last = err.message;
      }
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(interval, deadline - Date.now()))));
    }
    throw new TureenTimeoutError(`server at ${this.endpoint} not ready within ${timeout} ms (${last})`, 'server.info', timeout);
  }

  // ------------------------------------------------------ server-app actions

  closePeer(roomId, peerName, appData) {
    return this._action('peer.close', { roomId, peerName }, appData);
  }

  closeTransport(roomId, peerName, transportId, appData) {
    return this._action('transport.close', { roomId, peerName, transportId }, appData);
  }

  pauseProducer(roomId, peerName, producerId, appData) {
    return this._action('producer.pause', { roomId, peerName, producerId }, appData);
  }

  resumeProducer(roomId, peerName, producerId, appData) {
    return this._action('producer.resume', { roomId, peerName, producerId }, appData);
  }

  closeProducer(roomId, peerName, producerId, appData) {
    return this._action('producer.close', { roomId, peerName, producerId }, appData);
  }

  pauseConsumer(roomId, peerName, consumerId, appData) {
    return this._action('consumer.pause', { roomId, peerName, consumerId }, appData);
  }

  resumeConsumer(roomId, peerName, consumerId, appData) {
    return this._action('consumer.resume', { roomId, peerName, consumerId }, appData);
  }

  setConsumerPreferredProfile(roomId, peerName, consumerId, profile) {
    return this._action('consumer.setPreferredProfile', { roomId, peerName, consumerId, profile });
  }

  /** Cap what Tureen's REMB asks a send transport's sender for, in bit/s (0: no cap). */
  setTransportMaxBitrate(roomId, peerName, transportId, bitrate) {
    return this.request('transport.setMaxBitrate', { roomId, peerName, transportId, bitrate });
  }

  /** Ask the sender of a consumer's producer for a key frame (PLI). */
  requestConsumerKeyFrame(roomId, peerName, consumerId) {
    return this.request('consumer.requestKeyFrame', { roomId, peerName, consumerId });
  }

  /** Stats entries in the shape of the producerStats notification. */
  getProducerStats(roomId, peerName, producerId) {
    return this.request('producer.getStats', { roomId, peerName, producerId });
  }

  /** Stats entries in the shape of the consumerStats notification. */
  getConsumerStats(roomId, peerName, consumerId) {
    return this.request('consumer.getStats', { roomId, peerName, consumerId });
  }

  /** Stats entries in the shape of the transportStats notification. */
  getTransportStats(roomId, peerName, transportId) {
    return this.request('transport.getStats', { roomId, peerName, transportId });
  }

  /** The hosts, the supervisor's own included: `{listening, hosts: [{name, state, local, workers, transports, cpuPercent}]}`. */
  listHosts() {
    return this.request('hosts.list');
  }

  /** No new peers go to host `name` (`drain` false: they may again); resolves to the host's entry. */
  drainHost(name, drain = true) {
    if (typeof name !== 'string' || !name) return Promise.reject(new TypeError(`name must be a host's name, not ${JSON.stringify(name)}`));
    if (typeof drain !== 'boolean') return Promise.reject(new TypeError(`drain must be a boolean, not ${JSON.stringify(drain)}`));
    return this.request('hosts.drain', { name, drain });
  }

  /**
   * Pin a peer's transports before its first one: `{host}` (that host's least loaded
   * worker), `{worker}` (an index of serverInfo().workers) or both; resolves to `{worker}`.
   */
  placePeer(roomId, peerName, { host, worker } = {}) {
    const params = { roomId, peerName };
    if (host !== undefined && host !== null) params.host = host;
    if (worker !== undefined && worker !== null) params.worker = worker;
    if (!('host' in params) && !('worker' in params)) return Promise.reject(new TypeError('placePeer needs { host } or { worker }'));
    return this.request('peer.place', params);
  }

  /** One peer's part of room.dump. */
  dumpPeer(roomId, peerName) {
    return this.request('peer.dump', { roomId, peerName });
  }

  /** Plain RTP of a producer to remoteIP:remotePort: `{streamerId, localIP, localPort, rtpParameters, sdp}`. */
  createRtpStreamer(roomId, producerId, { remoteIP, remotePort, localIP, appData } = {}) {
    const params = { roomId, producerId, remoteIP, remotePort };
    if (localIP !== undefined) params.localIP = localIP;
    if (appData !== undefined) params.appData = appData;
    return this.request('rtpStreamer.create', params);
  }

  closeRtpStreamer(roomId, streamerId) {
    return this.request('rtpStreamer.close', { roomId, streamerId });
  }

  /** room.audioLevels events every `interval` ms (0: off), producers above `threshold` dBov. */
  setAudioLevels(roomId, interval, threshold) {
    const params = { roomId, interval };
    if (threshold !== undefined && threshold !== null) params.threshold = threshold;
    return this.request('room.setAudioLevels', params);
  }

  _action(method, params, appData) {
    if (appData !== undefined) params.appData = appData;
    return this.request(method, params);
  }

  // ------------------------------------------------------------------ events

  /** The queued events (oldest first; at most maxQueuedEvents). */
  pendingEvents() {
    return [...this._queue];
  }

  /**
   * The oldest queued event matching `predicate` (removed from the queue), or the next one to
   * arrive; rejects with TureenTimeoutError after `timeout` ms (default 5000).
   */
  nextEvent(predicate = () => true, { timeout = 5000 } = {}) {
    const index = this._queue.findIndex(predicate);
    if (index >= 0) return Promise.resolve(this._queue.splice(index, 1)[0]);
    if (this._socket === null) return Promise.reject(new TureenError(ErrorCode.UNAVAILABLE, 'client is not connected', null));
    return new Promise((resolve, reject) => {
      const waiter = {
        offer: (event) => {
          if (!predicate(event)) return false;
          const at = this._queue.lastIndexOf(event);
          if (at >= 0) this._queue.splice(at, 1);
          done();
          resolve(event);
          return true;
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        done();
        reject(new TureenTimeoutError(`no matching event within ${timeout} ms; ${this._queue.length} other events queued`, null, timeout));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this._waiters.delete(waiter);
      };
      this._waiters.add(waiter);
    });
  }

  /** The next protocol notification `method` addressed to `peerName` (its payload). */
  async nextNotification(peerName, method, { timeout = 5000, match = {} } = {}) {
    const wanted = (event) => {
      const note = event.notification || {};
      return (
        event.event === 'notification' &&
        event.peerName === peerName &&
        note.method === method &&
        Object.entries(match).every(([k, v]) => note[k] === v)
      );
    };
    try {
      return (await this.nextEvent(wanted, { timeout })).notification;
    } catch (err) {
      if (err instanceof TureenTimeoutError) {
        throw new TureenTimeoutError(`no ${method} notification for peer ${JSON.stringify(peerName)} within ${timeout} ms`, null, timeout);
      }
      throw err;
    }
  }
}

module.exports = { TureenClient, DEFAULT_ENDPOINT };
