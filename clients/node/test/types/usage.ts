// Compiled (never run) by `npm test` with tsc --noEmit: the declarations of index.d.ts
// describe the API the README shows, and reject misuse.
import { TureenClient, TureenError, TureenTimeoutError, ErrorCode, loadCertificate, type TureenEvent } from '../..';

async function main(): Promise<void> {
  const client = new TureenClient('tcp://127.0.0.1:4477', {
    timeout: 5000,
    curve: { cert: 'app.key_secret', serverKey: 'server.key' },
  });
  await client.connect();
  const { publicKey, secretKey } = loadCertificate('app.key_secret');
  if (secretKey !== null) new TureenClient(undefined, { curve: { publicKey, secretKey, serverKey: publicKey } });

  const room = await client.createRoom([{ kind: 'audio', name: 'opus', clockRate: 48000, channels: 2 }], { roomId: 'r' });
  const codecs: Array<Record<string, unknown>> = room.rtpCapabilities.codecs;
  const caps = await client.peerRequest(room.roomId, null, { method: 'queryRoom', target: 'room' });
  await client.peerNotify('r', 'alice', { method: 'leave', target: 'peer', notification: true });
  const info = await client.serverInfo();
  const ready: boolean = info.ready;
  const rooms = await client.listRooms();
  const peers: number = rooms[0].peers;
  const sub = await client.subscribe('r');
  const subscribers: number = sub.subscribers;
  await client.unsubscribe('r');
  const watched: number = (await client.subscribeServer()).subscribers;
  client.on('room.created', (event) => void event.roomId.length);
  client.on('room.audioLevels', (event) => void event.levels.map((l) => l.audioLevel + l.producerId));
  const streamer = await client.createRtpStreamer('r', 2, { remoteIP: '127.0.0.1', remotePort: 5004 });
  const sdp: string = streamer.sdp;
  await client.setLogLevel('debug');
  // @ts-expect-error: not a level
  await client.setLogLevel('verbose');
  void [watched, sdp];
  await client.setConsumerPreferredProfile('r', 'bob', 1, 'low');
  // @ts-expect-error: not a profile
  await client.setConsumerPreferredProfile('r', 'bob', 1, 'best');
  await client.pauseProducer('r', 'alice', 2, { why: 'mod' });
  const hosts = await client.listHosts();
  const state: 'up' | 'draining' | 'lost' = hosts.hosts[0].state;
  const drained = await client.drainHost('h1');
  await client.drainHost('h1', false);
  const placed: number = (await client.placePeer('r', 'alice', { host: 'h1' })).worker;
  await client.placePeer('r', 'alice', { worker: 1 });
  // @ts-expect-error: a host's name, not a number
  await client.placePeer('r', 'alice', { host: 1 });
  void [state, drained.local, placed];
  const scaled = await client.scaleWorkers(2);
  const retired: number[] = scaled.retired;
  const data = await client.request<{ pong: true }>('server.ping', {}, { timeout: 100 });
  const pong: true = data.pong;

  client.on('notification', (roomId, peerName, notification) => {
    const method: string = notification.method;
    void [roomId.length, peerName.length, method];
  });
  client.on('peer.joined', (event) => {
    const spy: boolean = event.spy;
    void spy;
  });
  client.on('roomLost', (roomId) => void roomId.length);
  // @ts-expect-error: a notification listener gets strings first
  client.on('notification', (roomId: number) => void roomId);

  const event: TureenEvent = await client.nextEvent((e) => e.event === 'room.closed', { timeout: 10 });
  if (event.event === 'transport.closed') void event.reason.length;
  const note = await client.nextNotification('alice', 'newPeer', { match: { name: 'bob' } });
  void note.method;

  try {
    await client.dumpRoom('x');
  } catch (err) {
    if (err instanceof TureenTimeoutError) void err.timeout;
    else if (err instanceof TureenError && err.code === ErrorCode.NOT_FOUND) void err.method;
  }
  await client.close();
  void [codecs, caps, ready, peers, subscribers, retired, pong];
}

void main;
