'use strict';
// mediasoup v2's ActiveSpeakerDetector, on the room's 'audiolevels' (every 500 ms): a producer
// becomes the active speaker when it is the loudest in the latest report (nobody active
// before) or in the latest 4 reports (somebody active), at -80 dBov or louder, not paused or
// closed; 'activespeakerchange' (peer, producer), or (undefined, undefined) when nobody speaks.

const { SafeEmitter } = require('./emitter');

const REQUIRED_MIN_AUDIO_LEVEL = -80; // dBov
const REQUIRED_MAX_NUM_REPORTS = 4;

class ActiveSpeakerDetector extends SafeEmitter {
  constructor(room) {
    super();
    this._room = room;
    this._closed = false;
    this._reports = [];
    this._activeProducer = null;
    this._onAudioLevels = (levels) => this._update(levels);
    this._onRoomClose = () => this.close();
    room.on('close', this._onRoomClose);
    room.on('audiolevels', this._onAudioLevels);
  }

  get closed() {
    return this._closed;
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    this._room.removeListener('audiolevels', this._onAudioLevels);
    this._room.removeListener('close', this._onRoomClose);
    this.safeEmit('close');
  }

  _update(levels) {
    if (this._closed) return;
    let previous = this._activeProducer;
    let required;
    if (previous && !previous.closed && !previous.paused) {
      required = REQUIRED_MAX_NUM_REPORTS;
    } else {
      previous = null;
      required = 1;
      this._reports = [];
    }
    const reports = this._reports;
    reports.push(levels[0]); // undefined: nobody sends audio
    if (reports.length > REQUIRED_MAX_NUM_REPORTS) {
      reports.shift();
    } else if (reports.length < required) {
      this._setActive(previous);
      return;
    }
    // The same producer must have been the loudest in each of the last `required` reports.
    let current = null;
    for (let i = reports.length - 1; i >= reports.length - required; i -= 1) {
      const report = reports[i];
      if (!report || report.producer.closed || report.producer.paused || report.audioLevel < REQUIRED_MIN_AUDIO_LEVEL) {
        current = null;
        break;
      }
      if (current && report.producer !== current) {
        current = null;
        break;
      }
      current = report.producer;
    }
    this._setActive(current || previous);
  }

  _setActive(producer) {
    if (this._activeProducer === producer) return;
    this._activeProducer = producer;
    if (producer) this.safeEmit('activespeakerchange', producer.peer, producer);
    else this.safeEmit('activespeakerchange', undefined, undefined);
  }
}

module.exports = { ActiveSpeakerDetector, REQUIRED_MIN_AUDIO_LEVEL, REQUIRED_MAX_NUM_REPORTS };
