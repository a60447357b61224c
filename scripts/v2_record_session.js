#!/usr/bin/env node
// Records what the real mediasoup 2.6.19 server API sends in one full v2 session, without a
// browser: every response, every error and every notification each peer gets, in order.
// The output is test data (tests/protocol/v2_recorded/session.json) that
// tests/protocol/test_v2_shapes.py replays against Tureen and compares shape by shape.
//
// Run it OUTSIDE the repository, where mediasoup 2.6.19 is built (see
// tests/protocol/v2_recorded/README.md):
//
//   node scripts/v2_record_session.js <dir of mediasoup 2.6.19> <input.json> <session.json>
//
// The scenario below is the only input besides input.json (codecs, capabilities, producer
// rtpParameters: the fixtures of tests/fuzz/shapes.py). Values the server chooses (consumer
// ids) are written as {"$consumer": [peerName, producerId]} in a step's `template`, so that a
// replay can put in its own server's ids.
'use strict';

const fs = require('fs');
const path = require('path');

const [mediasoupDir, inputPath, outputPath] = process.argv.slice(2);

if (!mediasoupDir || !inputPath || !outputPath)
{
	console.error('usage: v2_record_session.js <mediasoup dir> <input.json> <session.json>');
	process.exit(2);
}

// The directory itself: a bare path could resolve to a sibling `package.json` first.
const mediasoup = require(path.join(path.resolve(mediasoupDir), 'lib', 'mediasoup.js'));
const input = JSON.parse(fs.readFileSync(inputPath, 'utf8'));

// Client-chosen ids (mediasoup-client picks random 8-digit integers).
const ALICE_SEND = 11111111;
const ALICE_PLAIN = 11111112;
const BOB_RECV = 22222221;
const BOB_SEND = 22222222;
const AUDIO = 33333331;
const VIDEO = 33333332;
const BOB_AUDIO = 33333333;

const SEND_DTLS = Object.assign({}, input.clientDtlsParameters, { role: 'server' });
const RECV_DTLS = Object.assign({}, input.clientDtlsParameters, { role: 'client' });

const consumer = (peer, producer) => ({ $consumer: [ peer, producer ] });

const request = (peer, method, data = {}) => ({
	peer,
	message : Object.assign(
		{ method, target: (method === 'queryRoom' || method === 'join') ? 'room' : 'peer' }, data)
});
const notify = (peer, method, data = {}) => ({
	peer,
	message : Object.assign({ method, target: 'peer', notification: true }, data)
});
// A server-side action of the application (mediasoup's server API, Tureen's control API).
const action = (name, params = {}) => ({ action: name, params });

// The session: two peers, a late joiner, every request and notification of the protocol that
// 2.6.19 handles, the server-side actions, and the ways peers go (leave, close with and
// without appData, room close).
const SCENARIO = [
	request('alice', 'queryRoom'),
	request('alice', 'join', {
		peerName : 'alice', rtpCapabilities : input.joinCapabilities, spy : false,
		appData  : { role: 'host' }
	}),
	// No appData at all: what is absent in newPeer / peers?
	request('bob', 'join', { peerName: 'bob', rtpCapabilities: input.joinCapabilities, spy: false }),
	request('alice', 'createTransport', {
		id : ALICE_SEND, direction : 'send', options : { tcp: false },
		dtlsParameters : SEND_DTLS, appData : { purpose: 'send' }
	}),
	request('alice', 'createProducer', {
		id : AUDIO, kind : 'audio', transportId : ALICE_SEND,
		rtpParameters : input.audioProducer, paused : false, appData : { source: 'mic' }
	}),
	// No appData: newConsumer's appData is then absent.
	request('alice', 'createProducer', {
		id : VIDEO, kind : 'video', transportId : ALICE_SEND,
		rtpParameters : input.videoProducer, paused : false
	}),
	request('bob', 'createTransport', {
		id : BOB_RECV, direction : 'recv', options : { tcp: false }, appData : {}
	}),
	notify('bob', 'updateTransport', { id: BOB_RECV, dtlsParameters: RECV_DTLS }),
	request('bob', 'enableConsumer', {
		id : consumer('bob', AUDIO), transportId : BOB_RECV, paused : false
	}),
	request('bob', 'enableConsumer', {
		id : consumer('bob', VIDEO), transportId : BOB_RECV, paused : true,
		preferredProfile : 'high'
	}),
	request('bob', 'restartTransport', { id: BOB_RECV }),
	notify('alice', 'pauseProducer', { id: AUDIO, appData: { why: 'mute' } }),
	notify('alice', 'resumeProducer', { id: AUDIO, appData: { why: 'unmute' } }),
	notify('alice', 'pauseProducer', { id: AUDIO }),
	notify('alice', 'resumeProducer', { id: AUDIO }),
	notify('bob', 'pauseConsumer', { id: consumer('bob', AUDIO), appData: { why: 'hide' } }),
	notify('bob', 'resumeConsumer', { id: consumer('bob', AUDIO) }),
	notify('bob', 'resumeConsumer', { id: consumer('bob', VIDEO) }),
	notify('bob', 'setConsumerPreferredProfile', { id: consumer('bob', VIDEO), profile: 'low' }),
	// A late joiner: the join response lists the others with its consumers of their producers.
	request('carol', 'join', {
		peerName : 'carol', rtpCapabilities : input.joinCapabilities, spy : false,
		appData  : { role: 'guest' }
	}),
	// Bob produces too (audio only), to be closed with its transport later.
	request('bob', 'createTransport', {
		id : BOB_SEND, direction : 'send', options : { tcp: false },
		dtlsParameters : SEND_DTLS
	}),
	request('bob', 'createProducer', {
		id : BOB_AUDIO, kind : 'audio', transportId : BOB_SEND,
		rtpParameters : Object.assign({}, input.audioProducer, { encodings: [ { ssrc: 4444 } ] }),
		paused : true, appData : { source: 'mic' }
	}),
	// Plain RTP transport.
	request('alice', 'createTransport', {
		id : ALICE_PLAIN, direction : 'send', options : {},
		plainRtpParameters : { ip: '127.0.0.1', port: 40000 }, appData : { purpose: 'ffmpeg' }
	}),
	// Server-side actions of the application.
	action('producer.pause', { peerName: 'alice', producerId: AUDIO, appData: { by: 'app' } }),
	action('producer.resume', { peerName: 'alice', producerId: AUDIO }),
	action('consumer.pause', {
		peerName : 'bob', consumerId : consumer('bob', VIDEO), appData : { by: 'app' }
	}),
	action('consumer.resume', { peerName: 'bob', consumerId: consumer('bob', VIDEO) }),
	action('consumer.setPreferredProfile', {
		peerName : 'bob', consumerId : consumer('bob', VIDEO), profile : 'medium'
	}),
	action('transport.close', { peerName: 'alice', transportId: ALICE_PLAIN }),
	// Stats: enable, keep the first report, disable.
	notify('alice', 'enableTransportStats', { id: ALICE_SEND, interval: 1000 }),
	notify('alice', 'disableTransportStats', { id: ALICE_SEND }),
	notify('alice', 'enableProducerStats', { id: AUDIO, interval: 1000 }),
	notify('alice', 'disableProducerStats', { id: AUDIO }),
	notify('bob', 'enableConsumerStats', { id: consumer('bob', AUDIO), interval: 1000 }),
	notify('bob', 'disableConsumerStats', { id: consumer('bob', AUDIO) }),
	// Closing: a producer by its client, one by the app, a transport by its client.
	notify('alice', 'closeProducer', { id: AUDIO, appData: { why: 'done' } }),
	action('producer.close', { peerName: 'alice', producerId: VIDEO, appData: { by: 'app' } }),
	notify('bob', 'closeTransport', { id: BOB_SEND, appData: { why: 'done' } }),
	// Failures (the message of the rejection).
	request('alice', 'join', { peerName: 'alice', rtpCapabilities: input.joinCapabilities }),
	request('bob', 'enableConsumer', { id: 12345678, transportId: BOB_RECV, paused: false }),
	request('bob', 'restartTransport', { id: 12345678 }),
	request('bob', 'createProducer', {
		id : 33333339, kind : 'audio', transportId : 12345678,
		rtpParameters : input.audioProducer, paused : false
	}),
	// Peers go: leave with appData, a close by the app with and without appData, the room.
	notify('carol', 'leave', { appData: { why: 'bye' } }),
	action('peer.close', { peerName: 'bob', appData: { by: 'app' } }),
	request('dave', 'join', { peerName: 'dave', rtpCapabilities: input.joinCapabilities }),
	action('peer.close', { peerName: 'dave' }),
	request('erin', 'join', { peerName: 'erin', rtpCapabilities: input.joinCapabilities }),
	notify('erin', 'leave'),
	action('room.close', {})
];

function resolve(value, room)
{
	if (Array.isArray(value))
		return value.map((item) => resolve(item, room));
	if (value && typeof value === 'object')
	{
		if (value.$consumer)
		{
			const [ peerName, producerId ] = value.$consumer;
			const found = room.getPeerByName(peerName).consumers
				.find((c) => c.source.id === producerId);

			if (!found)
				throw new Error(`no consumer of ${producerId} for ${peerName}`);

			return found.id;
		}
		const out = {};

		for (const key of Object.keys(value))
		{
			out[key] = resolve(value[key], room);
		}

		return out;
	}

	return value;
}

// Keys whose value is `undefined` (JSON drops them on the wire: absent, not null).
function undefinedKeys(value, prefix = '')
{
	const keys = [];

	if (value && typeof value === 'object' && !Array.isArray(value))
	{
		for (const key of Object.keys(value))
		{
			if (value[key] === undefined)
				keys.push(prefix + key);
			else
				keys.push(...undefinedKeys(value[key], `${prefix}${key}.`));
		}
	}

	return keys;
}

function wire(value)
{
	return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

const settle = () => new Promise((done) => setTimeout(done, 150));

async function runAction(room, name, params)
{
	const peer = params.peerName ? room.getPeerByName(params.peerName) : null;

	switch (name)
	{
		case 'producer.pause':
			return peer.producers.find((p) => p.id === params.producerId).pause(params.appData);
		case 'producer.resume':
			return peer.producers.find((p) => p.id === params.producerId).resume(params.appData);
		case 'producer.close':
			return peer.producers.find((p) => p.id === params.producerId).close(params.appData);
		case 'consumer.pause':
			return peer.consumers.find((c) => c.id === params.consumerId).pause(params.appData);
		case 'consumer.resume':
			return peer.consumers.find((c) => c.id === params.consumerId).resume(params.appData);
		case 'consumer.setPreferredProfile':
			return peer.consumers.find((c) => c.id === params.consumerId)
				.setPreferredProfile(params.profile);
		case 'transport.close':
			return peer.transports.find((t) => t.id === params.transportId).close(params.appData);
		case 'peer.close':
			return peer.close(params.appData);
		case 'room.close':
			return room.close();
		default:
			throw new Error(`unknown action ${name}`);
	}
}

async function main()
{
	const server = mediasoup.Server({
		numWorkers : 1, logLevel : 'error', rtcIPv4 : '127.0.0.1', rtcIPv6 : false,
		rtcMinPort : 40100, rtcMaxPort : 40199
	});
	const room = server.Room(input.mediaCodecs);
	const steps = [];
	let current = null;

	const watch = (peer) =>
	{
		peer.on('notify', (notification) =>
		{
			current.notifications.push({
				peer            : peer.name,
				notification    : wire(notification),
				undefinedFields : undefinedKeys(notification)
			});
		});
	};

	room.on('newpeer', watch);

	for (const step of SCENARIO)
	{
		current = Object.assign({ index: steps.length }, step, { notifications: [] });
		steps.push(current);

		if (step.action)
		{
			current.template = step.params;
			current.params = resolve(step.params, room);
			try
			{
				const result = await runAction(room, step.action, current.params);

				current.result = typeof result === 'boolean' ? result : wire(result);
			}
			catch (error)
			{
				current.error = String(error.message || error);
			}
			await settle();
			continue;
		}

		current.template = step.message;
		current.message = resolve(step.message, room);
		const isRequest = !current.message.notification;
		const target = current.message.target === 'room'
			? room : room.getPeerByName(step.peer);

		try
		{
			if (!target)
				throw new Error(`peer ${step.peer} not found`);
			if (isRequest)
			{
				const response = await target.receiveRequest(current.message);

				// createProducer resolves with nothing: the app's signaling then sends `{}`
				// (protoo's accept(undefined) puts `data: {}` on the wire).
				current.responseUndefined = response === undefined;
				current.response = wire(response);
				current.undefinedFields = undefinedKeys(response);
			}
			else
			{
				await target.receiveNotification(current.message);
			}
		}
		catch (error)
		{
			current.error = String(error.message || error);
		}
		await settle();
		if (current.message.method.startsWith('enable') && current.message.method.endsWith('Stats'))
		{
			// The first report comes at once; keep just that one.
			await new Promise((done) => setTimeout(done, 300));
		}
	}

	server.close();
	const recording = {
		recordedWith : `mediasoup ${require(path.join(path.resolve(mediasoupDir), 'package.json')).version}`,
		node         : process.version,
		input        : path.basename(inputPath),
		steps
	};

	fs.writeFileSync(outputPath, `${JSON.stringify(recording, null, 1)}\n`);
	console.log(`${steps.length} steps, ${steps.reduce((n, s) => n + s.notifications.length, 0)} notifications -> ${outputPath}`);
	setTimeout(() => process.exit(0), 200);
}

main().catch((error) =>
{
	console.error(error);
	process.exit(1);
});
