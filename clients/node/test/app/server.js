'use strict';
// A mediasoup v2 application server, written as mediasoup-demo v2's server is (one
// mediasoup.Room per room, requests and notifications relayed from each peer's socket, 'notify'
// back to it, an ActiveSpeakerDetector choosing which video consumers get the high profile),
// run on Tureen by resolving `mediasoup` to clients/node (package.json: "mediasoup": "file:.").
// Nothing in it knows about Tureen but the endpoint in Server()'s options.
//
//   node test/app/server.js --port 8090 --control tcp://127.0.0.1:4477 [--static DIR]
//
// It speaks the WebSocket protocol of Tureen's demo page (demo/app.py), so the browser tests
// drive it with that page. For them it also answers GET /test/state (what the app sees through
// the v2 API) and POST /test/action (one v2 call on a peer's producer or consumer).

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { WebSocketServer } = require('ws');
const mediasoup = require('mediasoup');

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const index = argv.indexOf(name);
  return index >= 0 ? argv[index + 1] : fallback;
};
const PORT = Number(option('--port', '8090'));
const STATIC_DIR = path.resolve(option('--static', path.join(__dirname, '..', '..', '..', '..', 'demo', 'static')));

const MEDIA_CODECS = [
  { kind: 'audio', name: 'opus', clockRate: 48000, channels: 2 },
  { kind: 'video', name: 'VP8', clockRate: 90000 },
  { kind: 'video', name: 'H264', clockRate: 90000, parameters: { 'packetization-mode': 1 } },
];

const mediaServer = mediasoup.Server({ control: option('--control', undefined), logLevel: 'warn', rtcMinPort: 40000 });
const rooms = new Map(); // roomId -> Room
const log = (...args) => console.log(new Date().toISOString(), ...args);

class Room {
  constructor(roomId) {
    this.id = roomId;
    this.mediaRoom = mediaServer.Room(MEDIA_CODECS);
    this.sockets = new Map(); // peerName -> socket
    this.currentActiveSpeaker = null;
    this.events = []; // what the app saw, for /test/state
    this.handleMediaRoom();
  }

  record(type, data = {}) {
    this.events.push({ type, ...data });
    log(this.id, type, JSON.stringify(data));
  }

  handleMediaRoom() {
    this.mediaRoom.on('newpeer', (peer) => this.record('newpeer', { peer: peer.name }));
    const detector = this.mediaRoom.createActiveSpeakerDetector();
    detector.on('activespeakerchange', (activePeer, producer) => {
      this.currentActiveSpeaker = activePeer || null;
      this.record('activespeakerchange', { peer: activePeer ? activePeer.name : null, producer: producer ? producer.id : null });
      const activeVideo = activePeer ? activePeer.producers.find((p) => p.kind === 'video') : undefined;
      for (const peer of this.mediaRoom.peers) {
        for (const consumer of peer.consumers) {
          if (consumer.kind !== 'video') continue;
          consumer.setPreferredProfile(activeVideo && consumer.source === activeVideo ? 'high' : 'low');
        }
      }
    });
  }

  async handleRequest(socket, request) {
    if (request.method === 'queryRoom' || request.method === 'join') {
      if (request.method === 'join' && request.peerName !== socket.peerName) {
        throw new Error(`join as ${JSON.stringify(request.peerName)} on the socket of ${JSON.stringify(socket.peerName)}`);
      }
      const response = await this.mediaRoom.receiveRequest(request);
      if (request.method === 'join') {
        const mediaPeer = this.mediaRoom.getPeerByName(request.peerName);
        socket.mediaPeer = mediaPeer;
        this.handleMediaPeer(socket, mediaPeer);
      }
      return response;
    }
    if (!socket.mediaPeer) throw new Error('not joined');
    return socket.mediaPeer.receiveRequest(request);
  }

  handleMediaPeer(socket, mediaPeer) {
    mediaPeer.on('notify', (notification) => socket.send({ type: 'notification', notification }));
    mediaPeer.on('newtransport', (transport) => {
      this.record('newtransport', { peer: mediaPeer.name, direction: transport.direction });
      transport.on('close', (originator) => this.record('transportclose', { peer: mediaPeer.name, originator }));
    });
    mediaPeer.on('newproducer', (producer) => {
      this.record('newproducer', { peer: mediaPeer.name, kind: producer.kind, id: producer.id });
      producer.on('pause', (originator) => this.record('producerpause', { peer: mediaPeer.name, kind: producer.kind, originator }));
      producer.on('resume', (originator) => this.record('producerresume', { peer: mediaPeer.name, kind: producer.kind, originator }));
      producer.on('close', (originator) => this.record('producerclose', { peer: mediaPeer.name, kind: producer.kind, originator }));
    });
    mediaPeer.on('newconsumer', (consumer) => this.handleMediaConsumer(mediaPeer, consumer));
    mediaPeer.on('close', (originator) => this.record('peerclose', { peer: mediaPeer.name, originator }));
    // Also the consumers the join made.
    for (const consumer of mediaPeer.consumers) this.handleMediaConsumer(mediaPeer, consumer);
  }

  handleMediaConsumer(mediaPeer, consumer) {
    const about = () => ({ peer: mediaPeer.name, from: consumer.peer ? consumer.peer.name : null, kind: consumer.kind });
    this.record('newconsumer', { ...about(), sourceIsProducer: Boolean(consumer.source && consumer.peer && consumer.peer.getProducerById(consumer.source.id) === consumer.source) });
    consumer.on('pause', (originator) => this.record('consumerpause', { ...about(), originator }));
    consumer.on('resume', (originator) => this.record('consumerresume', { ...about(), originator }));
    consumer.on('effectiveprofilechange', (profile) => this.record('effectiveprofilechange', { ...about(), profile }));
    consumer.on('close', () => this.record('consumerclose', about()));
    // Video starts at 'low' unless it is the active speaker's (mediasoup-demo v2).
    if (consumer.kind === 'video' && consumer.peer !== this.currentActiveSpeaker) consumer.setPreferredProfile('low');
  }

  state() {
    return {
      roomId: this.id,
      closed: this.mediaRoom.closed,
      activeSpeaker: this.currentActiveSpeaker ? this.currentActiveSpeaker.name : null,
      peers: this.mediaRoom.peers.map((peer) => ({
        name: peer.name,
        transports: peer.transports.map((t) => ({ id: t.id, direction: t.direction, closed: t.closed })),
        producers: peer.producers.map((p) => ({ id: p.id, kind: p.kind, paused: p.paused, locallyPaused: p.locallyPaused, remotelyPaused: p.remotelyPaused })),
        consumers: peer.consumers.map((c) => ({
          id: c.id, kind: c.kind, from: c.peer ? c.peer.name : null, sourceId: c.source ? c.source.id : null,
          sourceIsProducer: Boolean(c.source && c.peer && c.peer.getProducerById(c.source.id) === c.source),
          enabled: c.enabled, paused: c.paused, sourcePaused: c.sourcePaused,
          preferredProfile: c.preferredProfile, effectiveProfile: c.effectiveProfile,
        })),
      })),
      events: this.events,
    };
  }

  /** A v2 call the test asks for: {peer, op, kind?, from?, profile?, appData?}. */
  action({ peer: peerName, op, kind, from, profile }) {
    const peer = this.mediaRoom.getPeerByName(peerName);
    if (!peer) throw new Error(`no peer ${peerName}`);
    const producer = () => peer.producers.find((p) => p.kind === kind);
    const consumer = () => peer.consumers.find((c) => c.kind === kind && c.peer && c.peer.name === from);
    switch (op) {
      case 'pauseProducer':
        return producer().pause();
      case 'resumeProducer':
        return producer().resume();
      case 'setPreferredProfile':
        return consumer().setPreferredProfile(profile);
      case 'requestKeyFrame':
        return consumer().requestKeyFrame();
      case 'closePeer':
        return peer.close();
      default:
        throw new Error(`unknown op ${op}`);
    }
  }
}

function onSocket(ws, request) {
  const url = new URL(request.url, 'http://localhost');
  const roomId = (url.searchParams.get('room') || '').trim();
  const peerName = (url.searchParams.get('peer') || '').trim();
  const send = (message) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
  };
  if (!roomId || !peerName || (rooms.has(roomId) && rooms.get(roomId).sockets.has(peerName))) {
    send({ type: 'error', message: 'room and peer name are required, and the name must be free' });
    ws.close();
    return;
  }
  if (!rooms.has(roomId)) rooms.set(roomId, new Room(roomId));
  const room = rooms.get(roomId);
  const socket = { peerName, send, mediaPeer: null };
  room.sockets.set(peerName, socket);
  ws.on('message', (raw) => {
    let message;
    try {
      message = JSON.parse(String(raw));
    } catch {
      return;
    }
    if (message.type === 'request') {
      room.handleRequest(socket, message.request).then(
        (data) => send({ type: 'response', id: message.id, ok: true, data }),
        (err) => send({ type: 'response', id: message.id, ok: false, error: err.message, code: err.code }),
      );
    } else if (message.type === 'notify' && socket.mediaPeer) {
      socket.mediaPeer.receiveNotification(message.notification);
    }
  });
  ws.on('close', () => {
    room.sockets.delete(peerName);
    if (socket.mediaPeer && !socket.mediaPeer.closed) socket.mediaPeer.close();
    if (room.sockets.size === 0) {
      room.mediaRoom.close();
      rooms.delete(roomId);
    }
  });
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

function readBody(req) {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => resolve(body));
  });
}

const httpServer = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const json = (status, value) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value === undefined ? null : value));
  };
  if (url.pathname === '/healthz') {
    mediaServer.dump().then((info) => json(200, { ok: info.ready }), (err) => json(503, { ok: false, error: err.message }));
    return;
  }
  if (url.pathname === '/test/state') {
    const room = rooms.get(url.searchParams.get('room'));
    json(200, room ? room.state() : null);
    return;
  }
  if (url.pathname === '/test/action' && req.method === 'POST') {
    try {
      const action = JSON.parse(await readBody(req));
      json(200, { result: rooms.get(action.room).action(action) });
    } catch (err) {
      json(400, { error: err.message });
    }
    return;
  }
  const file = url.pathname === '/' ? 'index.html' : url.pathname.replace(/^\/static\//, '');
  const full = path.join(STATIC_DIR, path.normalize(file));
  if (!full.startsWith(STATIC_DIR) || !fs.existsSync(full) || fs.statSync(full).isDirectory()) {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(full)] || 'application/octet-stream', 'cache-control': 'no-cache' });
  fs.createReadStream(full).pipe(res);
});

new WebSocketServer({ server: httpServer, path: '/ws', maxPayload: 1 << 20 }).on('connection', onSocket);
httpServer.listen(PORT, '127.0.0.1', () => log(`v2 app on http://127.0.0.1:${PORT}/ (Tureen at ${mediaServer.tureen.endpoint})`));

const stop = () => {
  log('stopping');
  for (const room of rooms.values()) room.mediaRoom.close();
  mediaServer.close();
  httpServer.close();
  setTimeout(() => process.exit(0), 500).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
