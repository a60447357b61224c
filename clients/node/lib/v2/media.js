'use strict';
// What mediasoup v2's Producer and Consumer have alike: ids, kind, appData (writable), their
// peer and transport, rtpParameters, the local/remote pause flags and the preferred profile.
// Each class sets the fields in its constructor; these are only the read side.

const { SafeEmitter } = require('./emitter');

/** The simulcast profiles a preferred profile may name (v2). */
const PROFILES = new Set(['default', 'low', 'medium', 'high']);

class MediaObject extends SafeEmitter {
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

  get kind() {
    return this._kind;
  }

  /** The producer's peer (for a Consumer too, as in v2). */
  get peer() {
    return this._peer;
  }

  get transport() {
    return this._transport;
  }

  get rtpParameters() {
    return this._rtpParameters;
  }

  get locallyPaused() {
    return this._locallyPaused;
  }

  get remotelyPaused() {
    return this._remotelyPaused;
  }

  get paused() {
    return this._locallyPaused || this._remotelyPaused;
  }

  get preferredProfile() {
    return this._preferredProfile;
  }
}

module.exports = { MediaObject, PROFILES };
