"""The dashboard in a real headless Chromium: charts drawn, no console error, no request leaves the machine.

The browser is driven over the Chrome DevTools Protocol with a minimal stdlib WebSocket client (no extra
dependency). Every page is loaded from ``file://`` in a fresh tab with the ``Runtime``, ``Log``, ``Network`` and
``Page`` domains enabled before navigation, so the test sees every console message, uncaught exception, browser
log entry (failed loads, CSP violations) and every request the page makes. Chromium also runs with
``--host-resolver-rules=MAP * ~NOTFOUND``, so even a request that slipped through could not reach the network.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from qc.report.dashboard import write_dashboard
from qc.report.paths import model_dir
from tests.unit.report.synthetic import FULL, INJECTION, build_report, history, settings

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
WINDOW = (1400, 1000)
TIMEOUT = 60.0
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SCREENSHOT_COPIES = {"index": Path("/tmp/dashboard-index.png"), "model": Path("/tmp/dashboard-model.png")}


class WebSocket:
    """Just enough of RFC 6455 for the DevTools socket: text frames out (masked), frames in, ping/pong."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if " 101 " not in head.split("\r\n")[0] or accept not in head:
            raise ConnectionError(f"DevTools WebSocket handshake failed: {head!r}")

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the browser closed the DevTools socket")
        self.buf += chunk

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += n.to_bytes(2, "big")
        else:
            header.append(0x80 | 127)
            header += n.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self, timeout: float) -> str:
        self.sock.settimeout(max(timeout, 0.01))
        message = bytearray()
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            mask = self._read(4) if b1 & 0x80 else b""
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("the browser closed the DevTools socket")
            if opcode == 0x9:
                self._send_frame(0xA, data)
                continue
            if opcode == 0xA:
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Cdp:
    """DevTools Protocol over one browser socket; page commands go to a flattened session."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _message(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        msg: dict[str, Any] = json.loads(self.ws.recv(remaining))
        return msg

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg_id = self.next_id
        payload: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            payload["sessionId"] = session
        self.ws.send(json.dumps(payload))
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                msg = self._message(deadline)
            except TimeoutError:
                pytest.fail(f"DevTools {method} got no answer within {TIMEOUT:.0f} s", pytrace=False)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    pytest.fail(f"DevTools {method} failed: {msg['error']}", pytrace=False)
                result: dict[str, Any] = msg.get("result", {})
                return result
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, session: str, timeout: float) -> dict[str, Any] | None:
        """The first event ``method`` of ``session`` (seen already or arriving within ``timeout``)."""
        for event in self.events:
            if event["method"] == method and event.get("sessionId") == session:
                return event
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._message(deadline)
            except TimeoutError:
                return None
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method and msg.get("sessionId") == session:
                    return msg

    def drain(self, seconds: float) -> None:
        self.wait_event("qc.never", "", seconds)


@dataclass
class Loaded:
    """What one page load produced."""

    url: str
    stats: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    attributes: list[dict[str, str]] = field(default_factory=list)
    screenshot: bytes = b""


PAGE_STATS = """JSON.stringify({
  plotly: typeof window.Plotly !== "undefined",
  charts: document.querySelectorAll("div.chart").length,
  plotted: document.querySelectorAll("div.chart.js-plotly-plot").length,
  svgs: document.querySelectorAll("div.chart .main-svg").length,
  traces: document.querySelectorAll("div.chart .trace").length,
  annotations: Array.from(document.querySelectorAll("div.chart .annotation-text")).map(e => e.textContent),
  titles: Object.fromEntries(Array.from(document.querySelectorAll("div.chart.js-plotly-plot")).map(
    e => [(e.querySelector(".gtitle") || {}).textContent || "", e.querySelectorAll(".trace").length])),
  names: Array.from(document.querySelectorAll("td.name")).map(e => e.textContent),
  plotlyMissing: Array.from(document.querySelectorAll("div.chart:not(.js-plotly-plot)")).map(e => e.textContent)
})"""

ATTRIBUTES = """JSON.stringify(Array.from(document.querySelectorAll("[src],[href]")).map(e => ({
  attr: e.hasAttribute("src") ? e.getAttribute("src") : e.getAttribute("href"),
  resolved: e.hasAttribute("src") ? e.src : e.href
})))"""


class Browser:
    def __init__(self, cdp: Cdp) -> None:
        self.cdp = cdp

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.cdp.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            pytest.fail(f"evaluating {expression[:60]!r} threw: {result['exceptionDetails']}", pytrace=False)
        return result["result"].get("value")

    def open(self, url: str) -> tuple[str, str]:
        target = self.cdp.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.cdp.call(f"{domain}.enable", session)
        self.cdp.call(
            "Emulation.setDeviceMetricsOverride", session, width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1,
            mobile=False,
        )  # fmt: skip
        nav = self.cdp.call("Page.navigate", session, url=url)
        if nav.get("errorText"):
            pytest.fail(f"Chromium could not open {url}: {nav['errorText']}", pytrace=False)
        if self.cdp.wait_event("Page.loadEventFired", session, TIMEOUT) is None:
            pytest.fail(f"{url} did not finish loading within {TIMEOUT:.0f} s", pytrace=False)
        return target, session

    def load(self, url: str) -> Loaded:
        start = len(self.cdp.events)
        target, session = self.open(url)
        deadline = time.monotonic() + TIMEOUT
        while True:
            stats: dict[str, Any] = json.loads(self.evaluate(session, PAGE_STATS))
            if not stats["plotly"] or stats["plotted"] == stats["charts"] or time.monotonic() > deadline:
                break
            self.cdp.drain(0.2)
        self.cdp.drain(0.5)  # late console messages
        page = Loaded(url, stats)
        page.attributes = json.loads(self.evaluate(session, ATTRIBUTES))
        page.screenshot = base64.b64decode(self.cdp.call("Page.captureScreenshot", session, format="png")["data"])
        for event in self.cdp.events[start:]:
            if event.get("sessionId") != session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                page.errors.append(f"exception: {details.get('exception', {}).get('description') or details}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = [a.get("value", a.get("description")) for a in params.get("args", [])]
                page.errors.append(f"console.{params['type']}: {args}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                page.errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
            elif method == "Network.requestWillBeSent":
                page.requests.append(params["request"]["url"])
            elif method == "Network.webSocketCreated":
                page.requests.append(params["url"])
            elif method == "Page.javascriptDialogOpening":
                page.dialogs.append(params.get("message", ""))
                self.cdp.call("Page.handleJavaScriptDialog", session, accept=True)
        self.cdp.call("Target.closeTarget", targetId=target)
        return page


def start_chromium(profile: Path) -> tuple[subprocess.Popen[bytes], Path]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard browser test needs the Debian package 'chromium' "
            "(apt-get install -y chromium).",
            pytrace=False,
        )
    log = profile.parent / "chromium.log"
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the browser this test started
            proc.wait(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    base = tmp_path_factory.mktemp("chromium")
    proc, log = start_chromium(base / "profile")
    port_file = base / "profile" / "DevToolsActivePort"
    deadline = time.monotonic() + TIMEOUT
    try:
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"Chromium did not open its DevTools port; its output:\n{tail}", pytrace=False)
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        ws = WebSocket(f"ws://127.0.0.1:{port}{path}", TIMEOUT)
        try:
            yield Browser(Cdp(ws))
        finally:
            with contextlib.suppress(OSError):
                ws.send(json.dumps({"id": 10**9, "method": "Browser.close"}))
            ws.close()
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = build_report(tmp_path_factory.mktemp("dashboard") / "reports")
    write_dashboard(report, settings=settings(), history=history(3))
    return report


def check_offline(page: Loaded, report: Path) -> None:
    assert page.errors == [], f"{page.url}: console errors:\n" + "\n".join(page.errors)
    assert page.dialogs == [], f"{page.url}: a script opened a dialog: {page.dialogs}"
    remote = [u for u in page.requests if urlsplit(u).scheme not in LOCAL_SCHEMES]
    assert remote == [], f"{page.url}: requests that would leave the machine: {remote}"
    # the observation works: the page's own script was seen as a request
    assert any(u.endswith("/plotly.min.js") for u in page.requests), page.requests
    for item in page.attributes:
        parts = urlsplit(item["attr"])
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page.url}: absolute URL {item['attr']}"
        resolved = urlsplit(item["resolved"])
        assert resolved.scheme == "file", item
        assert Path(resolved.path).resolve().is_relative_to(report.resolve()), item
    stats = page.stats
    assert stats["charts"] > 0
    assert stats["plotted"] == stats["charts"], f"{page.url}: charts not drawn: {stats['plotlyMissing']}"
    assert stats["svgs"] >= 2 * stats["charts"]  # plotly draws two or three .main-svg per chart
    assert stats["traces"] >= stats["charts"]


def save(page: Loaded, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"dashboard-{name}.png"
    path.write_bytes(page.screenshot)
    with Image.open(path) as img:
        assert img.size == WINDOW
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # not a blank page
    shutil.copyfile(path, SCREENSHOT_COPIES[name])
    return path


def test_index_renders_offline_and_sorts(browser: Browser, dashboard: Path, tmp_path: Path) -> None:
    page = browser.load((dashboard / "index.html").as_uri())
    check_offline(page, dashboard)
    assert page.stats["charts"] == 1 + 2 + 1  # overlay + fps and worst_layer_cosine trends + patterns
    patterns = [t for t in page.stats["titles"] if t.startswith("Local SQNR by op type and pattern")]
    assert len(patterns) == 1, page.stats["titles"]
    assert page.stats["titles"][patterns[0]] >= 2  # mean bars and worst-layer markers
    save(page, tmp_path, "index")

    target, session = browser.open((dashboard / "index.html").as_uri())
    order = """Array.from(document.querySelectorAll("table.models tbody tr")).map(r => r.cells[0].textContent)"""
    click = """(() => { const th = Array.from(document.querySelectorAll("table.models th"))
        .find(h => h.textContent.trim() === "%s"); th.click(); return th.getAttribute("aria-sort"); })()"""
    first = browser.evaluate(session, order)
    assert browser.evaluate(session, click % "model") == "ascending"
    ascending = browser.evaluate(session, order)
    assert ascending == sorted(first)
    assert browser.evaluate(session, click % "model") == "descending"
    assert browser.evaluate(session, order) == ascending[::-1]
    # numbers sort as numbers, blanks last: FPS of FULL only
    assert browser.evaluate(session, click % "FPS") == "ascending"
    assert browser.evaluate(session, order)[0] == FULL
    browser.cdp.call("Target.closeTarget", targetId=target)


def test_model_page_renders_offline(browser: Browser, dashboard: Path, tmp_path: Path) -> None:
    page = browser.load((model_dir(dashboard, FULL) / "index.html").as_uri())
    check_offline(page, dashboard)
    assert page.stats["charts"] == 5  # layers, outputs, top layer times, op-type share, diagnosis
    # the diagnosis chart: accumulated and local SQNR and cosine, and the origin marked, in both panels
    assert page.stats["titles"].get("Accumulated vs local error along the topological order", 0) >= 6, page.stats
    annotations = page.stats["annotations"]
    assert any(a.startswith("first below threshold: backbone/block_7/leakyrelu") for a in annotations), annotations
    assert INJECTION in page.stats["names"]  # shown literally, never run
    save(page, tmp_path, "model")

    # the detection pictures load lazily: scroll to them, then every one must decode from its relative src
    target, session = browser.open((model_dir(dashboard, FULL) / "index.html").as_uri())
    browser.evaluate(session, 'document.querySelector(".pictures").scrollIntoView()')
    images = """Array.from(document.querySelectorAll(".pictures img")).map(i => i.complete && i.naturalWidth)"""
    deadline = time.monotonic() + TIMEOUT
    while (widths := browser.evaluate(session, images)) != [320, 320] and time.monotonic() < deadline:
        browser.cdp.drain(0.2)
    assert widths == [320, 320]
    browser.cdp.call("Target.closeTarget", targetId=target)
