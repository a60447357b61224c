'use strict';
// A v2 room whose Tureen crashed and came back without it: the app sees the room and its peers
// close (as v2's rooms closed with a dead worker: room.close(), the peers 'local'), and makes new rooms on the new server.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const mediasoup = require('..');
const { MEDIA_CODECS, Server, peerCapabilities } = require('./support');

function once(emitter, name, timeout = 30000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${name}' within ${timeout} ms`)), timeout);
    emitter.once(name, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

test('a room the restarted server lost closes, with its peers; new rooms work', async () => {
  const first = await new Server().start();
  let second = null;
  const server = mediasoup.Server({ control: first.endpoint, timeout: 5000 });
  try {
    const room = server.Room(MEDIA_CODECS);
    await room.receiveRequest({ method: 'join', target: 'room', peerName: 'alice', rtpCapabilities: peerCapabilities(room.rtpCapabilities), spy: false });
    const alice = room.getPeerByName('alice');
    const roomClosed = once(room, 'close');
    const aliceClosed = once(alice, 'close');
    await first.crash();
    second = await new Server({ port: first.port }).start();
    await roomClosed;
    assert.deepEqual(await aliceClosed, ['local', undefined]); // as v2's room.close() of a dead worker's room
    assert.equal(room.closed, true);
    assert.deepEqual(room.peers, []);
    const fresh = server.Room(MEDIA_CODECS);
    await fresh.ready();
    assert.equal((await fresh.receiveRequest({ method: 'queryRoom', target: 'room' })).rtpCapabilities.codecs.length, 5);
  } finally {
    server.close();
    await new Promise((r) => setTimeout(r, 200));
    await first.crash();
    if (second) await second.stop();
  }
});
