'use strict';
// CURVE: keys from `tureen keys generate`, a server started with --curve-server-cert and
// --curve-clients; the allowed key works (as a certificate file and as Z85 strings), another
// key gets no answer and a timeout that says why. Plus the certificate parser.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { TureenClient, TureenTimeoutError, loadCertificate, parseCertificate, loadPublicKey } = require('..');
const { Server, tempDir, tureenCli } = require('./support');

let server;
let keys;

before(async () => {
  keys = tempDir();
  const clients = path.join(keys, 'clients');
  tureenCli(['keys', 'generate', '--out', keys, '--name', 'server']);
  tureenCli(['keys', 'generate', '--out', keys, '--name', 'app']);
  tureenCli(['keys', 'generate', '--out', keys, '--name', 'stranger']);
  fs.mkdirSync(clients);
  fs.copyFileSync(path.join(keys, 'app.key'), path.join(clients, 'app.key'));
  server = new Server({
    extra: ['--curve-server-cert', path.join(keys, 'server.key_secret'), '--curve-clients', clients],
  });
  await server.start({ curve: { cert: path.join(keys, 'app.key_secret'), serverKey: path.join(keys, 'server.key') } });
});

after(async () => {
  if (server) await server.stop();
  if (keys) fs.rmSync(keys, { recursive: true, force: true });
});

test('certificates written by `tureen keys generate` are read', () => {
  const secret = loadCertificate(path.join(keys, 'app.key_secret'));
  const pub = loadCertificate(path.join(keys, 'app.key'));
  assert.equal(secret.publicKey.length, 40);
  assert.equal(secret.secretKey.length, 40);
  assert.equal(pub.publicKey, secret.publicKey);
  assert.equal(pub.secretKey, null);
  assert.equal(loadPublicKey(path.join(keys, 'server.key')), loadPublicKey(loadCertificate(path.join(keys, 'server.key')).publicKey));
  // '#' is a Z85 character: a key holding one is not cut as a comment.
  const hashed = parseCertificate('#   comment\nmetadata\ncurve\n    public-key = "#0123456789012345678901234567890123456#8"\n');
  assert.equal(hashed.publicKey, '#0123456789012345678901234567890123456#8');
  assert.throws(() => parseCertificate('metadata\ncurve\n    public-key = "short"\n'), /not a CURVE key/);
  assert.throws(() => parseCertificate('hello\n'), /not a ZeroMQ certificate/);
  assert.throws(
    () => new TureenClient(server.endpoint, { curve: { cert: path.join(keys, 'app.key'), serverKey: path.join(keys, 'server.key') } }),
    /only a public key/,
  );
  assert.throws(() => new TureenClient(server.endpoint, { curve: { cert: path.join(keys, 'app.key_secret') } }), /serverKey/);
});

test('the allowed key gets answers, as a certificate file and as Z85 strings', async () => {
  const viaFile = new TureenClient(server.endpoint, {
    timeout: 5000, curve: { cert: path.join(keys, 'app.key_secret'), serverKey: path.join(keys, 'server.key') },
  });
  const { publicKey, secretKey } = loadCertificate(path.join(keys, 'app.key_secret'));
  const serverKey = loadCertificate(path.join(keys, 'server.key')).publicKey;
  const viaStrings = new TureenClient(server.endpoint, { timeout: 5000, curve: { publicKey, secretKey, serverKey } });
  try {
    await viaFile.connect();
    await viaStrings.connect();
    assert.deepEqual(await viaFile.ping(), { pong: true });
    assert.equal((await viaStrings.serverInfo()).ready, true);
  } finally {
    await viaFile.close();
    await viaStrings.close();
  }
});

test('a key the server does not know gets no answer: a timeout that says why', async () => {
  const stranger = new TureenClient(server.endpoint, {
    timeout: 1000, curve: { cert: path.join(keys, 'stranger.key_secret'), serverKey: path.join(keys, 'server.key') },
  });
  const plain = new TureenClient(server.endpoint, { timeout: 1000 });
  try {
    await stranger.connect();
    await plain.connect();
    await assert.rejects(stranger.ping(), (err) => err instanceof TureenTimeoutError && /curve_clients_dir/.test(err.message));
    await assert.rejects(plain.ping(), (err) => err instanceof TureenTimeoutError && /requires CURVE/.test(err.message));
  } finally {
    await stranger.close();
    await plain.close();
  }
});
