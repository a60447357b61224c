#!/usr/bin/env node
// The benchmark's mediasoup v2 side: a real mediasoup 2.6.19 Server (ONE worker) driven
// through its own server API exactly as an application relays a browser's protocol messages
// (room.receiveRequest / peer.receiveRequest), with plain RTP transports whose remote ends are
// the harness's sockets. benchmarks/mediasoup_v2.py starts it, pins its mediasoup-worker and
// drives the load; this script only builds the scenario and keeps it up.
//
//   node benchmarks/mediasoup_v2.js <dir of a built mediasoup 2.6.19>
//
// Line protocol (JSON, one object a line). stdin -> this script:
//   {"cmd": "start", "rtcMinPort": 20000, "rtcMaxPort": 29999, "logLevel": "warn", "logTags": []}
//   {"cmd": "fanout", "mediaCodecs": [...], "producer": {kind, rtpParameters},
//    "sourcePort": p, "sinkPorts": [p1, ...]}
// stdout <- this script, one line per command:
//   {"ok": "start", "version": "2.6.19"}
//   {"ok": "fanout", "inputPort": p, "consumers": [{"ssrc": s, "pt": t}, ...]}
//   {"error": "what failed"}  (then it exits 1)
// stdin's end (the harness closes it) closes the server and ends the process.
'use strict';

const path = require('path');
const readline = require('readline');

const [ mediasoupDir ] = process.argv.slice(2);

if (!mediasoupDir)
{
	console.error('usage: mediasoup_v2.js <dir of a built mediasoup 2.6.19>');
	process.exit(2);
}

// The directory itself: a bare path could resolve to a sibling `package.json` first.
const root = path.resolve(mediasoupDir);
const mediasoup = require(path.join(root, 'lib', 'mediasoup.js'));
const version = require(path.join(root, 'package.json')).version;

const CHUNK = 50; // requests in flight at once while building (as benchmarks/scenarios.py)
let server = null;
let room = null;
let nextId = 1000; // client-chosen transport / producer ids, as mediasoup-client picks them

function reply(data)
{
	process.stdout.write(`${JSON.stringify(data)}\n`);
}

// What mediasoup-client sends in `join`: the room's codecs and header extensions.
function peerCapabilities(caps)
{
	return {
		codecs           : caps.codecs,
		headerExtensions : caps.headerExtensions.map((e) => (
			{ kind: e.kind, uri: e.uri, preferredId: e.preferredId })),
		fecMechanisms : []
	};
}

// fn(item, index) over items, CHUNK at a time; index counts from the first item.
async function chunked(items, fn)
{
	const out = [];

	for (let i = 0; i < items.length; i += CHUNK)
	{
		out.push(...await Promise.all(items.slice(i, i + CHUNK).map((item, j) => fn(item, i + j))));
	}

	return out;
}

const request = (target, method, data) => target.receiveRequest(Object.assign(
	{ method, target: (method === 'join' || method === 'queryRoom') ? 'room' : 'peer' }, data));

async function plainTransport(peer, direction, port)
{
	const id = nextId++;
	const answer = await request(peer, 'createTransport', {
		id, direction, options : {}, plainRtpParameters : { ip: '127.0.0.1', port }
	});

	return { id, port: answer.plainRtpParameters.port };
}

async function start(cmd)
{
	server = mediasoup.Server({
		numWorkers : 1,
		logLevel   : cmd.logLevel || 'warn',
		logTags    : cmd.logTags || [],
		rtcIPv4    : '127.0.0.1',
		rtcIPv6    : false,
		rtcMinPort : cmd.rtcMinPort,
		rtcMaxPort : cmd.rtcMaxPort
	});

	return { ok: 'start', version };
}

// One producer peer sending over a plain transport from the harness's source socket, one spy
// peer per sink consuming it over its own plain transport (spies, as the Tureen rows: they
// are not announced to each other), every consumer enabled.
async function fanout(cmd)
{
	room = server.Room(cmd.mediaCodecs);
	await room.dump(); // the worker answered: the router exists
	const caps = peerCapabilities(room.rtpCapabilities);

	await request(room, 'join', { peerName: 'src', rtpCapabilities: caps, spy: false });
	const src = room.getPeerByName('src');
	const send = await plainTransport(src, 'send', cmd.sourcePort);

	await request(src, 'createProducer', {
		id            : nextId++,
		kind          : cmd.producer.kind,
		transportId   : send.id,
		rtpParameters : cmd.producer.rtpParameters,
		paused        : false
	});
	const names = cmd.sinkPorts.map((_, i) => `c${i}`);
	const joined = await chunked(names, (peerName) =>
		request(room, 'join', { peerName, rtpCapabilities: caps, spy: true }));
	const recvs = await chunked(names, (peerName, i) =>
		plainTransport(room.getPeerByName(peerName), 'recv', cmd.sinkPorts[i]));
	const consumers = joined.map((answer) => answer.peers[0].consumers[0]);

	await chunked(names, (peerName, i) => request(room.getPeerByName(peerName), 'enableConsumer', {
		id               : consumers[i].id,
		transportId      : recvs[i].id,
		paused           : false,
		preferredProfile : 'default'
	}));

	return {
		ok        : 'fanout',
		inputPort : send.port,
		consumers : consumers.map((c) => ({
			ssrc : c.rtpParameters.encodings[0].ssrc,
			pt   : c.rtpParameters.codecs[0].payloadType
		}))
	};
}

const COMMANDS = { start, fanout };

function stop(code)
{
	if (server)
		server.close();
	server = null;
	// Let the worker see its channel close before this process goes.
	setTimeout(() => process.exit(code), 200);
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();

lines.on('line', (line) =>
{
	queue = queue.then(async () =>
	{
		try
		{
			const cmd = JSON.parse(line);
			const handler = COMMANDS[cmd.cmd];

			if (!handler)
				throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}: use ${Object.keys(COMMANDS)}`);
			if (cmd.cmd !== 'start' && !server)
				throw new Error('send {"cmd": "start"} first');
			reply(await handler(cmd));
		}
		catch (error)
		{
			reply({ error: String((error && error.message) || error) });
			stop(1);
		}
	});
});
lines.on('close', () => queue.then(() => stop(0)));
process.on('SIGTERM', () => stop(0));
