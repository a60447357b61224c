'use strict';
// mediasoup v2's Producer, mirrored from a peer's createProducer; the app's pause, resume and
// close go to Tureen (producer.*), the client's come through Peer.receiveNotification.

const { MediaObject, PROFILES } = require('./media');
const { InvalidStateError } = require('./errors');

class Producer extends MediaObject {
  constructor(peer, request, transport) {
    super();
    this._peer = peer;
    this._id = request.id;
    this._kind = request.kind;
    this._transport = transport;
    this._rtpParameters = request.rtpParameters;
    this._appData = request.appData;
    this._locallyPaused = false;
    this._remotelyPaused = Boolean(request.paused);
    this._preferredProfile = 'default';
    this._closed = false;
  }

  close(appData) {
    if (this._closed) return;
    this._closeHere('local', appData);
    this._room()._fireAndForget('producer.close', this._ids(appData));
  }

  pause(appData) {
    if (this._closed) return false;
    if (this._locallyPaused) return true;
    const wasPaused = this.paused;
    this._locallyPaused = true;
    this._room()._request('producer.pause', this._ids(appData), { pre: () => !wasPaused && this._sourcePaused(true) }).catch(() => {});
    this.safeEmit('pause', 'local', appData);
    return this.paused;
  }

  resume(appData) {
    if (this._closed) return false;
    if (!this._locallyPaused) return true;
    this._locallyPaused = false;
    const resumes = !this._remotelyPaused;
    this._room()._request('producer.resume', this._ids(appData), { pre: () => resumes && this._sourcePaused(false) }).catch(() => {});
    this.safeEmit('resume', 'local', appData);
    return !this.paused;
  }

  /** v2 sets a producer's preferred profile in its worker; Tureen chooses per consumer, so this
   * only records it (consumer.setPreferredProfile is what changes what a peer receives). */
  setPreferredProfile(profile) {
    if (this._closed || !PROFILES.has(profile)) return;
    this._preferredProfile = profile;
  }

  dump() {
    if (this._closed) return Promise.reject(new InvalidStateError('Producer closed'));
    return this._peer.dump().then((data) => (data.producers || []).find((p) => p.id === this._id));
  }

  getStats() {
    if (this._closed) return Promise.reject(new InvalidStateError('Producer closed'));
    return this._room()._request('producer.getStats', this._ids());
  }

  // ---------------------------------------------------------------- internals

  _room() {
    return this._peer._room;
  }

  _ids(appData) {
    const params = { roomId: this._room()._roomId, peerName: this._peer.name, producerId: this._id };
    if (appData !== undefined) params.appData = appData;
    return params;
  }

  _remotePaused(paused, appData) {
    if (this._closed || this._remotelyPaused === paused) return;
    const before = this.paused;
    this._remotelyPaused = paused;
    this.safeEmit(paused ? 'pause' : 'resume', 'remote', appData);
    if (before !== this.paused) this._sourcePaused(this.paused);
  }

  /** The consumers of this producer (in every peer) follow its pause, as v2's 'source' pause. */
  _sourcePaused(paused) {
    for (const peer of this._room().peers) {
      for (const consumer of peer.consumers) {
        if (consumer.source === this) consumer._sourcePausedChange(paused);
      }
    }
  }

  _closeHere(originator, appData) {
    if (this._closed) return;
    this._closed = true;
    this.emit('@close');
    this.safeEmit('close', originator, appData);
    // Its consumers close with it (v2: the worker closes them; Tureen tells their clients
    // consumerClosed, except when the producer's peer is gone, as v2).
    for (const peer of this._room().peers) {
      for (const consumer of peer.consumers) {
        if (consumer.source === this) consumer._closeHere();
      }
    }
  }
}

module.exports = { Producer };
