"""Open a local page in headless Chromium and report what a reader's browser would see.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending in
NUL on file descriptors 3 and 4), so no port is opened and nothing beyond the standard library is needed.
``check_page`` loads the page at a given viewport and returns console errors, every network request the page
made (anything that is not the page itself or a ``data:`` URL), the horizontal overflow, the tables whose
container needs sideways scrolling (folded ``<details>`` opened), broken images, and a PNG of the first screen.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe")

# Runs in the page: layout facts, the elements that stick out past the viewport's right edge (ignoring those
# inside a container that scrolls or clips horizontally), and every table whose container (its parent element)
# needs sideways scrolling: a reader would have to scroll it. Folded <details> are opened first, so that the
# tables in them are laid out and measured too.
_MEASURE = """(() => {
  document.querySelectorAll('details').forEach((d) => { d.open = true; });
  const root = document.documentElement;
  const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '');
  const scrolling = [...document.querySelectorAll('table')].map((table, index) => {
    const box = table.parentElement;
    const section = table.closest('section[id]');
    return {table: index, container: name(box), section: section ? section.id : '',
            scrollWidth: box.scrollWidth, clientWidth: box.clientWidth};
  }).filter((t) => t.scrollWidth > t.clientWidth + 1);
  const clipped = (element) => {
    for (let parent = element.parentElement; parent && parent !== document.body; parent = parent.parentElement) {
      if (getComputedStyle(parent).overflowX !== 'visible') return true;
    }
    return false;
  };
  const wide = [...document.body.querySelectorAll('*')]
    .filter((e) => e.getBoundingClientRect().right > root.clientWidth + 0.5 && !clipped(e))
    .map(name);
  return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, scrollHeight: root.scrollHeight,
          title: document.title, images: document.images.length,
          tables: document.querySelectorAll('table').length, scrollingTables: scrolling,
          answerBottom: document.getElementById('answer')?.getBoundingClientRect().bottom ?? null,
          brokenImages: [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).length,
          wide: wide.slice(0, 20)};
})()"""


# Runs in the page: every section's id and its box in page coordinates.
_SECTIONS = """[...document.querySelectorAll('section[id]')].map((s) => {
  const box = s.getBoundingClientRect();
  return {id: s.id, y: box.top + window.scrollY, height: box.height};
})"""
MAX_SECTION_HEIGHT = 8000


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or did not answer."""


@dataclass
class PageCheck:
    url: str
    width: int
    height: int
    console_errors: list[str] = field(default_factory=list)
    network_requests: list[str] = field(default_factory=list)
    layout: dict = field(default_factory=dict)
    screenshot: bytes = b""
    sections: dict[str, bytes] = field(default_factory=dict)  # section id → PNG of it (``sections=True``)

    @property
    def horizontal_overflow(self) -> int:
        """Pixels the page is wider than the viewport (0 when it fits)."""
        return max(0, int(self.layout.get("scrollWidth", 0)) - int(self.layout.get("clientWidth", 0)))

    def problems(self) -> list[str]:
        found = [f"console error: {message}" for message in self.console_errors]
        found += [f"network request: {url}" for url in self.network_requests]
        if self.horizontal_overflow:
            found.append(f"horizontal overflow of {self.horizontal_overflow} px at {self.width} px "
                         f"(sticking out: {', '.join(self.layout.get('wide', [])) or '?'})")
        for table in self.layout.get("scrollingTables", []):
            found.append(f"table {table['table']} (section {table['section'] or '?'}) needs sideways scrolling at "
                         f"{self.width} px: its container {table['container']} is {table['scrollWidth']} px wide "
                         f"inside {table['clientWidth']} px")
        if self.layout.get("brokenImages"):
            found.append(f"{self.layout['brokenImages']} image(s) failed to load")
        return found


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _DevToolsPipe:
    """One Chromium process and its DevTools pipe; replies are matched by id, events are kept in order."""

    def __init__(self, executable: str, user_data_dir: str, width: int, height: int):
        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()
        # move the child's ends above 2..4 first so that placing them on 3 and 4 cannot overwrite one another
        child_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_browser_read, from_browser_write):
            os.close(fd)

        def place_pipe_ends() -> None:  # in the child, before exec: fd 3 = commands in, fd 4 = messages out
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        command = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
                   f"--window-size={width},{height}", "about:blank"]
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=self.stderr, close_fds=False, preexec_fn=place_pipe_ends)
        os.close(child_read)
        os.close(child_write)
        self._out = os.fdopen(to_browser_write, "wb", buffering=0)
        self._in = os.fdopen(from_browser_read, "rb", buffering=0)
        self._messages: queue.Queue = queue.Queue()
        self._next_id = 0
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := self._in.read(1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))
        self._messages.put(None)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0):
        self._next_id += 1
        request = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        self._out.write(json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline, f"{method} got no answer")
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict:
        for message in self.events:
            if message.get("method") == event:
                return message
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline, f"no {event}")
            self.events.append(message)
            if message.get("method") == event:
                return message

    def drain(self, seconds: float) -> None:
        """Collect events for a little longer (late console messages, requests)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._messages.get(timeout=left)
            except queue.Empty:
                return
            if message is None:
                return
            self.events.append(message)

    def _next(self, deadline: float, what: str) -> dict:
        try:
            message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserError(f"Chromium: {what} in time") from None
        if message is None:
            self.stderr.seek(0)
            raise BrowserError(f"Chromium closed the DevTools pipe ({what}); its stderr ends: "
                               f"{self.stderr.read()[-2000:].decode(errors='replace')}")
        return message

    def close(self) -> None:
        try:
            self._out.write(json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self._out.close()
            self.stderr.close()


def check_page(page: str | os.PathLike, *, width: int = 1280, height: int = 800, chromium: str | None = None,
               timeout: float = 60.0, sections: bool = False) -> PageCheck:
    """Load a local HTML file at ``width`` × ``height`` CSS pixels and return what was seen; with ``sections``,
    also a PNG of every ``<section id=…>`` at that width, whole (at most ``MAX_SECTION_HEIGHT`` pixels)."""
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"page not found: {page}")
    executable = chromium or find_chromium()
    if not executable:
        raise BrowserError("no Chromium found (Debian: apt-get install chromium)")
    url = page.as_uri()
    with tempfile.TemporaryDirectory(prefix="synthcal-chromium-") as profile:
        browser = _DevToolsPipe(executable, profile, width, height)
        try:
            target = browser.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                browser.call(f"{domain}.enable", session=session)
            browser.call("Emulation.setDeviceMetricsOverride",
                         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
            browser.events.clear()  # only what the page itself does counts
            browser.call("Page.navigate", {"url": url}, session, timeout=timeout)
            browser.wait_for("Page.loadEventFired", timeout=timeout)
            browser.call("Runtime.evaluate", {"expression": "document.fonts.ready.then(() => true)",
                                              "awaitPromise": True}, session)
            browser.drain(0.5)
            layout = browser.call("Runtime.evaluate", {"expression": _MEASURE, "returnByValue": True},
                                  session)["result"]["value"]
            shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                                session, timeout=timeout)
            section_shots = {}
            if sections:
                boxes = browser.call("Runtime.evaluate", {"expression": _SECTIONS, "returnByValue": True},
                                     session)["result"]["value"]
                for box in boxes:
                    clip = {"x": 0, "y": box["y"], "width": width,
                            "height": max(1, min(box["height"], MAX_SECTION_HEIGHT)), "scale": 1}
                    section_shots[box["id"]] = base64.b64decode(browser.call(
                        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip},
                        session, timeout=timeout)["data"])
        finally:
            browser.close()
    check = PageCheck(url, width, height, layout=layout, screenshot=base64.b64decode(shot["data"]),
                      sections=section_shots)
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            check.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                                 for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            check.console_errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            check.console_errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            requested = params.get("request", {}).get("url", "")
            if requested != url and not requested.startswith("data:"):
                check.network_requests.append(requested)
    return check


def screenshot_report(page: str | os.PathLike, screenshot_path: str | os.PathLike, check_path: str | os.PathLike,
                      width: int = 1280, height: int = 800, sections_dir: str | os.PathLike | None = None) -> PageCheck:
    """Check a report page in Chromium, write the first screen's PNG and the findings (JSON); raise on problems.
    With ``sections_dir``, also one PNG per section there (``{id}.png``)."""
    from synthcal.io import atomic_path, write_json

    check = check_page(page, width=width, height=height, sections=sections_dir is not None)
    problems = check.problems()
    if problems:
        raise BrowserError(f"{page} at {width} px: " + "; ".join(problems))
    with atomic_path(screenshot_path) as tmp:
        tmp.write_bytes(check.screenshot)
    if sections_dir is not None:
        for anchor, png in check.sections.items():
            with atomic_path(Path(sections_dir) / f"{anchor}.png") as tmp:
                tmp.write_bytes(png)
    write_json(check_path, {"url": check.url, "viewport": [width, height], "console_errors": check.console_errors,
                            "network_requests": check.network_requests, "layout": check.layout})
    return check
