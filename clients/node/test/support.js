'use strict';
// A real `tureen serve` for the tests: started with the repository's Python (TUREEN_PYTHON, or
// ../../.venv/bin/python), awaited by polling server.info until `ready`, stopped by its pid.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { TureenClient } = require('..');

const PYTHON = process.env.TUREEN_PYTHON || path.resolve(__dirname, '..', '..', '..', '.venv', 'bin', 'python');

const MEDIA_CODECS = [
  { kind: 'audio', name: 'opus', clockRate: 48000, channels: 2 },
  { kind: 'video', name: 'VP8', clockRate: 90000 },
  { kind: 'video', name: 'H264', clockRate: 90000, parameters: { 'packetization-mode': 1 } },
];

/** A TCP port free now on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tureen-node-'));
}

/** Run the Tureen CLI to completion (e.g. `keys generate`); throws with its output on failure. */
function tureenCli(args) {
  const result = spawnSync(PYTHON, ['-m', 'tureen.supervisor.cli', ...args], { encoding: 'utf8', timeout: 30000 });
  if (result.status !== 0) throw new Error(`tureen ${args.join(' ')} failed: ${result.stderr || result.error}`);
  return result.stdout;
}

class Server {
  /** `config`: TOML text for --config; `extra`: more CLI arguments; `port`: reuse a port. */
  constructor({ config, extra = [], port } = {}) {
    this.config = config;
    this.extra = extra;
    this.port = port;
    this.dir = tempDir();
    this.process = null;
  }

  async start({ curve } = {}) {
    if (this.port === undefined) this.port = await freePort();
    this.endpoint = `tcp://127.0.0.1:${this.port}`;
    const args = ['-m', 'tureen.supervisor.cli', 'serve', '--workers', '1', '--control', this.endpoint,
      '--run-dir', path.join(this.dir, 'run'), '--log-level', 'info', '--no-pin', ...this.extra];
    if (this.config !== undefined) {
      const file = path.join(this.dir, 'tureen.toml');
      fs.writeFileSync(file, this.config);
      args.push('--config', file);
    }
    this.logPath = path.join(this.dir, 'tureen.log');
    const log = fs.openSync(this.logPath, 'a');
    this.process = spawn(PYTHON, args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.exited = new Promise((resolve) => this.process.once('exit', (code, signal) => resolve({ code, signal })));
    const client = new TureenClient(this.endpoint, { timeout: 1000, curve });
    await client.connect();
    try {
      const info = await Promise.race([
        client.waitReady({ timeout: 30000 }),
        this.exited.then(({ code }) => {
          throw new Error(`tureen serve exited with ${code}:\n${this.log()}`);
        }),
      ]);
      this.workerPids = info.workers.map((w) => w.pid);
    } catch (err) {
      const log = this.log();
      await this.stop();
      throw new Error(`${err.message}\n${log}`);
    } finally {
      await client.close();
    }
    return this;
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, 'utf8').slice(-5000);
    } catch {
      return '';
    }
  }

  /** SIGTERM, then SIGKILL after 10 s; resolves when the process is gone. */
  async stop() {
    const proc = this.process;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timer);
    this.removeFiles();
  }

  /** Remove the run folder, config and log (a failed start has put the log in its error). */
  removeFiles() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** A crash: SIGKILL the supervisor and its workers (by the pids server.info gave). */
  async crash() {
    const proc = this.process;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGKILL');
    await this.exited;
    for (const pid of this.workerPids || []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    this.removeFiles();
  }
}

/** What mediasoup-client sends in join: the room codecs it supports, room PTs and ids. */
function peerCapabilities(roomCaps) {
  return {
    codecs: roomCaps.codecs.map((codec) => ({ ...codec })),
    headerExtensions: roomCaps.headerExtensions.map(({ kind, uri, preferredId }) => ({ kind, uri, preferredId })),
    fecMechanisms: [],
  };
}

function opusParameters(ssrc) {
  return {
    muxId: '0',
    codecs: [{ name: 'opus', mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2, parameters: { useinbandfec: 1 } }],
    headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: 1 }],
    encodings: [{ ssrc }],
    rtcp: { cname: 'tureen-node-test', reducedSize: true, mux: true },
  };
}

let lastId = 1000;
/** A fresh numeric id for a transport/producer (mediasoup-client picks them: random integers). */
function newId() {
  lastId += 1;
  return lastId;
}

module.exports = { PYTHON, MEDIA_CODECS, Server, freePort, tempDir, tureenCli, peerCapabilities, opusParameters, newId };
