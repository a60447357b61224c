'use strict';
// mediasoup v2's Server on Tureen: one control connection (TureenClient) to a running
// `tureen serve`, given as `options.control` or the TUREEN_CONTROL environment variable.
// v2's worker options (numWorkers, rtcIPv4, rtcMinPort, ...) belong to Tureen's own
// configuration and are ignored here.

const { TureenClient, DEFAULT_ENDPOINT } = require('../client');
const { SafeEmitter } = require('./emitter');
const { InvalidStateError } = require('./errors');
const { Room } = require('./Room');
const { roomRtpCapabilities } = require('./capabilities');

// v2 log levels -> Tureen's (server.setLogLevel).
const LOG_LEVELS = { debug: 'debug', warn: 'warning', error: 'error', none: 'error' };

class Server extends SafeEmitter {
  constructor(options = {}) {
    super();
    const { control, curve, timeout } = options || {};
    this._endpoint = control || process.env.TUREEN_CONTROL || DEFAULT_ENDPOINT;
    const clientOptions = { resubscribe: true };
    if (curve !== undefined) clientOptions.curve = curve;
    if (timeout !== undefined) clientOptions.timeout = timeout;
    this._client = new TureenClient(this._endpoint, clientOptions);
    this._connected = this._client.connect();
    this._closed = false;
    this._rooms = new Set();
  }

  get closed() {
    return this._closed;
  }

  /** The control client under this server (for Tureen's own methods: workers, info, ...). */
  get tureen() {
    return this._client;
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    this.safeEmit('close');
    const closing = [];
    for (const room of [...this._rooms]) {
      room.close();
      closing.push(room._closing);
    }
    Promise.allSettled(closing).then(() => this._client.close());
  }

  /** Tureen's server.info and its workers' state (v2's Server.dump shape: {workers}). */
  dump() {
    if (this._closed) return Promise.reject(new InvalidStateError('Server closed'));
    return this._client.serverInfo();
  }

  /** v2's settings: `logLevel` ('debug', 'warn', 'error') becomes server.setLogLevel. */
  updateSettings(options = {}) {
    if (this._closed) return Promise.reject(new InvalidStateError('Server closed'));
    if (options.logLevel === undefined) return Promise.resolve([]);
    const level = LOG_LEVELS[options.logLevel];
    if (level === undefined) return Promise.reject(new TypeError(`invalid logLevel ${JSON.stringify(options.logLevel)}: use 'debug', 'warn' or 'error'`));
    return this._client.request('server.setLogLevel', { level }).then((data) => [data]);
  }

  /** A new room, returned at once (created in Tureen in the background, as v2's in its worker). */
  Room(mediaCodecs) {
    if (this._closed) throw new InvalidStateError('Server closed');
    const rtpCapabilities = roomRtpCapabilities(mediaCodecs); // throws, as v2's
    const room = new Room(this, this._client, mediaCodecs, rtpCapabilities);
    this._rooms.add(room);
    room.on('@close', () => this._rooms.delete(room));
    this.safeEmit('newroom', room);
    return room;
  }
}

module.exports = { Server };
