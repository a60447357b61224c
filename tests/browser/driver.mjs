// A small browser driver for the Python browser tests: Debian's Chromium via playwright-core.
//
//   node tests/browser/driver.mjs --console-log FILE [--executable /usr/bin/chromium]
//
// Reads one JSON command per line on stdin, answers one JSON line on stdout:
//   {"id": 1, "op": "open", "page": "alice", "url": "http://..."}   -> {"id": 1, "ok": true, "result": ...}
//   {"id": 2, "op": "eval", "page": "alice", "expr": "1 + 1"}      -> {"id": 2, "ok": false, "error": "..."}
// ops: version, open, eval, waitFor, click, screenshot, close, quit. Every console message, page error and
// crash of every page is appended to the console log file as it happens (so it survives a hang).
import fs from 'node:fs';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const argv = process.argv.slice(2);
const option = (name, fallback) =>
{
	const index = argv.indexOf(name);
	return index >= 0 ? argv[index + 1] : fallback;
};

const consoleLog = fs.createWriteStream(option('--console-log', '/dev/null'), { flags: 'a' });
const executablePath = option('--executable', '/usr/bin/chromium');
const t0 = Date.now();
const note = (page, text) => consoleLog.write(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${page}: ${text}\n`);

// Flags for headless Chromium with fake media devices and no permission prompts (plus autoplay for remote <audio> without a click).
const ARGS = [
	'--no-sandbox',
	'--use-fake-device-for-media-stream',
	'--use-fake-ui-for-media-stream',
	'--allow-loopback-in-peer-connection',
	'--disable-gpu',
	'--disable-background-networking',
	'--disable-component-update',
	'--disable-sync',
	'--no-first-run',
	'--autoplay-policy=no-user-gesture-required'
];

// Runs in every page before its scripts: keep every RTCPeerConnection for the tests' getStats.
function trackPeerConnections()
{
	const Native = window.RTCPeerConnection;
	const all = [];
	class Tracked extends Native
	{
		constructor(...args)
		{
			super(...args);
			all.push(this);
		}
	}
	window.RTCPeerConnection = Tracked;
	window.__tureenTest = {
		peerConnections : () => all.filter((pc) => pc.signalingState !== 'closed'),
		// Sum of inbound-rtp and outbound-rtp over all open peer connections, per kind.
		async rtp()
		{
			const inbound = [];
			const outbound = [];
			for (const pc of all.filter((p) => p.signalingState !== 'closed'))
			{
				const report = await pc.getStats();
				report.forEach((s) =>
				{
					const kind = s.kind || s.mediaType;
					if (s.type === 'inbound-rtp')
						inbound.push({ kind, ssrc: s.ssrc, mid: s.mid, packetsReceived: s.packetsReceived || 0, bytesReceived: s.bytesReceived || 0, framesDecoded: s.framesDecoded || 0 });
					else if (s.type === 'outbound-rtp')
						outbound.push({ kind, ssrc: s.ssrc, mid: s.mid, packetsSent: s.packetsSent || 0, framesEncoded: s.framesEncoded || 0 });
				});
			}
			return { inbound, outbound };
		}
	};
}

const browser = await chromium.launch({ executablePath, headless: true, args: ARGS, timeout: 30000 });
const version = browser.version();
const pages = new Map(); // name -> { context, page }

browser.on('disconnected', () => note('browser', 'DISCONNECTED'));

async function open(name, url)
{
	if (pages.has(name))
		throw new Error(`page ${name} is already open`);
	const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
	await context.addInitScript(trackPeerConnections);
	const page = await context.newPage();
	page.setDefaultTimeout(30000);
	page.on('console', (message) => note(name, `console.${message.type()}: ${message.text()}`));
	page.on('pageerror', (error) => note(name, `PAGE ERROR: ${error.stack || error.message}`));
	page.on('crash', () => note(name, 'PAGE CRASHED'));
	page.on('requestfailed', (request) => note(name, `request failed: ${request.url()} ${request.failure() ? request.failure().errorText : ''}`));
	pages.set(name, { context, page });
	note(name, `open ${url}`);
	await page.goto(url, { waitUntil: 'load', timeout: 30000 });
	return { url: page.url() };
}

function pageOf(name)
{
	const entry = pages.get(name);
	if (!entry)
		throw new Error(`no page ${name}`);
	return entry.page;
}

const ops = {
	version : async () => version,
	open    : ({ page, url }) => open(page, url),
	eval    : ({ page, expr }) => pageOf(page).evaluate(expr),
	waitFor : async ({ page, expr, timeoutMs }) =>
	{
		const handle = await pageOf(page).waitForFunction(expr, null, { timeout: timeoutMs, polling: 200 });
		return handle.jsonValue();
	},
	click : async ({ page, selector }) =>
	{
		await pageOf(page).click(selector, { timeout: 10000 });
		return true;
	},
	screenshot : async ({ page, path, fullPage }) =>
	{
		await pageOf(page).screenshot({ path, fullPage: Boolean(fullPage) });
		return path;
	},
	close : async ({ page }) =>
	{
		const entry = pages.get(page);
		if (!entry)
			return false;
		pages.delete(page);
		note(page, 'close');
		await entry.context.close();
		return true;
	},
	quit : async () =>
	{
		await browser.close();
		setTimeout(() => process.exit(0), 10);
		return true;
	}
};

const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

send({ ready: true, version });

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async (line) =>
{
	let command;
	try
	{
		command = JSON.parse(line);
	}
	catch (error)
	{
		send({ id: null, ok: false, error: `bad JSON: ${error.message}` });
		return;
	}
	const op = ops[command.op];
	if (!op)
	{
		send({ id: command.id, ok: false, error: `unknown op ${command.op}` });
		return;
	}
	try
	{
		const result = await op(command);
		send({ id: command.id, ok: true, result: result === undefined ? null : result });
	}
	catch (error)
	{
		send({ id: command.id, ok: false, error: error && error.message ? error.message : String(error) });
	}
});
lines.on('close', async () =>
{
	// stdin closed: the test process is gone; never leave a browser behind.
	await browser.close().catch(() => {});
	process.exit(0);
});
