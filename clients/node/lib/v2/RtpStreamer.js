'use strict';
// mediasoup v2's RtpStreamer (Room.createRtpStreamer): plain RTP of one producer to an address.
// v2 exposes its Consumer and PlainRtpTransport; Tureen makes the streamer as one object
// (rtpStreamer.create), so `consumer` and `transport` here are small stand-ins with what an
// app reads from them (ids, rtpParameters, localIP, localPort) plus `sdp` for ffmpeg/GStreamer.

const { SafeEmitter } = require('./emitter');

class RtpStreamer extends SafeEmitter {
  constructor(room, producer, data) {
    super();
    this._room = room;
    this._id = data.streamerId;
    this._closed = false;
    this._producer = producer;
    this._consumer = { id: data.streamerId, kind: producer.kind, source: producer, rtpParameters: data.rtpParameters, closed: false };
    this._transport = { id: data.streamerId, localIP: data.localIP, localPort: data.localPort, closed: false };
    this._sdp = data.sdp;
    this._onProducerClose = () => this._closeHere();
    producer.on('@close', this._onProducerClose);
  }

  get id() {
    return this._id;
  }

  get closed() {
    return this._closed;
  }

  get consumer() {
    return this._consumer;
  }

  get transport() {
    return this._transport;
  }

  /** An SDP description of the stream for ffmpeg or GStreamer (not in v2). */
  get sdp() {
    return this._sdp;
  }

  close() {
    if (this._closed) return;
    this._closeHere();
    this._room._fireAndForget('rtpStreamer.close', { roomId: this._room._roomId, streamerId: this._id });
  }

  _closeHere() {
    if (this._closed) return;
    this._closed = true;
    this._consumer.closed = true;
    this._transport.closed = true;
    this._producer.removeListener('@close', this._onProducerClose);
    this.emit('@close');
    this.emit('close');
  }
}

module.exports = { RtpStreamer };
