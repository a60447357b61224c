'use strict';
// TureenClient against a real `tureen serve` (one worker; max_peers_per_room = 2 so that a third
// join is refused with `limit`).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { TureenClient, TureenError, TureenTimeoutError, ErrorCode } = require('..');
const { MEDIA_CODECS, Server, freePort, peerCapabilities, opusParameters, newId } = require('./support');

let server;
let client;

before(async () => {
  server = await new Server({ config: 'max_peers_per_room = 2\n' }).start();
  client = new TureenClient(server.endpoint, { timeout: 5000 });
  await client.connect();
});

after(async () => {
  if (client) await client.close();
  if (server) await server.stop();
});

async function rejectsWith(promise, code, text = '') {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof TureenError, `not a TureenError: ${err}`);
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.toLowerCase().includes(text.toLowerCase()), err.message);
    return true;
  });
}

test('server.info, server.ping and room.list answer', async () => {
  const info = await client.serverInfo();
  assert.equal(info.ready, true);
  assert.equal(info.workers.length, 1);
  assert.equal(info.controlEndpoint, server.endpoint);
  assert.deepEqual(await client.ping(), { pong: true });
  assert.ok(Array.isArray(await client.listRooms()));
  const worker = await client.dumpWorker(0);
  assert.equal(worker.index, 0);
});

test('hosts: the supervisor\'s own is listed, drained and undrained; peers placed by host or worker', async () => {
  const listing = await client.listHosts();
  assert.equal(listing.listening, null);
  assert.deepEqual(listing.hosts.map((h) => [h.name, h.state, h.local, h.workers]), [['local', 'up', true, [0]]]);
  const roomId = 'node-hosts';
  await client.createRoom(MEDIA_CODECS, { roomId });
  const caps = await client.peerRequest(roomId, null, { method: 'queryRoom', target: 'room' });
  await client.peerRequest(roomId, null, { method: 'join', target: 'room', peerName: 'alice', rtpCapabilities: peerCapabilities(caps.rtpCapabilities) });
  try {
    const drained = await client.drainHost('local');
    assert.equal(drained.state, 'draining');
    assert.equal((await client.listHosts()).hosts[0].state, 'draining');
    await rejectsWith(client.placePeer(roomId, 'alice', { host: 'local' }), ErrorCode.UNAVAILABLE, 'draining');
    await rejectsWith(client.placePeer(roomId, 'alice', { worker: 0 }), ErrorCode.UNAVAILABLE, 'draining');
  } finally {
    assert.equal((await client.drainHost('local', false)).state, 'up');
  }
  assert.deepEqual(await client.placePeer(roomId, 'alice', { host: 'local' }), { worker: 0 });
  assert.deepEqual(await client.placePeer(roomId, 'alice', { host: 'local', worker: 0 }), { worker: 0 });
  await rejectsWith(client.placePeer(roomId, 'alice', { host: 'nowhere' }), ErrorCode.NOT_FOUND, "no host named 'nowhere'");
  await rejectsWith(client.drainHost('nowhere'), ErrorCode.NOT_FOUND, 'the hosts are: local');
  await assert.rejects(client.placePeer(roomId, 'alice', {}), TypeError);
  await assert.rejects(client.drainHost('local', 'yes'), TypeError);
  await client.closeRoom(roomId);
});

test('a room: two peers join, events arrive, app actions tell the peers, limit and close', async () => {
  const roomId = 'node-room';
  const created = await client.createRoom(MEDIA_CODECS, { roomId, appData: { by: 'node' } });
  assert.equal(created.roomId, roomId);
  const caps = await client.peerRequest(roomId, null, { method: 'queryRoom', target: 'room' });
  const rtpCapabilities = peerCapabilities(caps.rtpCapabilities);
  const join = (peerName) =>
    client.peerRequest(roomId, null, { method: 'join', target: 'room', peerName, rtpCapabilities, spy: false, appData: { peerName } });

  const notes = [];
  const onNotification = (room, peerName, notification) => notes.push([room, peerName, notification.method]);
  client.on('notification', onNotification);
  const joined = [];
  client.on('peer.joined', (event) => joined.push(event.peerName));

  await join('alice');
  const bobReply = await join('bob');
  assert.deepEqual(bobReply.peers.map((p) => p.name), ['alice']);
  const newPeer = await client.nextNotification('alice', 'newPeer');
  assert.equal(newPeer.name, 'bob');
  assert.deepEqual(notes, [[roomId, 'alice', 'newPeer']]); // the emitter saw it too
  assert.deepEqual(joined, ['alice', 'bob']);
  client.off('notification', onNotification);

  // A third peer is past max_peers_per_room: code limit, naming the configuration key.
  await rejectsWith(join('carol'), ErrorCode.LIMIT, 'max_peers_per_room');

  const dump = await client.dumpRoom(roomId);
  assert.deepEqual(dump.peers.map((p) => p.name).sort(), ['alice', 'bob']);
  const listed = (await client.listRooms()).find((r) => r.roomId === roomId);
  assert.equal(listed.peers, 2);

  // alice sends audio on a plain transport; bob gets a consumer.
  const send = newId();
  const port = await freePort();
  await client.peerRequest(roomId, 'alice', {
    method: 'createTransport', target: 'peer', id: send, direction: 'send', options: {},
    plainRtpParameters: { ip: '127.0.0.1', port },
  });
  const recv = newId();
  await client.peerRequest(roomId, 'bob', {
    method: 'createTransport', target: 'peer', id: recv, direction: 'recv', options: {},
    plainRtpParameters: { ip: '127.0.0.1', port: await freePort() },
  });
  const producerId = newId();
  await client.peerRequest(roomId, 'alice', {
    method: 'createProducer', target: 'peer', id: producerId, kind: 'audio', transportId: send,
    rtpParameters: opusParameters(newId()), paused: false,
  });
  const consumer = await client.nextNotification('bob', 'newConsumer');
  await client.peerRequest(roomId, 'bob', { method: 'enableConsumer', target: 'peer', id: consumer.id, transportId: recv, paused: false });

  await client.pauseProducer(roomId, 'alice', producerId, { why: 'mod' });
  const paused = await client.nextNotification('alice', 'producerPaused');
  assert.deepEqual([paused.id, paused.appData], [producerId, { why: 'mod' }]);
  await client.nextNotification('bob', 'consumerPaused', { match: { id: consumer.id } });
  await client.resumeProducer(roomId, 'alice', producerId);
  await client.nextNotification('alice', 'producerResumed', { match: { id: producerId } });
  await client.nextNotification('bob', 'consumerResumed', { match: { id: consumer.id } });

  await client.pauseConsumer(roomId, 'bob', consumer.id, 7);
  const consumerPaused = await client.nextNotification('bob', 'consumerPaused', { match: { id: consumer.id } });
  assert.deepEqual([consumerPaused.peerName, consumerPaused.appData], ['alice', 7]);
  await client.resumeConsumer(roomId, 'bob', consumer.id);
  await client.nextNotification('bob', 'consumerResumed', { match: { id: consumer.id } });
  await client.setConsumerPreferredProfile(roomId, 'bob', consumer.id, 'low');
  const profile = await client.nextNotification('bob', 'consumerPreferredProfileSet');
  assert.deepEqual(profile, {
    method: 'consumerPreferredProfileSet', target: 'peer', notification: true, id: consumer.id, peerName: 'alice', profile: 'low',
  });

  // A protocol notification from a client, through room.notify.
  await client.peerNotify(roomId, 'bob', { method: 'pauseConsumer', target: 'peer', notification: true, id: consumer.id });
  await rejectsWith(
    client.peerNotify(roomId, 'bob', { method: 'pauseConsumer', target: 'peer', notification: true, id: 99 }),
    ErrorCode.NOT_FOUND,
  );

  await client.closeTransport(roomId, 'bob', recv);
  assert.equal((await client.nextNotification('bob', 'transportClosed')).id, recv);
  await client.closeProducer(roomId, 'alice', producerId);
  await client.nextNotification('alice', 'producerClosed', { match: { id: producerId } });

  await client.closePeer(roomId, 'bob', { kicked: true });
  assert.deepEqual((await client.nextNotification('bob', 'closed')).appData, { kicked: true });
  assert.equal((await client.nextNotification('alice', 'peerClosed')).name, 'bob');
  const peerClosed = await client.nextEvent((e) => e.event === 'peer.closed' && e.peerName === 'bob');
  assert.equal(peerClosed.roomId, roomId);
  await rejectsWith(client.closePeer(roomId, 'bob'), ErrorCode.NOT_FOUND, 'bob');

  const roomClosed = new Promise((resolve) => client.once('room.closed', resolve));
  await client.closeRoom(roomId);
  assert.equal((await roomClosed).roomId, roomId);
  assert.ok(!(await client.listRooms()).some((r) => r.roomId === roomId));
});

test('errors carry the codes of docs/control-api.md', async () => {
  await rejectsWith(client.dumpRoom('no-such-room'), ErrorCode.NOT_FOUND, 'no-such-room');
  await rejectsWith(client.createRoom('not a list'), ErrorCode.BAD_REQUEST, 'mediaCodecs');
  await rejectsWith(client.request('no.such.method'), ErrorCode.UNKNOWN_METHOD);
  await client.createRoom(MEDIA_CODECS, { roomId: 'dup' });
  await rejectsWith(client.createRoom(MEDIA_CODECS, { roomId: 'dup' }), ErrorCode.DUPLICATE);
  await client.closeRoom('dup');
  const err = await client.dumpRoom('x').catch((e) => e);
  assert.equal(err.method, 'room.dump');
  assert.ok(!(err instanceof TureenTimeoutError));
  // Bad arguments never reach the server.
  await assert.rejects(client.request('server.info', { id: 3 }), TypeError);
  await assert.rejects(client.request('server.info', []), TypeError);
});

test('a second connection subscribes to a room, gets its events, unsubscribes', async () => {
  const other = new TureenClient(server.endpoint, { timeout: 5000 });
  await other.connect();
  try {
    const roomId = 'shared-room';
    const created = await client.createRoom(MEDIA_CODECS, { roomId });
    assert.deepEqual(await other.subscribe(roomId), { roomId, subscribers: 2 });
    await client.peerRequest(roomId, null, {
      method: 'join', target: 'room', peerName: 'dave', rtpCapabilities: peerCapabilities(created.rtpCapabilities), spy: false,
    });
    const event = await other.nextEvent((e) => e.event === 'peer.joined');
    assert.deepEqual([event.roomId, event.peerName], [roomId, 'dave']);
    assert.deepEqual(await other.unsubscribe(roomId), { roomId, subscribers: 1 });
    await rejectsWith(other.unsubscribe(roomId), ErrorCode.NOT_FOUND);
    await client.closeRoom(roomId);
    await rejectsWith(other.subscribe('no-such-room'), ErrorCode.NOT_FOUND);
  } finally {
    await other.close();
  }
});

test('a request to an endpoint nobody listens on fails with a timeout error', async () => {
  const lonely = new TureenClient(`tcp://127.0.0.1:${await freePort()}`, { timeout: 300 });
  await lonely.connect();
  try {
    await assert.rejects(lonely.ping(), (err) => {
      assert.ok(err instanceof TureenTimeoutError);
      assert.ok(err instanceof TureenError);
      assert.equal(err.code, ErrorCode.UNAVAILABLE);
      assert.equal(err.method, 'server.ping');
      assert.match(err.message, /no answer to server\.ping .* within 300 ms; is `tureen serve` running there\?/);
      return true;
    });
    await assert.rejects(lonely.nextEvent(() => true, { timeout: 50 }), TureenTimeoutError);
  } finally {
    await lonely.close();
  }
  // A closed client refuses at once; a pending request fails when the client closes.
  await assert.rejects(lonely.ping(), (err) => err.code === ErrorCode.UNAVAILABLE && /connect\(\)/.test(err.message));
  const closing = new TureenClient(`tcp://127.0.0.1:${await freePort()}`, { timeout: 5000 });
  await closing.connect();
  const pending = closing.ping();
  await closing.close();
  await assert.rejects(pending, (err) => err.code === ErrorCode.UNAVAILABLE && /client closed/.test(err.message));
});

test('bad options are refused in the constructor', () => {
  assert.throws(() => new TureenClient('tcp://127.0.0.1:1', { timeout: -1 }), /timeout/);
  assert.throws(() => new TureenClient(''), /endpoint/);
  assert.throws(() => new TureenClient('tcp://127.0.0.1:1', { curve: { cert: '/nonexistent.key_secret', serverKey: 'x' } }), /server key/);
});

test('server.subscribe: a watcher gets every room\'s lifecycle events; setLogLevel', async () => {
  const watcher = new TureenClient(server.endpoint, { timeout: 5000 });
  await watcher.connect();
  try {
    assert.deepEqual(await watcher.subscribeServer(), { subscribers: 1 });
    const created = new Promise((resolve) => watcher.once('room.created', resolve));
    await client.createRoom(MEDIA_CODECS, { roomId: 'watched', appData: 'w' });
    assert.deepEqual([(await created).roomId, (await created).appData], ['watched', 'w']);
    await client.closeRoom('watched');
    assert.equal((await watcher.nextEvent((e) => e.event === 'room.closed')).roomId, 'watched');
    assert.deepEqual(await watcher.unsubscribeServer(), { subscribers: 0 });
    await rejectsWith(watcher.unsubscribeServer(), ErrorCode.NOT_FOUND);
    const level = await client.setLogLevel('info', 'tureen.room');
    assert.deepEqual([level.level, level.logger], ['info', 'tureen.room']);
    await assert.rejects(client.setLogLevel('loud'), TypeError);
  } finally {
    await watcher.close();
  }
});
