'use strict';
// The sequencer's order under interleavings a live server rarely produces on demand: a reply
// handled after later frames were read, two requests in flight. The "client" here is a script
// of frames (its reads and replies), the only part of TureenClient the sequencer uses.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Sequencer } = require('../lib/v2/sequencer');

class ScriptedClient {
  constructor() {
    this.framesRead = 0;
    this.pending = [];
  }

  request() {
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }

  /** Read an event frame now (the sequencer is told synchronously, as Room does). */
  event(sequencer, event) {
    this.framesRead += 1;
    sequencer.event(event);
  }

  /** Read the reply frame of the oldest request; its promise settles later (a microtask). */
  reply(data) {
    this.framesRead += 1;
    this.pending.shift().resolve({ data, position: this.framesRead });
  }
}

const tick = () => new Promise((r) => setImmediate(r));

test('a request\'s effect runs before the events it caused, its promise after them', async () => {
  const client = new ScriptedClient();
  const log = [];
  const seq = new Sequencer(client, (e) => log.push(`event ${e}`));
  client.event(seq, 'before'); // read before the request was sent: not held
  const done = seq.request('m', {}, { pre: () => log.push('pre A'), post: () => log.push('post A') }).then(() => log.push('resolved A'));
  client.event(seq, 'caused by A');
  assert.deepEqual(log, ['event before'], 'held while A is unanswered');
  client.reply('a');
  client.event(seq, 'after A'); // read before A's reply promise settled
  await done;
  await tick();
  assert.deepEqual(log, ['event before', 'pre A', 'event caused by A', 'post A', 'resolved A', 'event after A']);
});

test('two requests in flight: each effect before its own events, in the room\'s order', async () => {
  const client = new ScriptedClient();
  const log = [];
  const seq = new Sequencer(client, (e) => log.push(`event ${e}`));
  const a = seq.request('m', {}, { pre: () => log.push('pre A'), post: () => log.push('post A') });
  const b = seq.request('m', {}, { pre: () => log.push('pre B'), post: () => log.push('post B') });
  client.event(seq, 'of A');
  client.reply('a');
  client.event(seq, 'of B');
  client.reply('b');
  await Promise.all([a, b]);
  await tick();
  assert.deepEqual(log, ['pre A', 'event of A', 'post A', 'pre B', 'event of B', 'post B']);
});

test('a failed request runs no effect and lets the held events through', async () => {
  const client = new ScriptedClient();
  const log = [];
  const seq = new Sequencer(client, (e) => log.push(`event ${e}`));
  const failed = seq.request('m', {}, { pre: () => log.push('pre') }).catch((err) => log.push(`rejected ${err.message}`));
  client.event(seq, 'meanwhile');
  client.framesRead += 1;
  const err = new Error('refused');
  err.position = client.framesRead;
  client.pending.shift().reject(err);
  await failed;
  await tick();
  assert.deepEqual(log, ['event meanwhile', 'rejected refused']);
});
