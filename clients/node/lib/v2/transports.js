'use strict';
// mediasoup v2's WebRtcTransport and PlainRtpTransport, mirrored from a peer's createTransport
// (its request and Tureen's reply) and Tureen's transport events.

const { SafeEmitter } = require('./emitter');
const { InvalidStateError } = require('./errors');

class Transport extends SafeEmitter {
  constructor(peer, id, direction, appData, reply) {
    super();
    this._peer = peer;
    this._id = id;
    this._direction = direction;
    this._appData = appData;
    this._data = { ...(reply || {}) };
    this._closed = false;
  }

  get id() {
    return this._id;
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

  get direction() {
    return this._direction;
  }

  /** Close it from the server app: the client gets `transportClosed` (transport.close). */
  close(appData) {
    if (this._closed) return;
    this._closeHere('local', appData);
    this._peer._room._fireAndForget('transport.close', this._ids(appData === undefined ? {} : { appData }));
  }

  dump() {
    if (this._closed) return Promise.reject(new InvalidStateError(`${this.constructor.name} closed`));
    return this._peer.dump().then((data) => (data.transports || []).find((t) => t.id === this._id));
  }

  /** Stats in the shape of transportStats (`transport.getStats`). */
  getStats() {
    if (this._closed) return Promise.reject(new InvalidStateError(`${this.constructor.name} closed`));
    return this._peer._room._request('transport.getStats', this._ids());
  }

  _ids(extra = {}) {
    return { roomId: this._peer._room._roomId, peerName: this._peer.name, transportId: this._id, ...extra };
  }

  _closeHere(originator, appData) {
    if (this._closed) return;
    this._closed = true;
    this.emit('@close');
    this.safeEmit('close', originator, appData);
    // Its producers close with it (v2: the worker closes them; the client sees the transport go).
    for (const producer of this._peer.producers) {
      if (producer.transport === this) producer._closeHere(originator, undefined);
    }
    for (const consumer of this._peer.consumers) {
      if (consumer.transport === this) consumer._unhandled();
    }
  }

  _stateChange() {}
}

class WebRtcTransport extends Transport {
  get iceRole() {
    return 'controlled';
  }

  get iceLocalParameters() {
    return this._data.iceParameters;
  }

  get iceLocalCandidates() {
    return this._data.iceCandidates;
  }

  get iceState() {
    return this._data.iceState || 'new';
  }

  get iceSelectedTuple() {
    return this._data.iceSelectedTuple;
  }

  get dtlsLocalParameters() {
    return this._data.dtlsParameters;
  }

  get dtlsState() {
    return this._data.dtlsState || 'new';
  }

  /** Cap the bitrate Tureen's REMB asks the sender for (0: no cap); send transports only. */
  setMaxBitrate(bitrate) {
    if (this._closed) return Promise.reject(new InvalidStateError('WebRtcTransport closed'));
    if (this._direction !== 'send') return Promise.reject(new Error('invalid WebRtcTransport direction'));
    return this._peer._room._request('transport.setMaxBitrate', this._ids({ bitrate })).then(() => this);
  }

  _stateChange(which, state) {
    if (which === 'ice') {
      if (this._data.iceState === state) return;
      this._data.iceState = state;
      this.safeEmit('icestatechange', state);
    } else {
      if (this._data.dtlsState === state) return;
      this._data.dtlsState = state;
      this.safeEmit('dtlsstatechange', state);
    }
  }
}

class PlainRtpTransport extends Transport {
  get localIP() {
    return (this._data.plainRtpParameters || {}).ip;
  }

  get localPort() {
    return (this._data.plainRtpParameters || {}).port;
  }

  get tuple() {
    const local = this._data.plainRtpParameters || {};
    return { localIP: local.ip, localPort: local.port, protocol: 'udp' };
  }
}

module.exports = { WebRtcTransport, PlainRtpTransport };
