'use strict';
// mediasoup v2's Consumer: made from Tureen's newConsumer notification (or a join reply), its
// `source` the very Producer object of the other peer and its `peer` that producer's peer, as
// in v2. The app's pause, resume and profile go to Tureen (consumer.*).

const { MediaObject, PROFILES } = require('./media');
const { InvalidStateError } = require('./errors');

class Consumer extends MediaObject {
  constructor(receiver, data, source, owner) {
    super();
    this._receiver = receiver; // the peer that receives it (v2 keeps it private)
    this._id = data.id;
    this._kind = data.kind;
    this._rtpParameters = data.rtpParameters;
    this._appData = source ? source.appData : data.appData;
    this._source = source;
    this._peer = owner;
    this._transport = undefined;
    this._locallyPaused = false;
    this._remotelyPaused = false;
    this._sourcePaused = Boolean(source && source.paused);
    this._preferredProfile = 'default';
    this._effectiveProfile = null;
    this._closed = false;
  }

  /** The Producer it receives. */
  get source() {
    return this._source;
  }

  get enabled() {
    return Boolean(this._transport);
  }

  get sourcePaused() {
    return this._sourcePaused;
  }

  get paused() {
    return this._locallyPaused || this._remotelyPaused || this._sourcePaused;
  }

  get effectiveProfile() {
    return this._effectiveProfile;
  }

  hasPeer() {
    return Boolean(this._peer);
  }

  toJson() {
    const json = {
      id: this._id,
      kind: this._kind,
      rtpParameters: this._rtpParameters,
      paused: this.paused,
      preferredProfile: this._preferredProfile,
      effectiveProfile: this._effectiveProfile,
      appData: this._appData,
    };
    if (this._peer) json.peerName = this._peer.name;
    return json;
  }

  /** v2 closes a consumer only with its source or peers; Tureen has no consumer.close: this
   * closes the mirror (and its events) and tells no one, as v2's does for a consumer whose
   * peer is gone. */
  close() {
    this._closeHere();
  }

  pause(appData) {
    if (this._closed) return false;
    if (this._locallyPaused) return true;
    this._locallyPaused = true;
    this._room()._fireAndForget('consumer.pause', this._ids({ appData }));
    this.safeEmit('pause', 'local', appData);
    return this.paused;
  }

  resume(appData) {
    if (this._closed) return false;
    if (!this._locallyPaused) return true;
    this._locallyPaused = false;
    this._room()._fireAndForget('consumer.resume', this._ids({ appData }));
    this.safeEmit('resume', 'local', appData);
    return !this.paused;
  }

  /** 'low', 'medium', 'high' or 'default'; the client gets consumerPreferredProfileSet. */
  setPreferredProfile(profile) {
    if (this._closed || profile === this._preferredProfile || !PROFILES.has(profile)) return;
    this._room()
      ._request('consumer.setPreferredProfile', this._ids({ profile }), { pre: () => this._setPreferredProfile(profile) })
      .catch(() => {});
  }

  /** A key frame from the producer's sender (video, enabled, not paused; as v2). */
  requestKeyFrame() {
    if (this._closed || !this.enabled || this.paused || this._kind !== 'video') return;
    this._room()._fireAndForget('consumer.requestKeyFrame', this._ids());
  }

  dump() {
    if (this._closed) return Promise.reject(new InvalidStateError('Consumer closed'));
    return this._receiver.dump().then((data) => (data.consumers || []).find((c) => c.id === this._id));
  }

  getStats() {
    if (this._closed) return Promise.reject(new InvalidStateError('Consumer closed'));
    return this._room()._request('consumer.getStats', this._ids());
  }

  // ---------------------------------------------------------------- internals

  _room() {
    return this._receiver._room;
  }

  _ids(extra = {}) {
    const params = { roomId: this._room()._roomId, peerName: this._receiver.name, consumerId: this._id };
    for (const [key, value] of Object.entries(extra)) if (value !== undefined) params[key] = value;
    return params;
  }

  _enabled(transport, request, reply) {
    this._transport = transport;
    if (request.paused) this._remotePaused(true, undefined);
    if (request.preferredProfile) this._preferredProfile = request.preferredProfile;
    if (reply.preferredProfile) this._preferredProfile = reply.preferredProfile;
    if (reply.effectiveProfile !== undefined) this._effectiveProfile = reply.effectiveProfile;
    this.safeEmit('handled');
  }

  _unhandled() {
    if (!this._transport) return;
    this._transport = undefined;
    this.safeEmit('unhandled');
  }

  _remotePaused(paused, appData) {
    if (this._closed || this._remotelyPaused === paused) return;
    this._remotelyPaused = paused;
    this.safeEmit(paused ? 'pause' : 'resume', 'remote', appData);
  }

  _sourcePausedChange(paused) {
    if (this._closed || this._sourcePaused === paused) return;
    this._sourcePaused = paused;
    this.safeEmit(paused ? 'pause' : 'resume', 'source');
  }

  _setPreferredProfile(profile) {
    if (PROFILES.has(profile)) this._preferredProfile = profile;
  }

  _effectiveProfileChanged(profile) {
    if (this._closed || this._effectiveProfile === profile) return;
    this._effectiveProfile = profile;
    this.safeEmit('effectiveprofilechange', profile);
  }

  _closeHere() {
    if (this._closed) return;
    this._closed = true;
    this.emit('@close');
    this.safeEmit('close');
  }
}

module.exports = { Consumer };
