'use strict';
// mediasoup v2's Room on a Tureen room: created synchronously (its capabilities computed here,
// the room.create request in the background), a mirror of its peers kept from the requests
// passed through it and the room's events.

const { SafeEmitter, randomNumber } = require('./emitter');
const { InvalidStateError } = require('./errors');
const { Sequencer } = require('./sequencer');
const { Peer } = require('./Peer');
const { ActiveSpeakerDetector } = require('./ActiveSpeakerDetector');
const { RtpStreamer } = require('./RtpStreamer');

// v2's worker reports audio levels every 500 ms, every producer that sent audio then (its
// average dBov, -127 for silence): the threshold lets every level through.
const AUDIO_LEVELS_INTERVAL = 500;
const AUDIO_LEVELS_THRESHOLD = -127;

class Room extends SafeEmitter {
  constructor(server, client, mediaCodecs, rtpCapabilities) {
    super();
    this._server = server;
    this._client = client;
    this._id = randomNumber();
    this._roomId = String(this._id);
    this._closed = false;
    this._rtpCapabilities = rtpCapabilities;
    this._peers = new Map();
    this._closingPeers = new Map(); // closed here, until Tureen's `closed` notification is relayed
    this._producers = new Map();
    this._streamers = new Map();
    this._producerCount = 0;
    this._sequencer = new Sequencer(client, (event) => this._handleEvent(event));
    this._onEvent = (event) => {
      if (event.roomId === this._roomId) this._sequencer.event(event);
    };
    client.on('event', this._onEvent);
    // After a reconnection to a restarted Tureen the room is gone: close it, as v2 closed the
    // rooms of a worker that died.
    this._onRoomLost = (roomId) => {
      if (roomId === this._roomId) this.close(undefined, false);
    };
    client.on('roomLost', this._onRoomLost);
    this._closing = Promise.resolve();
    this._created = client.createRoom(mediaCodecs, { roomId: this._roomId }).then(
      (data) => {
        this._rtpCapabilities = data.rtpCapabilities;
      },
      (err) => {
        this._createError = err;
        this.close(undefined, false);
        throw err;
      },
    );
    this._created.catch(() => {}); // reported by the room's requests and its 'close'
    this._handleAudioLevelListeners();
  }

  /** v2's router id (a number); the Tureen room id is its decimal string (`tureenRoomId`). */
  get id() {
    return this._id;
  }

  get tureenRoomId() {
    return this._roomId;
  }

  get closed() {
    return this._closed;
  }

  get rtpCapabilities() {
    return this._rtpCapabilities;
  }

  get peers() {
    return Array.from(this._peers.values());
  }

  getPeerByName(name) {
    return this._peers.get(name);
  }

  /** Resolves once Tureen has the room (not in v2: for apps that want to know). */
  ready() {
    return this._created.then(() => this);
  }

  close(appData, notifyServer = true) {
    if (this._closed) return;
    this._closed = true;
    this.emit('@close');
    this.safeEmit('close', appData);
    for (const peer of this._peers.values()) {
      this._closingPeers.set(peer.name, peer);
      peer._closeHere('local', undefined);
    }
    this._peers.clear();
    if (notifyServer) {
      this._closing = this._created.then(() => this._client.closeRoom(this._roomId)).catch(() => {});
    }
    this._client.off('roomLost', this._onRoomLost);
    // Tureen's `closed` notifications and room.closed still come: keep listening a while.
    setTimeout(() => this._client.off('event', this._onEvent), 5000).unref();
  }

  dump() {
    if (this._closed) return Promise.reject(new InvalidStateError('Room closed'));
    return this._request('room.dump', { roomId: this._roomId });
  }

  receiveRequest(request) {
    if (this._closed) return Promise.reject(new InvalidStateError('Room closed'));
    if (request === null || typeof request !== 'object') return Promise.reject(new TypeError('wrong request Object'));
    if (request.notification) return Promise.reject(new TypeError('not a request'));
    if (typeof request.method !== 'string') return Promise.reject(new TypeError('wrong/missing request method'));
    switch (request.method) {
      case 'queryRoom':
        return this._request('room.request', { roomId: this._roomId, request });
      case 'join':
        return this._request('room.request', { roomId: this._roomId, request }, {
          pre: (data) => this._joined(request, data),
          post: (data) => {
            const peer = this._peers.get(request.peerName);
            if (peer) this.safeEmit('newpeer', peer);
            return data;
          },
        });
      default:
        return Promise.reject(new Error(`unknown request method "${request.method}"`));
    }
  }

  createActiveSpeakerDetector() {
    return new ActiveSpeakerDetector(this);
  }

  /**
   * Plain RTP of `producer` to `options.remoteIP`:`options.remotePort` (v2: remoteIP,
   * remotePort, localIP?); resolves with an RtpStreamer (`rtpStreamer.create`).
   */
  createRtpStreamer(producer, options = {}) {
    if (this._closed) return Promise.reject(new InvalidStateError('Room closed'));
    if (!producer || !this._producers.has(producer.id)) return Promise.reject(new Error('Producer not found'));
    const params = { roomId: this._roomId, producerId: producer.id, remoteIP: options.remoteIP, remotePort: options.remotePort };
    if (options.localIP !== undefined) params.localIP = options.localIP;
    if (options.appData !== undefined) params.appData = options.appData;
    return this._request('rtpStreamer.create', params, {
      pre: (data) => {
        const streamer = new RtpStreamer(this, producer, data);
        this._streamers.set(streamer.id, streamer);
        streamer.on('@close', () => this._streamers.delete(streamer.id));
      },
      post: (data) => this._streamers.get(data.streamerId),
    });
  }

  // ---------------------------------------------------------------- internals

  /** One control request of this room, in v2's order (sequencer.js), once the room exists. */
  _request(method, params, options) {
    return this._created.then(() => this._sequencer.request(method, params, options));
  }

  /** A request whose failure v2 would only log (pause, close, ...): never rejects. */
  _fireAndForget(method, params) {
    this._request(method, params).catch(() => {});
  }

  _joined(request, data) {
    const peer = new Peer(this, request.peerName, request.rtpCapabilities, Boolean(request.spy), request.appData);
    this._peers.set(peer.name, peer);
    // The reply lists, per other peer, the consumers made for its producers, in the order of
    // those producers (Tureen makes them in creation order): match them by kind in turn.
    for (const entry of (data && data.peers) || []) {
      const owner = this._peers.get(entry.name);
      const taken = new Set();
      for (const consumerData of entry.consumers || []) {
        const source = owner
          ? owner.producers.find((p) => !taken.has(p) && p.kind === consumerData.kind && !p.closed)
          : undefined;
        if (source) taken.add(source);
        peer._addConsumer(consumerData, source, owner);
      }
    }
  }

  _addProducer(producer) {
    this._producerCount += 1;
    producer._order = this._producerCount;
    this._producers.set(producer.id, producer);
    producer.on('@close', () => this._producers.delete(producer.id));
  }

  /** The producer a `newConsumer` for `receiver` comes from: the newest of that peer and kind
   * that has no consumer on `receiver` yet (each producer gives a peer one consumer). */
  _sourceFor(receiver, note) {
    let best;
    for (const producer of this._producers.values()) {
      if (producer.peer.name !== note.peerName || producer.kind !== note.kind || producer.closed) continue;
      if (receiver.consumers.some((c) => c.source === producer)) continue;
      if (!best || producer._order > best._order) best = producer;
    }
    return best;
  }

  _handleEvent(event) {
    switch (event.event) {
      case 'notification': {
        const peer = this._peers.get(event.peerName);
        if (peer) {
          peer._handleNotification(event.notification);
        } else {
          const closing = this._closingPeers.get(event.peerName);
          if (closing && event.notification.method === 'closed') {
            this._closingPeers.delete(event.peerName);
            closing.safeEmit('notify', event.notification);
          }
        }
        break;
      }
      case 'transport.iceState':
      case 'transport.dtlsState': {
        const peer = this._peers.get(event.peerName);
        const transport = peer && peer._transports.get(event.transportId);
        if (transport) transport._stateChange(event.event === 'transport.iceState' ? 'ice' : 'dtls', event.state);
        break;
      }
      case 'peer.closed': {
        this._closingPeers.delete(event.peerName);
        const peer = this._peers.get(event.peerName);
        if (peer) peer._closeHere('remote', undefined);
        break;
      }
      case 'room.audioLevels': {
        const levels = (event.levels || [])
          .map((entry) => ({ producer: this._producers.get(entry.producerId), audioLevel: entry.audioLevel }))
          .filter((entry) => Boolean(entry.producer))
          .sort((a, b) => b.audioLevel - a.audioLevel);
        this.safeEmit('audiolevels', levels);
        break;
      }
      case 'rtpStreamer.closed': {
        const streamer = this._streamers.get(event.streamerId);
        if (streamer) streamer._closeHere();
        break;
      }
      case 'room.closed':
        this.close(undefined, false);
        this._client.off('event', this._onEvent);
        break;
      default:
        break;
    }
  }

  // v2 turns the worker's audio level reports on with the first 'audiolevels' listener and
  // off with the last one removed.
  _handleAudioLevelListeners() {
    const set = (interval) => {
      if (this._closed) return;
      this._fireAndForget('room.setAudioLevels', { roomId: this._roomId, interval, threshold: AUDIO_LEVELS_THRESHOLD });
    };
    this.on('newListener', (event) => {
      if (event === 'audiolevels' && this.listenerCount('audiolevels') === 0) set(AUDIO_LEVELS_INTERVAL);
    });
    this.on('removeListener', (event) => {
      if (event === 'audiolevels' && this.listenerCount('audiolevels') === 0) set(0);
    });
  }
}

module.exports = { Room, AUDIO_LEVELS_INTERVAL };
