'use strict';
// mediasoup v2's Peer: relays its client's requests and notifications to Tureen (room.request,
// room.notify) and mirrors what they create; Tureen's notifications for it come out as
// 'notify' (send them to the client as they are).

const { debuglog } = require('node:util');
const { SafeEmitter } = require('./emitter');
const { InvalidStateError } = require('./errors');
const { WebRtcTransport, PlainRtpTransport } = require('./transports');
const { Producer } = require('./Producer');
const { Consumer } = require('./Consumer');

const log = debuglog('tureen');

class Peer extends SafeEmitter {
  constructor(room, name, rtpCapabilities, spy, appData) {
    super();
    this._room = room;
    this._name = name;
    this._rtpCapabilities = rtpCapabilities;
    this._spy = spy;
    this._appData = appData;
    this._closed = false;
    this._transports = new Map();
    this._producers = new Map();
    this._consumers = new Map();
  }

  get name() {
    return this._name;
  }

  get closed() {
    return this._closed;
  }

  get appData() {
    return this._appData;
  }

  set appData(appData) {
    this._appData = appData;
  }

  get rtpCapabilities() {
    return this._rtpCapabilities;
  }

  get spy() {
    return this._spy;
  }

  get transports() {
    return Array.from(this._transports.values());
  }

  get producers() {
    return Array.from(this._producers.values());
  }

  get consumers() {
    return Array.from(this._consumers.values());
  }

  getTransportById(id) {
    return this._transports.get(id);
  }

  getProducerById(id) {
    return this._producers.get(id);
  }

  getConsumerById(id) {
    return this._consumers.get(id);
  }

  getConsumerForSource(source) {
    return this.consumers.find((consumer) => consumer.source === source);
  }

  toJson() {
    return { name: this._name, appData: this._appData };
  }

  /** Close the peer from the server app: its client gets `closed {appData}` (peer.close). */
  close(appData) {
    if (this._closed) return;
    this._room._closingPeers.set(this._name, this);
    this._closeHere('local', appData);
    this._room._fireAndForget('peer.close', this._ids(appData === undefined ? {} : { appData }));
  }

  /** The peer's part of room.dump (`peer.dump`). */
  dump() {
    if (this._closed) return Promise.reject(new InvalidStateError('Peer closed'));
    return this._room._request('peer.dump', this._ids());
  }

  receiveRequest(request) {
    if (this._closed) return Promise.reject(new InvalidStateError('Room closed'));
    if (request === null || typeof request !== 'object') return Promise.reject(new TypeError('wrong request Object'));
    if (request.notification) return Promise.reject(new TypeError('not a request'));
    if (typeof request.method !== 'string') return Promise.reject(new TypeError('wrong/missing request method'));
    const relay = (options) => this._room._request('room.request', this._ids({ request }), options);
    switch (request.method) {
      case 'createTransport':
        return relay({
          pre: (data) => {
            const Kind = request.plainRtpParameters ? PlainRtpTransport : WebRtcTransport;
            const transport = new Kind(this, request.id, request.direction, request.appData, data);
            this._transports.set(transport.id, transport);
            transport.on('@close', () => this._transports.delete(transport.id));
          },
          post: (data) => {
            const transport = this._transports.get(request.id);
            if (transport) this.safeEmit('newtransport', transport);
            return data;
          },
        });
      case 'restartTransport':
        return relay({
          pre: (data) => {
            const transport = this._transports.get(request.id);
            if (transport && data) transport._data.iceParameters = data.iceParameters;
          },
        });
      case 'createProducer':
        return relay({
          pre: () => {
            const transport = this._transports.get(request.transportId);
            const producer = new Producer(this, request, transport);
            this._producers.set(producer.id, producer);
            producer.on('@close', () => this._producers.delete(producer.id));
            this._room._addProducer(producer);
          },
          post: () => {
            const producer = this._producers.get(request.id);
            if (producer) this.safeEmit('newproducer', producer);
            return undefined; // v2 resolves with nothing
          },
        });
      case 'enableConsumer':
        return relay({
          pre: (data) => {
            const consumer = this._consumers.get(request.id);
            if (consumer) consumer._enabled(this._transports.get(request.transportId), request, data || {});
          },
        });
      default:
        return relay();
    }
  }

  /** A notification of the client (v2: never rejects; a refused one is logged, NODE_DEBUG=tureen). */
  receiveNotification(notification) {
    if (this._closed) return Promise.reject(new InvalidStateError('Room closed'));
    if (notification === null || typeof notification !== 'object') return Promise.reject(new TypeError('wrong notification Object'));
    if (notification.notification !== true) return Promise.reject(new TypeError('not a notification'));
    if (typeof notification.method !== 'string') return Promise.reject(new TypeError('wrong/missing notification method'));
    const { method, id, appData } = notification;
    let pre = () => undefined;
    switch (method) {
      case 'leave':
        pre = () => this._closeHere('remote', appData);
        break;
      case 'closeTransport':
        pre = () => this._transports.get(id)?._closeHere('remote', appData);
        break;
      case 'pauseProducer':
        pre = () => this._producers.get(id)?._remotePaused(true, appData);
        break;
      case 'resumeProducer':
        pre = () => this._producers.get(id)?._remotePaused(false, appData);
        break;
      case 'closeProducer':
        pre = () => this._producers.get(id)?._closeHere('remote', appData);
        break;
      case 'pauseConsumer':
        pre = () => this._consumers.get(id)?._remotePaused(true, appData);
        break;
      case 'resumeConsumer':
        pre = () => this._consumers.get(id)?._remotePaused(false, appData);
        break;
      case 'setConsumerPreferredProfile':
        pre = () => this._consumers.get(id)?._setPreferredProfile(notification.profile);
        break;
      default:
        break;
    }
    // Applied here, as v2 applies it before anything else happens (its worker is told after):
    // the events the notification causes in Tureen then come after these, in v2's order. An id
    // the mirror does not know changes nothing, as in v2.
    pre();
    return this._room
      ._request('room.notify', this._ids({ notification }), { post: () => undefined })
      .catch((err) => log('receiveNotification() failed [method:%s]: %s', method, err.message));
  }

  // ---------------------------------------------------------------- internals

  _ids(extra = {}) {
    return { roomId: this._room._roomId, peerName: this._name, ...extra };
  }

  /** Closed here ('local': by the app, 'remote': the client left or Tureen closed it). */
  _closeHere(originator, appData) {
    if (this._closed) return;
    this._closed = true;
    if (this._room._peers.get(this._name) === this) this._room._peers.delete(this._name);
    this.emit('@close', appData);
    this.safeEmit('close', originator, appData);
    for (const producer of this.producers) producer._closeHere(originator, undefined);
    for (const consumer of this.consumers) consumer._closeHere();
    for (const transport of this.transports) transport._closeHere(originator, undefined);
    for (const other of this._room.peers) {
      for (const consumer of other.consumers) {
        if (consumer.peer === this) consumer._closeHere();
      }
    }
  }

  _addConsumer(data, source, owner) {
    const consumer = new Consumer(this, data, source, owner);
    this._consumers.set(consumer.id, consumer);
    consumer.on('@close', () => this._consumers.delete(consumer.id));
    this.safeEmit('newconsumer', consumer);
    return consumer;
  }

  /** One of Tureen's notifications for this peer's client: mirror it, then 'notify'. */
  _handleNotification(note) {
    switch (note.method) {
      case 'newConsumer': {
        const source = this._room._sourceFor(this, note);
        const owner = source ? source.peer : this._room.getPeerByName(note.peerName);
        this._addConsumer(note, source, owner);
        this.safeEmit('notify', note);
        return;
      }
      case 'consumerClosed': {
        this.safeEmit('notify', note);
        this._consumers.get(note.id)?._closeHere();
        return;
      }
      case 'consumerEffectiveProfileChanged': {
        this.safeEmit('notify', note);
        this._consumers.get(note.id)?._effectiveProfileChanged(note.profile);
        return;
      }
      case 'transportClosed': {
        this.safeEmit('notify', note);
        this._transports.get(note.id)?._closeHere('local', note.appData);
        return;
      }
      case 'producerClosed': {
        this.safeEmit('notify', note);
        this._producers.get(note.id)?._closeHere('local', note.appData);
        return;
      }
      case 'closed': {
        this.safeEmit('notify', note);
        this._closeHere('local', note.appData);
        return;
      }
      default:
        this.safeEmit('notify', note);
    }
  }
}

module.exports = { Peer };
