"""The browser tests' harness: a real Tureen, the demo app, and headless Chromium pages.

- `Stack`: `tureen serve` (tests/support.ServerProcess) plus the demo's signaling app as a child
  `tureen demo --connect ...`, each logging to a file.
- `Browser`: tests/browser/driver.mjs (playwright-core driving Debian's /usr/bin/chromium with
  the flags for fake media devices, driver.mjs's ARGS), one JSON command per line; every console line of every page
  goes to a file. Every call is bounded by a timeout.
- `wait_until`: polls a page expression until a Python predicate holds, bounded.

On a failure the conftest prints the browser console, the server log and the app log.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from support import ServerProcess, free_tcp_port

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.mjs")
CHROMIUM = os.environ.get("TUREEN_CHROMIUM", "/usr/bin/chromium")
BUNDLE = ROOT / "demo" / "static" / "bundle.js"
OUTPUT = ROOT / "test-output"
SETUP_HINT = "run scripts/install-browser-deps.sh (make test does)"


def missing_prerequisites() -> list[str]:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (Debian's chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    if not (ROOT / "node_modules" / "playwright-core").exists():
        missing.append("node_modules/playwright-core (npm ci)")
    if not BUNDLE.exists():
        missing.append(f"{BUNDLE.relative_to(ROOT)} (npm run build)")
    elif BUNDLE.stat().st_mtime < max(p.stat().st_mtime for p in (ROOT / "demo" / "web").glob("*.js")):
        missing.append(f"a fresh {BUNDLE.relative_to(ROOT)}: demo/web changed since it was built (npm run build)")
    return missing


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium (through the node driver); pages are named."""

    def __init__(self, console_log: Path, timeout: float = 30.0) -> None:
        self.console_log = console_log
        self.timeout = timeout
        self._ids = 0
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr_path = console_log.with_suffix(".driver.log")
        self._stderr = open(self._stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            ["node", str(DRIVER), "--console-log", str(console_log), "--executable", CHROMIUM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            ready = self._next(45.0, "the browser to start")
            if not ready.get("ready"):
                raise BrowserError(f"driver did not start: {ready}")
        except BrowserError:
            self.close()
            raise
        self.version: str = ready["version"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if line:
                try:
                    self._replies.put(json.loads(line))
                except ValueError:
                    self._replies.put({"id": None, "ok": False, "error": f"driver said: {line}"})
        self._replies.put({"id": None, "ok": False, "error": "driver exited", "exited": True})

    def _next(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"no answer from the browser driver within {timeout:.0f} s waiting for {what}") from None
        if reply.get("exited"):
            raise BrowserError(f"browser driver exited while waiting for {what}:\n{self.driver_log()}")
        return reply

    def call(self, op: str, timeout: float | None = None, **params: Any) -> Any:
        timeout = timeout or self.timeout
        self._ids += 1
        command = {"id": self._ids, "op": op, **params}
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout + 5.0
        while True:
            reply = self._next(max(0.1, deadline - time.monotonic()), f"{op} {params.get('page', '')}")
            if reply.get("id") == command["id"]:
                break
        if not reply.get("ok"):
            raise BrowserError(f"{op} on page {params.get('page')!r} failed: {reply.get('error')}")
        return reply.get("result")

    # ---------------------------------------------------------------- page operations

    def open(self, page: str, url: str) -> None:
        self.call("open", page=page, url=url, timeout=40.0)

    def eval(self, page: str, expr: str, timeout: float | None = None) -> Any:
        """Evaluate a JS expression in the page (a promise is awaited)."""
        return self.call("eval", page=page, expr=expr, timeout=timeout)

    def call_js(self, page: str, function: str, *args: Any, timeout: float | None = None) -> Any:
        """Call a JS function expression with JSON arguments: call_js('a', 'window.f', 1, 'x')."""
        return self.eval(page, f"({function})({', '.join(json.dumps(a) for a in args)})", timeout)

    def wait_for(self, page: str, expr: str, timeout: float = 20.0) -> Any:
        """Wait until a JS expression is truthy in the page (bounded); returns its value."""
        return self.call("waitFor", page=page, expr=expr, timeoutMs=timeout * 1000, timeout=timeout)

    def click(self, page: str, selector: str) -> None:
        self.call("click", page=page, selector=selector)

    def screenshot(self, page: str, path: Path, full_page: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.call("screenshot", page=page, path=str(path), fullPage=full_page)
        return path

    def close_page(self, page: str) -> None:
        self.call("close", page=page)

    # ---------------------------------------------------------------- logs and shutdown

    def console(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")[-30000:]
        except FileNotFoundError:
            return "(no console output)"

    def driver_log(self) -> str:
        try:
            self._stderr.flush()
            return self._stderr_path.read_text(errors="replace")[-10000:]
        except (FileNotFoundError, ValueError):
            return ""

    def close(self) -> None:
        """Quit the browser; then kill, by pid, the driver and any Chromium process it left."""
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.process.pid).children(recursive=True)
        if self.process.poll() is None:
            try:
                self.call("quit", timeout=10.0)
            except BrowserError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=5)
        if self.process.stdin:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self._stderr.close()


class Stack:
    """A real `tureen serve` plus the demo app (`tureen demo --connect`) in child processes."""

    def __init__(self, tmp: Path, workers: int = 2) -> None:
        self.tmp = tmp
        self.server = ServerProcess(tmp, workers=workers)
        self.app_port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.app_port}"
        self.app_log_path = tmp / "demo-app.log"
        self._app_log = open(self.app_log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.app: subprocess.Popen[bytes] | None = None

    def start(self) -> Stack:
        self.server.wait_ready()
        self.app = subprocess.Popen(
            [sys.executable, "-m", "tureen.supervisor.cli", "demo", "--connect", self.server.endpoint,
             "--port", str(self.app_port), "--log-level", "debug"],
            stdout=self._app_log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30.0
        while True:
            if self.app.poll() is not None:
                raise RuntimeError(f"demo app exited with {self.app.returncode}:\n{self.app_log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2.0) as reply:
                    if json.loads(reply.read()).get("ok"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"demo app not ready within 30 s:\n{self.app_log()}")
            time.sleep(0.2)

    def page_url(self, room: str, name: str, **params: Any) -> str:
        query = urllib.parse.urlencode({"room": room, "name": name, **params})
        return f"{self.url}/?{query}"

    def app_log(self) -> str:
        if not self._app_log.closed:
            self._app_log.flush()
        return self.app_log_path.read_text(errors="replace")[-20000:]

    def stop(self) -> None:
        if self.app is not None and self.app.poll() is None:
            self.app.terminate()
            try:
                self.app.wait(15)
            except subprocess.TimeoutExpired:
                self.app.kill()
                self.app.wait(5)
        self._app_log.close()
        self.server.stop()


def wait_until(
    read: Callable[[], Any],
    predicate: Callable[[Any], bool],
    timeout: float,
    what: str,
    interval: float = 0.5,
) -> Any:
    """Poll `read()` until `predicate(value)`; raise AssertionError with the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        value = read()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last value: {value!r}")
        time.sleep(interval)



# Small video keeps 4 encoders + 12 decoders + the SFU within a 2-core CI machine.
TEST_MEDIA = {"width": 320, "height": 240, "frameRate": 15}


class DemoPage:
    """One browser page showing the demo, driven through `window.tureenDemo`."""

    def __init__(self, browser: Browser, stack: Stack, room: str, name: str, **params: Any) -> None:
        self.browser = browser
        self.room = room
        self.name = name
        self.page = f"{room}/{name}"
        browser.open(self.page, stack.page_url(room, name, **params))
        browser.wait_for(self.page, "window.tureenDemo && window.tureenDemo.ready", timeout=15)

    def js(self, expr: str, timeout: float | None = None) -> Any:
        return self.browser.eval(self.page, expr, timeout)

    def join(self, *, audio: bool = True, video: bool = True, **media: Any) -> dict[str, Any]:
        options = {"roomId": self.room, "peerName": self.name, "audio": audio, "video": video,
                   **TEST_MEDIA, **media}
        return self.browser.call_js(self.page, "window.tureenDemo.join", options, timeout=40.0)

    def state(self) -> dict[str, Any]:
        return self.js("window.tureenDemo.state()")

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        events = self.js("window.tureenDemo.events()")
        return [e for e in events if type_ is None or e["type"] == type_]

    def stats(self) -> dict[str, Any]:
        """The demo's getStats() per consumer/producer (inbound-rtp / outbound-rtp)."""
        return self.js("window.tureenDemo.stats()")

    def consumer_stats(self, peer: str, kind: str) -> dict[str, Any] | None:
        for consumer in self.stats()["consumers"]:
            if consumer["peerName"] == peer and consumer["kind"] == kind:
                return consumer
        return None

    def rtp(self) -> dict[str, list[dict[str, Any]]]:
        """inbound-rtp/outbound-rtp of every RTCPeerConnection of the page (test init script)."""
        return self.js("window.__tureenTest.rtp()")

    def tiles(self) -> list[str]:
        return self.js("[...document.querySelectorAll('#grid .tile')].map((t) => t.dataset.peer)")

    def video_element(self, peer: str) -> dict[str, Any] | None:
        """The <video> of `peer`'s tile: size, playback position, whether it shows."""
        return self.js(
            f"""(() => {{
                const tile = document.querySelector('#grid .tile[data-peer=' + {json.dumps(json.dumps(peer))} + ']');
                if (!tile) return null;
                const video = tile.querySelector('video');
                return {{ videoWidth: video.videoWidth, videoHeight: video.videoHeight,
                          currentTime: video.currentTime, paused: video.paused,
                          readyState: video.readyState, hasStream: Boolean(video.srcObject),
                          noVideo: tile.classList.contains('no-video'),
                          caption: tile.querySelector('figcaption').innerText,
                          figures: tile.querySelector('.stats').innerText }};
            }})()"""
        )

    def wait_video_playing(self, peer: str, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until `peer`'s tile plays video: videoWidth > 0 and currentTime advancing."""
        first = wait_until(
            lambda: self.video_element(peer),
            lambda v: bool(v) and v["videoWidth"] > 0 and v["currentTime"] > 0,
            timeout, f"{self.name} to show {peer}'s video",
        )
        return wait_until(
            lambda: self.video_element(peer),
            lambda v: bool(v) and v["currentTime"] >= first["currentTime"] + 1.0,
            10.0, f"{peer}'s video on {self.name} to keep playing (currentTime advancing)",
        )

    def set_paused(self, kind: str, paused: bool) -> None:
        assert self.browser.call_js(self.page, "window.tureenDemo.setPaused", kind, paused), f"{self.name} has no {kind} producer"

    def leave(self) -> None:
        self.js("window.tureenDemo.leave()")

    def close(self) -> None:
        self.browser.close_page(self.page)

    def wait_produced(self, kinds: tuple[str, ...] = ("audio", "video"), timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until every producer was sent or failed; returns the produce outcomes."""
        return wait_until(
            lambda: [e for e in self.events() if e["type"] in ("producing", "produceFailed")],
            lambda done: {e["kind"] for e in done} >= set(kinds),
            timeout,
            f"{self.name}'s producers to be sent",
        )


def control(stack: Stack, method: str, **params: Any) -> Any:
    """One control-API request to the stack's Tureen (the tests' own view of the server)."""
    import asyncio

    from tureen.shared.client import TureenClient

    async def run() -> Any:
        async with TureenClient(stack.server.endpoint, timeout=10.0) as client:
            return await client.request(method, **params)

    return asyncio.run(run())
