'use strict';
// Reconnection: the server restarts on the same endpoint; the DEALER reconnects by itself and
// the client reports 'disconnect' and 'connect'. A server that stops tells the app 'room.closed';
// after a crash (no such event) the room the new server does not have is reported with
// 'roomLost'. Requests are answered again, those sent while it was away too.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { TureenClient } = require('..');
const { MEDIA_CODECS, Server } = require('./support');

function once(emitter, name, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${name}' within ${timeout} ms`)), timeout);
    emitter.once(name, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

test('after a server restart the client reconnects and reports the rooms it lost', async () => {
  const first = await new Server().start();
  const client = new TureenClient(first.endpoint, { timeout: 5000 });
  let second = null;
  try {
    const connected = once(client, 'connect');
    await client.connect();
    await client.createRoom(MEDIA_CODECS, { roomId: 'lost-room' });
    assert.equal((await connected)[0].reconnect, false);
    assert.equal(client.connected, true);

    const disconnected = once(client, 'disconnect');
    await first.crash();
    await disconnected;
    assert.equal(client.connected, false);

    const reconnected = once(client, 'connect', 30000);
    const lost = once(client, 'roomLost', 30000);
    // A request sent while the server is away waits in ZeroMQ's queue and is answered later.
    const queued = client.request('server.ping', {}, { timeout: 30000 });
    second = await new Server({ port: first.port }).start();
    assert.deepEqual(await queued, { pong: true });
    assert.equal((await reconnected)[0].reconnect, true);
    assert.deepEqual(await lost, ['lost-room']);
    assert.deepEqual(await client.listRooms(), []);
    assert.deepEqual(await client.ping(), { pong: true });
    // A graceful stop closes the rooms: 'room.closed', nothing to re-subscribe.
    await client.createRoom(MEDIA_CODECS, { roomId: 'closed-room' });
    const roomClosed = client.nextEvent((e) => e.event === 'room.closed', { timeout: 15000 });
    await second.stop();
    assert.equal((await roomClosed).roomId, 'closed-room');
  } finally {
    await client.close();
    await first.crash();
    if (second) await second.stop();
  }
});
