// The Tureen demo page: mediasoup-client 2.4.12 (Chrome70 handler in Chromium) talking to the
// demo's signaling app over one WebSocket, which relays to Tureen's control API.
//
// Bundled by esbuild into demo/static/bundle.js (`npm run build`, built with
// --define:global=globalThis: mediasoup-client reads `global.navigator`, see docs/browser.md).
//
// Page URL: /?room=ROOM&name=NAME[&autojoin=1][&audio=0][&video=0][&width=W&height=H&fps=F]
// Tests drive the page through `window.tureenDemo` (join, leave, setPaused, state, stats).

import * as mediasoupClient from 'mediasoup-client';
import Device from 'mediasoup-client/lib-es5/Device';

// ---------------------------------------------------------------------------------------------
// Every RTCPeerConnection the library creates is kept here, to read getStats() per track.
// (Only the standard API is used: RTCRtpReceiver/RTCRtpSender.getStats.)
const peerConnections = new Set();
{
	const NativePeerConnection = window.RTCPeerConnection;
	class TrackedPeerConnection extends NativePeerConnection
	{
		constructor(...args)
		{
			super(...args);
			peerConnections.add(this);
		}
	}
	window.RTCPeerConnection = TrackedPeerConnection;
}

function openPeerConnections()
{
	return [ ...peerConnections ].filter((pc) => pc.signalingState !== 'closed');
}

function findReceiver(track)
{
	for (const pc of openPeerConnections())
	{
		for (const receiver of pc.getReceivers())
			if (receiver.track === track)
				return receiver;
	}
	return null;
}

function findSender(track)
{
	for (const pc of openPeerConnections())
	{
		for (const sender of pc.getSenders())
			if (sender.track === track)
				return sender;
	}
	return null;
}

async function rtpStats(target, type)
{
	if (!target)
		return null;
	const report = await target.getStats();
	let rtp = null;
	let codec = null;
	report.forEach((entry) =>
	{
		if (entry.type === type && !rtp)
			rtp = entry;
	});
	if (rtp && rtp.codecId)
		codec = report.get(rtp.codecId);
	if (!rtp)
		return null;
	return {
		timestamp       : rtp.timestamp,
		packetsReceived : rtp.packetsReceived,
		packetsSent     : rtp.packetsSent,
		bytesReceived   : rtp.bytesReceived,
		bytesSent       : rtp.bytesSent,
		packetsLost     : rtp.packetsLost,
		framesDecoded   : rtp.framesDecoded,
		framesEncoded   : rtp.framesEncoded,
		frameWidth      : rtp.frameWidth,
		frameHeight     : rtp.frameHeight,
		framesPerSecond : rtp.framesPerSecond,
		// audio: samples played out and the energy in them (silence has none)
		totalSamplesReceived : rtp.totalSamplesReceived,
		totalAudioEnergy     : rtp.totalAudioEnergy,
		codec           : codec ? codec.mimeType : undefined
	};
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

const $ = (selector) => document.querySelector(selector);
const query = new URLSearchParams(location.search);

function setStatus(text, isError = false)
{
	const status = $('#status');
	status.textContent = text;
	status.classList.toggle('error', isError);
}

function errorMessage(error)
{
	return error && error.message ? error.message : String(error);
}

function formatBitrate(bitsPerSecond)
{
	if (bitsPerSecond >= 1e6)
		return `${(bitsPerSecond / 1e6).toFixed(2)} Mb/s`;
	return `${Math.round(bitsPerSecond / 1e3)} kb/s`;
}

function deviceInfo()
{
	let supported = false;
	let handler = null;
	let detectError = null;
	try
	{
		supported = mediasoupClient.isDeviceSupported();
		handler = Device.Handler ? Device.Handler.tag : null;
	}
	catch (error)
	{
		detectError = errorMessage(error);
	}
	const info = mediasoupClient.getDeviceInfo();
	return {
		supported,
		handler,
		detectError,
		flag      : info.flag,
		name      : info.name,
		version   : info.version,
		userAgent : navigator.userAgent
	};
}

// ---------------------------------------------------------------------------------------------
// Signaling: one WebSocket to the demo app.

class Signaling
{
	constructor(url)
	{
		this.url = url;
		this.ws = null;
		this.nextId = 1;
		this.pending = new Map();
		this.onNotification = () => {};
		this.onClose = () => {};
		// The last requests and their outcome, for the page's status and for tests.
		this.log = [];
	}

	open()
	{
		return new Promise((resolve, reject) =>
		{
			const ws = new WebSocket(this.url);
			let opened = false;
			let refused = null;
			this.ws = ws;
			ws.onopen = () =>
			{
				opened = true;
				resolve();
			};
			ws.onmessage = (event) =>
			{
				const message = JSON.parse(event.data);
				if (message.type === 'response')
				{
					const entry = this.pending.get(message.id);
					if (!entry)
						return;
					this.pending.delete(message.id);
					entry.log.ok = message.ok;
					entry.log.error = message.ok ? undefined : message.error;
					entry.log.code = message.code;
					if (message.ok)
						entry.resolve(message.data);
					else
						entry.reject(new Error(message.error));
				}
				else if (message.type === 'notification')
				{
					this.onNotification(message.notification);
				}
				else if (message.type === 'error')
				{
					refused = message.message;
				}
			};
			ws.onclose = () =>
			{
				for (const entry of this.pending.values())
					entry.reject(new Error('signaling socket closed'));
				this.pending.clear();
				if (!opened)
					reject(new Error(refused || 'cannot reach the demo app'));
				else if (refused)
					reject(new Error(refused));
				this.onClose(refused);
			};
		});
	}

	request(request)
	{
		if (!this.ws || this.ws.readyState !== WebSocket.OPEN)
			return Promise.reject(new Error('signaling socket is not open'));
		const id = this.nextId++;
		const log = { method: request.method, ok: undefined };
		this.log.push(log);
		if (this.log.length > 200)
			this.log.shift();
		return new Promise((resolve, reject) =>
		{
			this.pending.set(id, { resolve, reject, log });
			this.ws.send(JSON.stringify({ type: 'request', id, request }));
		});
	}

	notify(notification)
	{
		if (this.ws && this.ws.readyState === WebSocket.OPEN)
			this.ws.send(JSON.stringify({ type: 'notify', notification }));
	}

	close()
	{
		if (this.ws)
			this.ws.close();
	}
}

// ---------------------------------------------------------------------------------------------
// Tiles.

class Tile
{
	constructor(name, local)
	{
		const node = $('#tile-template').content.firstElementChild.cloneNode(true);
		node.dataset.peer = name;
		node.classList.toggle('local', local);
		node.classList.add('no-video');
		node.querySelector('.name').textContent = local ? `${name} (you)` : name;
		node.querySelector('.initial').textContent = name.slice(0, 1);
		this.node = node;
		this.video = node.querySelector('video');
		this.audio = null;
		this.videoTrack = null;
		this.audioTrack = null;
		this.last = {};
		if (local)
			$('#grid').prepend(node);
		else
			$('#grid').append(node);
	}

	setTrack(kind, track)
	{
		if (kind === 'video')
		{
			this.videoTrack = track;
			this.video.srcObject = track ? new MediaStream([ track ]) : null;
			this.node.classList.toggle('no-video', !track);
			if (track)
				this.video.play().catch(() => {});
		}
		else
		{
			this.audioTrack = track;
			if (track && !this.node.classList.contains('local'))
			{
				if (!this.audio)
				{
					this.audio = document.createElement('audio');
					this.audio.autoplay = true;
					this.node.append(this.audio);
				}
				this.audio.srcObject = new MediaStream([ track ]);
				this.audio.play().catch(() => {});
			}
			else if (!track && this.audio)
			{
				this.audio.srcObject = null;
			}
		}
	}

	setPaused(kind, paused)
	{
		this.node.querySelector(kind === 'video' ? '.cam-off' : '.mic-off').hidden = !paused;
		if (kind === 'video')
			this.node.classList.toggle('no-video', paused || !this.videoTrack);
	}

	setFigure(kind, text)
	{
		this.node.querySelector(kind === 'video' ? '.video-stats' : '.audio-stats').textContent = text;
	}

	remove()
	{
		this.video.srcObject = null;
		if (this.audio)
			this.audio.srcObject = null;
		this.node.remove();
	}
}

// ---------------------------------------------------------------------------------------------
// A session: one peer in one room.

class Session
{
	// transportOptions: what createTransport asks Tureen for, e.g. { udp: false } for ICE-TCP only.
	constructor(roomId, peerName, transportOptions = {})
	{
		this.roomId = roomId;
		this.peerName = peerName;
		this.events = [];
		this.tiles = new Map(); // peer name -> Tile
		this.consumers = new Map(); // consumer id -> Consumer
		this.producers = new Map(); // kind -> Producer
		this.joined = false;
		this.closed = false;
		this.sendTransport = null;
		this.recvTransport = null;
		this.stream = null;
		this.statsTimer = null;
		this.lastError = null;
		this.bufferedNotifications = [];

		const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
		const params = new URLSearchParams({ room: roomId, peer: peerName });
		this.signaling = new Signaling(`${proto}//${location.host}/ws?${params}`);

		this.room = new mediasoupClient.Room({ requestTimeout: 20000, transportOptions });
		this.room.on('request', (request, callback, errback) =>
		{
			this.signaling.request(request)
				.then(callback)
				.catch((error) => errback(errorMessage(error)));
		});
		this.room.on('notify', (notification) => this.signaling.notify(notification));
		this.room.on('newpeer', (peer) =>
		{
			this.record('newPeer', { peerName: peer.name });
			this.addPeer(peer);
		});
		this.room.on('close', (originator) =>
		{
			this.record('roomClosed', { originator });
			if (originator === 'remote')
				this.fail(new Error('Tureen closed this peer'));
		});
		this.signaling.onNotification = (notification) => this.receiveNotification(notification);
		this.signaling.onClose = (reason) =>
		{
			this.record('socketClosed', { reason });
			if (!this.closed)
				this.fail(new Error(reason || 'the signaling connection closed'));
		};
	}

	record(type, data = {})
	{
		this.events.push({ type, t: Math.round(performance.now()), ...data });
		if (this.events.length > 500)
			this.events.shift();
	}

	// Notifications are handed to the Room only once join() has resolved: one that names a
	// peer (newConsumer) must not overtake the join response that lists that peer.
	receiveNotification(notification)
	{
		this.record('notification', { method: notification.method, id: notification.id });
		if (!this.joined)
		{
			this.bufferedNotifications.push(notification);
			return;
		}
		this.room.receiveNotification(notification)
			.catch((error) => console.warn(`notification ${notification.method} failed: ${errorMessage(error)}`));
	}

	async join({ audio = true, video = true, width = 640, height = 480, frameRate = 20, simulcast = false } = {})
	{
		setStatus(`Connecting to room “${this.roomId}”…`);
		await this.signaling.open();
		this.record('socketOpen');
		await this.room.join(this.peerName, { displayName: this.peerName });
		this.joined = true;
		this.record('joined', { peers: this.room.peers.map((peer) => peer.name) });
		for (const notification of this.bufferedNotifications.splice(0))
			this.receiveNotification(notification);

		this.sendTransport = this.room.createTransport('send', { media: 'send' });
		this.recvTransport = this.room.createTransport('recv', { media: 'recv' });
		for (const transport of [ this.sendTransport, this.recvTransport ])
		{
			transport.on('connectionstatechange', (state) =>
				this.record('transportState', { direction: transport.direction, state }));
			// Closes with the room. (A transportClosed notification does not close it: 2.4.12
			// keeps the transport and re-creates it on the server with the next producer.)
			transport.on('close', (originator) =>
				this.record('transportClosed', { direction: transport.direction, originator }));
		}

		this.tiles.set(this.peerName, new Tile(this.peerName, true));
		for (const peer of this.room.peers)
			this.addPeer(peer);

		this.statsTimer = setInterval(() => this.updateFigures().catch(() => {}), 1000);
		setStatus(`In room “${this.roomId}” as ${this.peerName}.`);

		if (audio || video)
			await this.produce({ audio, video, width, height, frameRate, simulcast });
		return { peers: this.room.peers.map((peer) => peer.name) };
	}

	async produce({ audio, video, width, height, frameRate, simulcast })
	{
		this.stream = await navigator.mediaDevices.getUserMedia({
			audio,
			video : video ? { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: frameRate } } : false
		});
		const tile = this.tiles.get(this.peerName);
		for (const track of this.stream.getTracks())
		{
			if (track.kind === 'video')
				tile.setTrack('video', track);
			if (!this.room.canSend(track.kind))
			{
				this.record('cannotSend', { kind: track.kind });
				continue;
			}
			// Simulcast (video only): legacy SSRC simulcast, three layers 'low', 'medium', 'high'.
			const options = { simulcast: track.kind === 'video' && simulcast };
			const producer = this.room.createProducer(track, options, { source: track.kind });
			this.producers.set(track.kind, producer);
			producer.on('close', (originator) => this.record('producerClosed', { kind: producer.kind, originator }));
			try
			{
				await producer.send(this.sendTransport);
				this.record('producing', { kind: track.kind, id: producer.id });
			}
			catch (error)
			{
				this.record('produceFailed', { kind: track.kind, error: errorMessage(error) });
				this.fail(error, `cannot send ${track.kind}`);
			}
		}
	}

	addPeer(peer)
	{
		if (this.tiles.has(peer.name))
			return;
		this.tiles.set(peer.name, new Tile(peer.name, false));
		for (const consumer of peer.consumers)
			this.addConsumer(consumer);
		peer.on('newconsumer', (consumer) => this.addConsumer(consumer));
		peer.on('close', (originator) =>
		{
			this.record('peerClosed', { peerName: peer.name, originator });
			const tile = this.tiles.get(peer.name);
			if (tile)
				tile.remove();
			this.tiles.delete(peer.name);
		});
	}

	async addConsumer(consumer)
	{
		const peerName = consumer.peer.name;
		this.consumers.set(consumer.id, consumer);
		this.record('newConsumer', { id: consumer.id, kind: consumer.kind, peerName });
		const tile = () => this.tiles.get(peerName);
		consumer.on('pause', (originator) =>
		{
			this.record('consumerPaused', { id: consumer.id, kind: consumer.kind, peerName, originator });
			if (tile())
				tile().setPaused(consumer.kind, true);
		});
		consumer.on('resume', (originator) =>
		{
			this.record('consumerResumed', { id: consumer.id, kind: consumer.kind, peerName, originator });
			if (tile())
				tile().setPaused(consumer.kind, false);
		});
		consumer.on('close', (originator) =>
		{
			this.record('consumerClosed', { id: consumer.id, kind: consumer.kind, peerName, originator });
			this.consumers.delete(consumer.id);
			if (tile())
				tile().setTrack(consumer.kind, null);
		});
		if (!consumer.supported)
		{
			this.record('consumerUnsupported', { id: consumer.id, kind: consumer.kind, peerName });
			return;
		}
		try
		{
			const track = await consumer.receive(this.recvTransport);
			this.record('consuming', { id: consumer.id, kind: consumer.kind, peerName });
			if (tile())
			{
				tile().setTrack(consumer.kind, track);
				tile().setPaused(consumer.kind, consumer.paused);
			}
		}
		catch (error)
		{
			this.record('receiveFailed', { id: consumer.id, kind: consumer.kind, peerName, error: errorMessage(error) });
			this.fail(error, `cannot receive ${consumer.kind} of ${peerName}`);
		}
	}

	setPaused(kind, paused)
	{
		const producer = this.producers.get(kind);
		if (!producer || producer.closed)
			return false;
		if (paused)
			producer.pause();
		else
			producer.resume();
		this.tiles.get(this.peerName).setPaused(kind, paused);
		this.record(paused ? 'producerPaused' : 'producerResumed', { kind });
		return true;
	}

	// getStats() of every consumer's receiver and every producer's sender.
	async stats()
	{
		const consumers = [];
		for (const consumer of this.consumers.values())
		{
			const stats = consumer.track ? await rtpStats(findReceiver(consumer.track), 'inbound-rtp') : null;
			consumers.push({
				id       : consumer.id,
				kind     : consumer.kind,
				peerName : consumer.peer.name,
				paused   : consumer.paused,
				...(stats || {})
			});
		}
		const producers = [];
		for (const producer of this.producers.values())
		{
			const stats = producer.track ? await rtpStats(findSender(producer.track), 'outbound-rtp') : null;
			producers.push({ id: producer.id, kind: producer.kind, paused: producer.paused, ...(stats || {}) });
		}
		return { consumers, producers };
	}

	async updateFigures()
	{
		const { consumers, producers } = await this.stats();
		const rows = [
			...consumers.map((c) => ({ ...c, tile: this.tiles.get(c.peerName), bytes: c.bytesReceived, packets: c.packetsReceived })),
			...producers.map((p) => ({ ...p, tile: this.tiles.get(this.peerName), bytes: p.bytesSent, packets: p.packetsSent }))
		];
		for (const row of rows)
		{
			if (!row.tile || row.timestamp === undefined)
				continue;
			const previous = row.tile.last[row.kind];
			row.tile.last[row.kind] = { bytes: row.bytes, timestamp: row.timestamp };
			if (row.paused)
			{
				row.tile.setFigure(row.kind, `${row.kind} paused · ${row.packets} pkts`);
				continue;
			}
			if (!previous || row.timestamp <= previous.timestamp)
				continue;
			const bitrate = ((row.bytes - previous.bytes) * 8 * 1000) / (row.timestamp - previous.timestamp);
			let text = `${row.kind} ${formatBitrate(bitrate)} · ${row.packets} pkts`;
			if (row.kind === 'video' && row.frameWidth)
				text = `${(row.codec || 'video').replace('video/', '')} ${row.frameWidth}×${row.frameHeight} · ${formatBitrate(bitrate)} · ${row.packets} pkts`;
			row.tile.setFigure(row.kind, text);
		}
	}

	fail(error, context = '')
	{
		this.lastError = errorMessage(error);
		setStatus(context ? `${context}: ${this.lastError}` : this.lastError, true);
		console.error(`tureen demo: ${context ? `${context}: ` : ''}${this.lastError}`);
	}

	leave()
	{
		if (this.closed)
			return;
		this.closed = true;
		clearInterval(this.statsTimer);
		if (!this.room.closed)
			this.room.leave();
		this.signaling.close();
		if (this.stream)
			this.stream.getTracks().forEach((track) => track.stop());
		for (const tile of this.tiles.values())
			tile.remove();
		this.tiles.clear();
		this.record('left');
	}

	state()
	{
		return {
			roomId      : this.roomId,
			peerName    : this.peerName,
			joined      : this.joined && !this.room.closed,
			closed      : this.closed,
			lastError   : this.lastError,
			tiles       : [ ...this.tiles.keys() ],
			peers       : this.room.peers.map((peer) => ({
				name      : peer.name,
				consumers : peer.consumers.map((c) => ({ id: c.id, kind: c.kind, paused: c.paused, hasTrack: Boolean(c.track) }))
			})),
			producers   : [ ...this.producers.values() ].map((p) => ({ id: p.id, kind: p.kind, paused: p.paused })),
			transports  : [ this.sendTransport, this.recvTransport ].filter(Boolean).map((t) => ({ id: t.id, direction: t.direction, state: t.connectionState })),
			signaling   : this.signaling.log.slice(),
			events      : this.events.slice()
		};
	}
}

// ---------------------------------------------------------------------------------------------
// The page.

let session = null;

function showJoined(joined)
{
	$('#join-form').hidden = joined;
	$('#controls').hidden = !joined;
	$('#join').disabled = false;
	if (joined)
		$('#whoami').textContent = `${session.peerName} in ${session.roomId}`;
	for (const button of document.querySelectorAll('.toggle'))
		button.classList.remove('off');
	$('#toggle-mic').textContent = 'Mute';
	$('#toggle-cam').textContent = 'Stop camera';
}

async function join(options = {})
{
	const roomId = (options.roomId || $('#room').value || '').trim();
	const peerName = (options.peerName || $('#name').value || '').trim();
	if (!roomId || !peerName)
		throw new Error('room and name are required');
	if (session && !session.closed)
		session.leave();
	$('#room').value = roomId;
	$('#name').value = peerName;
	const url = new URL(location.href);
	url.searchParams.set('room', roomId);
	history.replaceState(null, '', url);
	$('#join').disabled = true;
	session = new Session(roomId, peerName, options.transportOptions || (query.get('tcp') === '1' ? { udp: false, tcp: true } : {}));
	window.tureenDemo.session = session;
	try
	{
		const result = await session.join(options);
		showJoined(true);
		return result;
	}
	catch (error)
	{
		session.fail(error, 'join failed');
		if (!session.joined)
		{
			session.leave();
			showJoined(false);
		}
		else
		{
			showJoined(true);
		}
		throw error;
	}
}

function leave()
{
	if (session)
		session.leave();
	showJoined(false);
	setStatus('Left the room.');
}

function setPaused(kind, paused)
{
	if (!session)
		return false;
	const done = session.setPaused(kind, paused);
	const button = kind === 'video' ? $('#toggle-cam') : $('#toggle-mic');
	button.classList.toggle('off', paused);
	button.textContent = kind === 'video' ? (paused ? 'Start camera' : 'Stop camera') : (paused ? 'Unmute' : 'Mute');
	return done;
}

function mediaOptionsFromQuery()
{
	const number = (key, fallback) => (query.has(key) ? Number(query.get(key)) : fallback);
	return {
		audio     : query.get('audio') !== '0',
		video     : query.get('video') !== '0',
		width     : number('width', 640),
		height    : number('height', 480),
		frameRate : number('fps', 20),
		simulcast : query.get('simulcast') === '1'
	};
}

window.tureenDemo = {
	device   : deviceInfo(),
	session  : null,
	join,
	leave,
	setPaused,
	state    : () => (session ? session.state() : null),
	stats    : () => (session ? session.stats() : Promise.resolve(null)),
	events   : () => (session ? session.events.slice() : []),
	// The RTCPeerConnections of this page (open ones only).
	peerConnections : openPeerConnections
};

function init()
{
	const device = window.tureenDemo.device;
	$('#device').textContent = device.supported
		? `mediasoup-client 2.4.12 · ${device.name} ${device.version} · handler ${device.handler}`
		: `mediasoup-client: this browser is not supported (${device.detectError || device.name})`;
	$('#room').value = query.get('room') || 'demo';
	$('#name').value = query.get('name') || `guest-${Math.floor(1000 + Math.random() * 9000)}`;
	$('#join-form').addEventListener('submit', (event) =>
	{
		event.preventDefault();
		join(mediaOptionsFromQuery()).catch(() => {});
	});
	$('#leave').addEventListener('click', leave);
	$('#toggle-mic').addEventListener('click', () =>
		setPaused('audio', !$('#toggle-mic').classList.contains('off')));
	$('#toggle-cam').addEventListener('click', () =>
		setPaused('video', !$('#toggle-cam').classList.contains('off')));
	window.addEventListener('pagehide', () =>
	{
		if (session)
			session.leave();
	});
	if (!device.supported)
		setStatus('This browser is not supported by mediasoup-client v2.', true);
	else
		setStatus('Pick a room and a name, then Join.');
	if (query.get('autojoin') === '1' && device.supported)
		join(mediaOptionsFromQuery()).catch(() => {});
	window.tureenDemo.ready = true;
}

init();
