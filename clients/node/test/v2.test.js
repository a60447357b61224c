'use strict';
// mediasoup v2's server API on a real `tureen serve`: the objects, their sync/async shapes and
// the order of their events, as mediasoup 2.6.19 gives them. Peers use plain transports (the
// browser test does WebRTC).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const mediasoup = require('..');
const { MEDIA_CODECS, Server, freePort, peerCapabilities, opusParameters, newId } = require('./support');

let tureen;
let server;

before(async () => {
  tureen = await new Server().start();
  server = mediasoup.Server({ control: tureen.endpoint, timeout: 5000 });
});

after(async () => {
  if (server) server.close();
  await new Promise((r) => setTimeout(r, 100));
  if (tureen) await tureen.stop();
});

/** Resolves with the arguments of the first `name` event of `emitter` (bounded). */
function once(emitter, name, timeout = 5000, filter = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(name, listener);
      reject(new Error(`no '${name}' within ${timeout} ms`));
    }, timeout);
    const listener = (...args) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      emitter.off(name, listener);
      resolve(args);
    };
    emitter.on(name, listener);
  });
}

const notified = (peer, method, timeout) => once(peer, 'notify', timeout, (n) => n.method === method).then(([n]) => n);

async function join(room, peerName) {
  const caps = await room.receiveRequest({ method: 'queryRoom', target: 'room' });
  const request = { method: 'join', target: 'room', peerName, rtpCapabilities: peerCapabilities(caps.rtpCapabilities), spy: false, appData: { peerName } };
  const response = await room.receiveRequest(request);
  return { response, peer: room.getPeerByName(peerName) };
}

async function plainTransport(peer, direction) {
  const id = newId();
  const data = await peer.receiveRequest({
    method: 'createTransport', target: 'peer', id, direction, options: {}, appData: { direction },
    plainRtpParameters: { ip: '127.0.0.1', port: await freePort() },
  });
  return { id, data, transport: peer.getTransportById(id) };
}

test('Server() without new; Room() returns the room at once with v2 capabilities; bad codecs throw', async () => {
  const [room] = await Promise.all([
    once(server, 'newroom').then(([r]) => r),
    Promise.resolve().then(() => server.Room(MEDIA_CODECS)),
  ]);
  assert.ok(server instanceof mediasoup.Server);
  assert.equal(typeof room.id, 'number');
  assert.equal(room.closed, false);
  assert.deepEqual(room.peers, []);
  const local = room.rtpCapabilities;
  assert.deepEqual(local.codecs.map((c) => [c.name, c.preferredPayloadType]), [['opus', 100], ['VP8', 101], ['rtx', 102], ['H264', 103], ['rtx', 104]]);
  await room.ready();
  assert.deepEqual(room.rtpCapabilities, local, 'the capabilities computed here are the server\'s');
  const caps = await room.receiveRequest({ method: 'queryRoom', target: 'room' });
  assert.deepEqual(caps.rtpCapabilities, local);
  assert.throws(() => server.Room([{ kind: 'video', name: 'NOPE', clockRate: 90000 }]), /not supported/);
  assert.throws(() => server.Room('opus'), TypeError);
  await assert.rejects(room.receiveRequest({ method: 'join', notification: true }), /not a request/);
  const closed = once(room, 'close');
  room.close();
  await closed;
  assert.equal(room.closed, true);
  await assert.rejects(room.receiveRequest({ method: 'queryRoom', target: 'room' }), (err) => err instanceof mediasoup.errors.InvalidStateError);
});

test('join, produce, consume: v2 objects, order of events and a consumer whose source is the Producer', async () => {
  const room = server.Room(MEDIA_CODECS);
  const newPeers = [];
  room.on('newpeer', (peer) => newPeers.push(peer.name));

  // The peer is there, and 'newpeer' was emitted, when the join resolves.
  const { response: aliceJoin, peer: alice } = await join(room, 'alice');
  assert.deepEqual(aliceJoin.peers, []);
  assert.equal(alice.name, 'alice');
  assert.deepEqual(alice.appData, { peerName: 'alice' });
  assert.deepEqual(newPeers, ['alice']);
  alice.appData = { writable: true };
  assert.deepEqual(alice.appData, { writable: true });

  const aliceNotes = [];
  alice.on('notify', (n) => aliceNotes.push(n.method));
  const { response: bobJoin, peer: bob } = await join(room, 'bob');
  assert.deepEqual(bobJoin.peers.map((p) => p.name), ['alice']);
  assert.deepEqual(room.peers.map((p) => p.name), ['alice', 'bob']);
  assert.deepEqual(aliceNotes, ['newPeer'], 'alice was told before bob\'s join resolved');

  // alice sends audio: bob's 'newconsumer' (its source the very Producer), then alice's
  // 'newproducer', then the promise: v2's order.
  const order = [];
  const newTransport = once(alice, 'newtransport');
  const send = await plainTransport(alice, 'send');
  const [transport] = await newTransport;
  assert.equal(transport, send.transport);
  assert.equal(transport.direction, 'send');
  assert.deepEqual(transport.appData, { direction: 'send' });
  assert.equal(transport.localIP, send.data.plainRtpParameters.ip);
  bob.on('newconsumer', (consumer) => order.push(['bob newconsumer', consumer]));
  bob.on('notify', (n) => order.push([`bob notify ${n.method}`]));
  alice.on('newproducer', (producer) => order.push(['alice newproducer', producer]));
  const producerId = newId();
  const result = await alice.receiveRequest({
    method: 'createProducer', target: 'peer', id: producerId, kind: 'audio', transportId: send.id,
    rtpParameters: opusParameters(newId()), paused: false, appData: { mic: true },
  });
  order.push(['resolved']);
  assert.equal(result, undefined);
  assert.deepEqual(order.map((o) => o[0]), ['bob newconsumer', 'bob notify newConsumer', 'alice newproducer', 'resolved']);
  const producer = alice.getProducerById(producerId);
  assert.equal(order[2][1], producer);
  assert.deepEqual([producer.kind, producer.peer, producer.transport, producer.paused], ['audio', alice, transport, false]);
  assert.deepEqual(producer.appData, { mic: true });
  const consumer = order[0][1];
  assert.equal(consumer.source, producer, 'the consumer\'s source is the Producer object');
  assert.equal(consumer.peer, alice, 'a consumer\'s peer is its producer\'s peer (v2)');
  assert.deepEqual(bob.consumers, [consumer]);
  assert.equal(bob.getConsumerForSource(producer), consumer);
  assert.deepEqual([consumer.kind, consumer.enabled, consumer.paused], ['audio', false, false]);

  // carol joins later: her consumer of alice's producer is in her peer, with its source.
  const { response: carolJoin, peer: carol } = await join(room, 'carol');
  assert.deepEqual(carolJoin.peers.find((p) => p.name === 'alice').consumers.map((c) => c.kind), ['audio']);
  assert.equal(carol.consumers.length, 1);
  assert.equal(carol.consumers[0].source, producer);

  // bob enables his consumer on a receiving transport.
  const recv = await plainTransport(bob, 'recv');
  const handled = once(consumer, 'handled');
  const enabled = await bob.receiveRequest({ method: 'enableConsumer', target: 'peer', id: consumer.id, transportId: recv.id, paused: false });
  await handled;
  assert.equal(enabled.paused, false);
  assert.equal(consumer.enabled, true);
  assert.equal(consumer.transport, recv.transport);

  // The app pauses the producer: at once locally ('pause' 'local'), then the consumers follow
  // ('pause' 'source') and the clients are told.
  const sourcePause = once(consumer, 'pause');
  const bobPaused = notified(bob, 'consumerPaused');
  const alicePaused = notified(alice, 'producerPaused');
  const localPause = once(producer, 'pause');
  assert.equal(producer.pause({ by: 'app' }), true);
  assert.deepEqual(await localPause, ['local', { by: 'app' }]);
  assert.deepEqual([producer.locallyPaused, producer.paused], [true, true]);
  assert.deepEqual(await sourcePause, ['source']);
  assert.equal(consumer.sourcePaused, true);
  assert.equal((await alicePaused).id, producerId);
  assert.equal((await bobPaused).id, consumer.id);
  const sourceResume = once(consumer, 'resume');
  assert.equal(producer.resume(), true);
  assert.deepEqual(await sourceResume, ['source']);

  // The client pauses its producer (a notification relayed): 'pause' 'remote'.
  const remotePause = once(producer, 'pause');
  await alice.receiveNotification({ method: 'pauseProducer', target: 'peer', notification: true, id: producerId, appData: 1 });
  assert.deepEqual(await remotePause, ['remote', 1]);
  assert.equal(producer.remotelyPaused, true);
  await alice.receiveNotification({ method: 'resumeProducer', target: 'peer', notification: true, id: producerId });
  assert.equal(producer.paused, false);

  // The app pauses bob's consumer and sets its profile; bob's client is told.
  const bobConsumerPaused = notified(bob, 'consumerPaused');
  assert.equal(consumer.pause('app'), true);
  assert.equal(consumer.locallyPaused, true);
  assert.equal((await bobConsumerPaused).appData, 'app');
  assert.equal(consumer.resume(), true);
  const profileSet = notified(bob, 'consumerPreferredProfileSet');
  consumer.setPreferredProfile('low');
  assert.equal((await profileSet).profile, 'low');
  assert.equal(consumer.preferredProfile, 'low');
  // A client's own pause of its consumer: 'pause' 'remote'.
  const consumerRemote = once(consumer, 'pause');
  await bob.receiveNotification({ method: 'pauseConsumer', target: 'peer', notification: true, id: consumer.id });
  assert.deepEqual(await consumerRemote, ['remote', undefined]);
  // A refused notification resolves (v2 logs it) and changes nothing.
  assert.equal(await bob.receiveNotification({ method: 'pauseConsumer', target: 'peer', notification: true, id: 1 }), undefined);

  // alice's client closes its producer: 'close' 'remote'; the consumers close, bob is told.
  const producerClosed = once(producer, 'close');
  const consumerClosed = once(consumer, 'close');
  const bobTold = notified(bob, 'consumerClosed');
  await alice.receiveNotification({ method: 'closeProducer', target: 'peer', notification: true, id: producerId });
  assert.deepEqual(await producerClosed, ['remote', undefined]);
  await consumerClosed;
  assert.equal((await bobTold).id, consumer.id);
  assert.deepEqual([producer.closed, consumer.closed, alice.producers.length, bob.consumers.length], [true, true, 0, 0]);

  // The app closes carol: 'close' 'local' at once; her client gets 'closed', the others 'peerClosed'.
  const carolClosedNote = notified(carol, 'closed');
  const alicePeerClosed = notified(alice, 'peerClosed');
  const carolClose = once(carol, 'close');
  carol.close({ kicked: true });
  assert.deepEqual(await carolClose, ['local', { kicked: true }]);
  assert.equal(carol.closed, true);
  assert.equal(room.getPeerByName('carol'), undefined);
  assert.deepEqual((await carolClosedNote).appData, { kicked: true });
  assert.equal((await alicePeerClosed).name, 'carol');

  // bob's client leaves: 'close' 'remote', its transports close too.
  const bobClose = once(bob, 'close');
  const recvClose = once(recv.transport, 'close');
  await bob.receiveNotification({ method: 'leave', target: 'peer', notification: true, appData: 'bye' });
  assert.deepEqual(await bobClose, ['remote', 'bye']);
  assert.deepEqual(await recvClose, ['remote', undefined]);
  assert.deepEqual(room.peers.map((p) => p.name), ['alice']);
  await assert.rejects(bob.receiveRequest({ method: 'restartTransport', target: 'peer', id: recv.id }), (err) => err.name === 'InvalidStateError');

  // The app closes alice's transport: 'close' 'local', her client gets transportClosed.
  const transportClosedNote = notified(alice, 'transportClosed');
  transport.close({ bye: 1 });
  assert.equal(transport.closed, true);
  const transportNote = await transportClosedNote;
  assert.deepEqual([transportNote.id, transportNote.appData], [send.id, { bye: 1 }]);

  // Closing the room closes its peers.
  const aliceClose = once(alice, 'close');
  const aliceClosedNote = notified(alice, 'closed');
  room.close();
  assert.deepEqual(await aliceClose, ['local', undefined]);
  assert.equal(alice.closed, true);
  await aliceClosedNote;
});

test('a failed request rejects with the server\'s message and changes nothing', async () => {
  const room = server.Room(MEDIA_CODECS);
  const { peer } = await join(room, 'dave');
  await assert.rejects(
    peer.receiveRequest({ method: 'createProducer', target: 'peer', id: newId(), kind: 'audio', transportId: 42, rtpParameters: opusParameters(newId()), paused: false }),
    (err) => err.code === mediasoup.ErrorCode.NOT_FOUND && /42/.test(err.message),
  );
  assert.deepEqual(peer.producers, []);
  await assert.rejects(room.receiveRequest({ method: 'join', target: 'room', peerName: 'dave', rtpCapabilities: peerCapabilities(room.rtpCapabilities) }), /dave/);
  assert.deepEqual(room.peers.map((p) => p.name), ['dave']);
  room.close();
});

test('a peer that leaves takes the consumers of its producers with it; leave then close() stays remote', async () => {
  const room = server.Room(MEDIA_CODECS);
  const { peer: erin } = await join(room, 'erin');
  const { peer: fred } = await join(room, 'fred');
  const send = await plainTransport(erin, 'send');
  await erin.receiveRequest({
    method: 'createProducer', target: 'peer', id: newId(), kind: 'audio', transportId: send.id,
    rtpParameters: opusParameters(newId()), paused: false,
  });
  const [consumer] = fred.consumers;
  assert.equal(consumer.peer, erin);
  const consumerClose = once(consumer, 'close');
  const erinClose = once(erin, 'close');
  const fredTold = notified(fred, 'peerClosed');
  // What a socket's close handler does right after relaying the client's leave (the demo app).
  const relayed = erin.receiveNotification({ method: 'leave', target: 'peer', notification: true });
  if (!erin.closed) erin.close();
  await relayed;
  assert.deepEqual(await erinClose, ['remote', undefined]);
  await consumerClose;
  assert.deepEqual(fred.consumers, []);
  assert.equal((await fredTold).name, 'erin');
  room.close();
});

const dgram = require('node:dgram');

/** A UDP socket on 127.0.0.1 (a peer's media end) and the packets it receives. */
async function udpSocket() {
  const socket = dgram.createSocket('udp4');
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  socket.received = [];
  socket.on('message', (msg) => socket.received.push(msg));
  return socket;
}

/** An RTP packet; `level` (dBov, 0..-127) adds the ssrc-audio-level extension (id 1). Its
 * payload begins as a VP8 key frame does (descriptor S=1, partition 0; payload header P=0):
 * a video consumer starts only at one (docs/media-quality.md), and opus ignores it. */
function rtpPacket(seq, ssrc, pt, level) {
  const ext = level === undefined ? Buffer.alloc(0) : Buffer.from([0xbe, 0xde, 0x00, 0x01, 0x10, 0x80 | -level, 0, 0]);
  const header = Buffer.alloc(12);
  header[0] = 0x80 | (ext.length ? 0x10 : 0);
  header[1] = pt;
  header.writeUInt16BE(seq & 0xffff, 2);
  header.writeUInt32BE((seq * 960) >>> 0, 4);
  header.writeUInt32BE(ssrc >>> 0, 8);
  return Buffer.concat([header, ext, Buffer.from([0x10, 0x00]), Buffer.alloc(58, 0xab)]);
}

/** [packetType, fmt] of each packet of a compound RTCP datagram (RTP: none). */
function rtcpPackets(buf) {
  const packets = [];
  let at = 0;
  while (at + 4 <= buf.length && buf[at + 1] >= 192 && buf[at + 1] <= 223) {
    packets.push([buf[at + 1], buf[at] & 0x1f]);
    at += (buf.readUInt16BE(at + 2) + 1) * 4;
  }
  return packets;
}

async function until(check, what, timeout = 5000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** alice sends `kind` on a plain transport from a socket of ours; bob receives on another. */
async function mediaPair(kind) {
  const room = server.Room(MEDIA_CODECS);
  const { peer: alice } = await join(room, 'alice');
  const { peer: bob } = await join(room, 'bob');
  const aliceSocket = await udpSocket();
  const sendId = newId();
  const sent = await alice.receiveRequest({
    method: 'createTransport', target: 'peer', id: sendId, direction: 'send', options: {},
    plainRtpParameters: { ip: '127.0.0.1', port: aliceSocket.address().port },
  });
  const bobSocket = await udpSocket();
  const recvId = newId();
  await bob.receiveRequest({
    method: 'createTransport', target: 'peer', id: recvId, direction: 'recv', options: {},
    plainRtpParameters: { ip: '127.0.0.1', port: bobSocket.address().port },
  });
  const ssrc = newId();
  const rtpParameters = kind === 'audio'
    ? opusParameters(ssrc)
    : {
      muxId: '1',
      codecs: [{ name: 'VP8', mimeType: 'video/VP8', payloadType: 96, clockRate: 90000, rtcpFeedback: [{ type: 'nack', parameter: 'pli' }] }],
      headerExtensions: [],
      encodings: [{ ssrc }],
      rtcp: { cname: 'v2-test', reducedSize: true, mux: true },
    };
  const producerId = newId();
  await alice.receiveRequest({ method: 'createProducer', target: 'peer', id: producerId, kind, transportId: sendId, rtpParameters, paused: false });
  const [consumer] = bob.consumers;
  await bob.receiveRequest({ method: 'enableConsumer', target: 'peer', id: consumer.id, transportId: recvId, paused: false });
  const pt = kind === 'audio' ? 111 : 96;
  let seq = 1;
  const send = (count, level) => {
    for (let i = 0; i < count; i += 1) {
      aliceSocket.send(rtpPacket(seq, ssrc, pt, level), sent.plainRtpParameters.port, '127.0.0.1');
      seq += 1;
    }
  };
  const close = () => {
    room.close();
    aliceSocket.close();
    bobSocket.close();
  };
  return { room, alice, bob, producer: alice.getProducerById(producerId), consumer, send, aliceSocket, bobSocket, close, ssrc };
}

test('setMaxBitrate on a send transport', async () => {
  const room = server.Room(MEDIA_CODECS);
  const { peer } = await join(room, 'gina');
  const sendId = newId();
  await peer.receiveRequest({ method: 'createTransport', target: 'peer', id: sendId, direction: 'send', options: {} });
  const recvId = newId();
  await peer.receiveRequest({ method: 'createTransport', target: 'peer', id: recvId, direction: 'recv', options: {} });
  const transport = peer.getTransportById(sendId);
  assert.equal(await transport.setMaxBitrate(300000), transport);
  await assert.rejects(peer.getTransportById(recvId).setMaxBitrate(300000), /direction/);
  const [stats] = await transport.getStats();
  assert.equal(stats.type, 'transport');
  room.close();
});

test('consumer.requestKeyFrame reaches the sender; getStats of producer, consumer and transport', async () => {
  const media = await mediaPair('video');
  try {
    media.send(20);
    await until(() => media.bobSocket.received.length > 5, 'video at bob');
    await new Promise((r) => setTimeout(r, 500)); // past Tureen's throttle of key frame requests per stream
    const before = media.aliceSocket.received.length;
    media.consumer.requestKeyFrame();
    // An RTCP PLI (PT 206, FMT 1) toward alice's socket.
    await until(
      () => media.aliceSocket.received.slice(before).some((p) => rtcpPackets(p).some(([type, fmt]) => type === 206 && fmt === 1)),
      'a PLI at alice',
    );
    const producerStats = await media.producer.getStats();
    assert.equal(producerStats[0].type, 'inbound-rtp');
    assert.equal(producerStats[0].ssrc, media.ssrc);
    const consumerStats = await media.consumer.getStats();
    assert.ok(consumerStats.some((s) => s.type === 'outbound-rtp'));
    assert.ok(Array.isArray(await media.producer.transport.getStats()));
    const dump = await media.alice.dump();
    assert.equal(dump.name, 'alice');
  } finally {
    media.close();
  }
});

test('room audio levels and the active speaker', async () => {
  const media = await mediaPair('audio');
  try {
    const detector = media.room.createActiveSpeakerDetector();
    const levels = [];
    media.room.on('audiolevels', (entries) => levels.push(entries));
    const change = once(detector, 'activespeakerchange', 10000);
    const timer = setInterval(() => media.send(5, -20), 100); // -20 dBov
    try {
      const [peer, producer] = await change;
      assert.equal(peer, media.alice);
      assert.equal(producer, media.producer);
      const loud = levels.find((entries) => entries.length > 0);
      assert.equal(loud[0].producer, media.producer);
      assert.ok(loud[0].audioLevel <= 0 && loud[0].audioLevel >= -127);
    } finally {
      clearInterval(timer);
    }
    // v2 keeps a silent speaker active until its producer pauses or closes; then nobody is.
    const silent = once(detector, 'activespeakerchange', 10000);
    media.producer.pause();
    assert.deepEqual(await silent, [undefined, undefined]);
  } finally {
    media.close();
  }
});

test('createRtpStreamer sends a producer as plain RTP and closes with it', async () => {
  const media = await mediaPair('audio');
  const target = await udpSocket();
  try {
    const streamer = await media.room.createRtpStreamer(media.producer, { remoteIP: '127.0.0.1', remotePort: target.address().port });
    assert.equal(streamer.consumer.source, media.producer);
    assert.equal(typeof streamer.transport.localPort, 'number');
    assert.match(streamer.sdp, /m=audio/);
    media.send(20);
    await until(() => target.received.length > 5, 'RTP at the streamer\'s target');
    const closed = once(streamer, 'close');
    media.producer.close();
    await closed;
    assert.equal(streamer.closed, true);
  } finally {
    target.close();
    media.close();
  }
});

test('media flows between peers set up through the v2 objects (plain RTP)', async () => {
  const media = await mediaPair('video');
  try {
    media.send(20);
    await until(() => media.bobSocket.received.filter((p) => p[1] === 101 || (p[1] & 0x7f) === 101).length > 5, 'VP8 (room PT 101) at bob');
    assert.equal(media.consumer.source, media.producer);
    assert.equal(media.consumer.enabled, true);
  } finally {
    media.close();
  }
});
