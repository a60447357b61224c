// Compiled (never run) by `npm test`: mediasoup v2 app code, as written for v2, type-checks
// against index.d.ts (an app imports this package as 'mediasoup').
import * as mediasoup from '../..';
import type { Peer, Consumer, Producer } from '../..';

const server = mediasoup.Server({ numWorkers: 1, logLevel: 'warn', control: 'tcp://127.0.0.1:4477' });
const server2 = new mediasoup.Server();
void server2;
const room = server.Room([{ kind: 'audio', name: 'opus', clockRate: 48000, channels: 2 }]);
const id: number = room.id;
const caps = room.rtpCapabilities.codecs;
void [id, caps];

const detector = room.createActiveSpeakerDetector();
detector.on('activespeakerchange', (peer?: Peer, producer?: Producer) => {
  for (const p of room.peers) {
    for (const consumer of p.consumers) {
      if (consumer.kind !== 'video') continue;
      consumer.setPreferredProfile(consumer.source === producer ? 'high' : 'low');
    }
  }
  void peer;
});
room.on('audiolevels', (levels) => void levels.map((l) => [l.producer.id, l.audioLevel]));
room.on('newpeer', (peer) => void peer.name);

async function relay(request: { method: string; target: 'room' | 'peer'; peerName: string }): Promise<void> {
  await room.receiveRequest(request);
  const peer = room.getPeerByName(request.peerName);
  if (!peer) return;
  peer.appData = { any: 'thing' };
  peer.on('notify', (notification) => void notification.method);
  peer.on('newproducer', (producer) => {
    producer.on('close', (originator) => void (originator === 'local'));
    if (producer.pause()) producer.resume({ why: 1 });
  });
  peer.on('newconsumer', (consumer: Consumer) => {
    consumer.on('effectiveprofilechange', (profile) => void profile);
    consumer.on('pause', (originator) => void (originator === 'source'));
    consumer.requestKeyFrame();
    void consumer.getStats();
  });
  peer.on('newtransport', (transport) => {
    if ('setMaxBitrate' in transport) void transport.setMaxBitrate(500000);
  });
  await peer.receiveNotification({ method: 'leave', target: 'peer', notification: true });
  // @ts-expect-error: not a profile
  peer.consumers[0].setPreferredProfile('best');
  const streamer = await room.createRtpStreamer(peer.producers[0], { remoteIP: '127.0.0.1', remotePort: 5004 });
  void streamer.sdp;
  void server.updateSettings({ logLevel: 'debug' });
}
void relay;
try {
  room.close();
} catch (err) {
  if (err instanceof mediasoup.errors.InvalidStateError) void err.name;
}
server.close();
