"""Headless-Chromium checker for the workflow's HTML report (issue #6: "reports/index.html opens in a browser,
the page and every linked notebook load, every image resolves").

``check_site(root)`` serves ``root`` over HTTP on 127.0.0.1 (a ``ThreadingHTTPServer`` on an ephemeral port, in a
thread), and opens a small checker page served by the same server (same origin, so the checker can read the frames'
DOM) in Debian's Chromium, headless. The checker page

1. fetches the index page (HTTP status), loads it in an iframe, and collects every ``<a href>`` pointing to a
   local ``.html`` page (same origin, query and fragment dropped, each page once);
2. for the index and each linked page in turn: ``fetch()`` it (``ok`` means HTTP 200), loads it in an iframe,
   makes lazy images eager and waits for every ``<img>`` to settle, and records the title, the number of
   ``<img>`` elements and the (truncated) ``src`` of each image that did not resolve
   (``!img.complete || img.naturalWidth === 0``; ``data:`` URIs are checked the same way);
3. POSTs the result as JSON to ``/__tmf_check__/result`` on the same server; Python waits for it in real time
   (at most ``timeout`` seconds of wall clock), then kills Chromium.

Why not ``--dump-dom --virtual-time-budget``: virtual time only stands still while network fetches are pending.
Decoding images (notably large ``data:`` URIs, as nbconvert writes them) does not hold it, so virtual time jumps
through the checker's pending timers, the budget "expires" after a few real seconds and Chromium dumps the DOM
before the check has finished (on real notebook pages the result was missing in most runs).

Outside hosts are mapped to "not found" (``--host-resolver-rules``), so the check is offline and a report that
needs the internet to show an image fails it.

``screenshot(root, page, out)`` loads one page the same way (served over HTTP, offline) and writes a PNG of its
first screen, with the errors the page logged to its console (uncaught exceptions, failed scripts).

``require_chromium()`` is for tests: it skips when Chromium is missing, except under ``CI=true`` where it fails
(CI installs Chromium: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

CHROMIUM_MISSING = "Chromium not installed (apt-get install chromium)"
CHECKER_PATH = "/__tmf_check__/check.html"
RESULT_PATH = "/__tmf_check__/result"

CHECKER_JS = r"""
const INDEX = %(index)s;
const RESULT_PATH = %(result_path)s;
const PAGE_TIMEOUT_MS = %(page_timeout)d;
const SRC_MAX = 120;

function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }
function withTimeout(p, ms, what) {
  return Promise.race([p, sleep(ms).then(() => { throw new Error(what + ' timed out'); })]);
}
function keyOf(url) { return decodeURIComponent(new URL(url).pathname.replace(/^\/+/, '')); }
function short(s) { return s.length > SRC_MAX ? s.slice(0, SRC_MAX) + '...' : s; }

function loadFrame(url) {
  return new Promise((resolve) => {
    const f = document.createElement('iframe');
    f.width = 1280; f.height = 2000;
    f.onload = () => resolve(f);
    f.src = url;
    document.getElementById('frames').appendChild(f);
  });
}

async function settleImages(doc) {
  const imgs = Array.from(doc.images);
  for (const img of imgs) { if (img.loading === 'lazy') img.loading = 'eager'; }
  await Promise.all(imgs.map(img => {
    if (img.complete) return Promise.resolve();
    return withTimeout(new Promise(r => {
      img.addEventListener('load', r, {once: true});
      img.addEventListener('error', r, {once: true});
    }), PAGE_TIMEOUT_MS, 'image').catch(() => {});
  }));
  // decode() settles data: URIs and large images that report complete before they are usable
  await Promise.all(imgs.map(img => withTimeout(img.decode(), PAGE_TIMEOUT_MS, 'decode').catch(() => {})));
  return imgs;
}

async function checkPage(url, collectLinks) {
  const rec = {ok: false, status: null, title: null, images: 0, broken: []};
  try {
    const resp = await withTimeout(fetch(url, {cache: 'no-store'}), PAGE_TIMEOUT_MS, 'fetch');
    rec.status = resp.status;
    rec.ok = resp.status === 200;
  } catch (e) { rec.error = String(e); }
  if (!rec.ok) return [rec, []];
  let frame = null, links = [];
  try {
    frame = await withTimeout(loadFrame(url), PAGE_TIMEOUT_MS, 'page load');
    const doc = frame.contentDocument;
    rec.title = doc.title;
    const imgs = await settleImages(doc);
    rec.images = imgs.length;
    rec.broken = imgs.filter(img => !img.complete || img.naturalWidth === 0)
                     .map(img => short(img.getAttribute('src') || img.currentSrc || ''));
    if (collectLinks) {
      for (const a of doc.querySelectorAll('a[href]')) {
        let u;
        try { u = new URL(a.getAttribute('href'), doc.baseURI); } catch (e) { continue; }
        if (u.origin !== location.origin || !u.pathname.toLowerCase().endsWith('.html')) continue;
        u.hash = ''; u.search = '';
        if (!links.includes(u.href)) links.push(u.href);
      }
    }
  } catch (e) { rec.ok = false; rec.error = String(e); }
  if (frame) frame.remove();
  return [rec, links];
}

async function main() {
  const out = {pages: {}, links: []};
  try {
    const indexUrl = new URL(INDEX, location.origin).href;
    const [rec, links] = await checkPage(indexUrl, true);
    out.pages[keyOf(indexUrl)] = rec;
    for (const url of links) {
      const key = keyOf(url);
      out.links.push(key);
      if (key in out.pages) continue;
      out.pages[key] = (await checkPage(url, false))[0];
    }
  } catch (e) { out.error = String(e); }
  await fetch(RESULT_PATH, {method: 'POST', headers: {'Content-Type': 'application/json'},
                            body: JSON.stringify(out)});
}
main().catch(e => fetch(RESULT_PATH, {method: 'POST', body: JSON.stringify({error: String(e)})}));
"""


def chromium_path() -> str | None:
    """Path of the Chromium executable (``/usr/bin/chromium``, else ``chromium`` on PATH), or None."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def require_chromium() -> str:
    """For tests: the Chromium path; skip when it is missing, but fail when ``CI`` is ``true`` (CI installs it)."""
    import pytest

    path = chromium_path()
    if path is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{CHROMIUM_MISSING}; CI=true, so it must be installed", pytrace=False)
        pytest.skip(CHROMIUM_MISSING)
    return path


def _checker_page(index: str, page_timeout_ms: int) -> bytes:
    js = CHECKER_JS % {"index": json.dumps("/" + quote(index.lstrip("/"))), "page_timeout": page_timeout_ms,
                       "result_path": json.dumps(RESULT_PATH)}
    return ("<!doctype html><html><head><meta charset='utf-8'><title>tmf site check</title></head>"
            f"<body><div id='frames'></div><script>{js}</script></body></html>").encode()


class _Inbox:
    """The checker's POSTed result (raw bytes), handed from the HTTP thread to ``check_site``."""

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.ready = threading.Event()


def _handler(root: Path, checker: bytes, inbox: _Inbox) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?", 1)[0] == CHECKER_PATH:
                self._reply(200, checker, "text/html; charset=utf-8")
                return
            super().do_GET()

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?", 1)[0] != RESULT_PATH:
                self._reply(404, b"not found", "text/plain")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply(204, b"", "text/plain")
            if not inbox.ready.is_set():
                inbox.body = body
                inbox.ready.set()

        def _reply(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
            pass

    return functools.partial(Handler, directory=str(root))  # type: ignore[return-value]


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL Chromium's whole process group (it forks helpers) and reap the browser process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _run_chromium(cmd: list[str], inbox: _Inbox, timeout: float, log: Path) -> int | None:
    """Run ``cmd`` (stdout+stderr to ``log``) in its own process group until the checker has POSTed its result,
    Chromium exits, or ``timeout`` seconds of wall clock pass; then kill the group. Returns Chromium's exit status
    when it exited by itself, else None. Raises TimeoutError when no result came in time."""
    deadline = time.monotonic() + timeout
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while not inbox.ready.wait(0.1):
            if proc.poll() is not None:
                return proc.returncode
            if time.monotonic() > deadline:
                raise TimeoutError(f"Chromium did not finish the site check within {timeout:g} s; "
                                   f"output tail:\n{_tail(log)}")
        return None
    finally:
        _kill_group(proc)


def _tail(log: Path, n: int = 2000) -> str:
    try:
        return log.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def check_site(root: Path, index: str = "reports/index.html", timeout: float = 60) -> dict:
    """Load ``root/index`` and every local ``.html`` page it links to in headless Chromium.

    Returns ``{"pages": {relpath: {"ok", "status", "title", "images", "broken"[, "error"]}}, "links": [relpath]}``:
    ``ok`` is True when the page answered HTTP 200 and loaded; ``images`` counts its ``<img>`` elements and
    ``broken`` lists the (truncated) ``src`` of those that did not resolve. ``links`` lists the local pages the
    index links to (in document order). Raises FileNotFoundError when Chromium or ``root`` is missing, TimeoutError
    when no result comes within ``timeout`` seconds of wall clock (Chromium is killed), RuntimeError when Chromium
    exits without a result or the checker reports an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"check_site: site root {root} is not a directory")
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError(CHROMIUM_MISSING)
    page_timeout_ms = max(1000, int(timeout * 1000 / 4))
    inbox = _Inbox()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, _checker_page(index, page_timeout_ms), inbox))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="check_site-http", daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with tempfile.TemporaryDirectory(prefix="tmf-chromium-", ignore_cleanup_errors=True) as tmp:
            log = Path(tmp) / "chromium.log"
            cmd = [*_chromium_cmd(exe, Path(tmp) / "profile"), f"http://127.0.0.1:{port}{CHECKER_PATH}"]
            rc = _run_chromium(cmd, inbox, timeout, log)
            if inbox.body is None:
                raise RuntimeError(f"Chromium (exit {rc}) gave no site-check result for {root / index}; "
                                   f"output tail:\n{_tail(log)}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    result = json.loads(inbox.body.decode("utf-8"))
    if "error" in result:
        raise RuntimeError(f"site checker failed on {root / index}: {result['error']}")
    return result


def _chromium_cmd(exe: str, profile: Path) -> list[str]:
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={profile}"]


def screenshot(root: Path, page: str, out: Path, width: int = 1280, height: int = 2400,
               timeout: float = 90) -> dict:
    """Load ``root/page`` in headless Chromium (served over HTTP on 127.0.0.1, outside hosts unreachable) and
    write a ``width`` × ``height`` PNG of it to ``out``.

    Returns ``{"png": out, "console": [message]}``: the messages the page logged to its console (Chromium's
    ``CONSOLE`` log lines: uncaught exceptions, scripts that failed). Raises FileNotFoundError when Chromium or
    the page is missing, TimeoutError when Chromium does not finish within ``timeout`` seconds (it is killed),
    RuntimeError when it exits without writing the PNG.
    """
    import re

    root, out = Path(root), Path(out)
    if not (root / page).is_file():
        raise FileNotFoundError(f"screenshot: page {root / page} not found")
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError(CHROMIUM_MISSING)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, b"", _Inbox()))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="screenshot-http", daemon=True)
    thread.start()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        url = f"http://127.0.0.1:{server.server_address[1]}/{quote(page.lstrip('/'))}"
        with tempfile.TemporaryDirectory(prefix="tmf-chromium-", ignore_cleanup_errors=True) as tmp:
            log = Path(tmp) / "chromium.log"
            cmd = [*_chromium_cmd(exe, Path(tmp) / "profile"), "--enable-logging=stderr", "--v=0",
                   f"--window-size={width},{height}", f"--screenshot={out}", url]
            with open(log, "wb") as sink:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"Chromium did not screenshot {page} within {timeout:g} s; output tail:\n"
                                   f"{_tail(log)}") from None
            finally:
                _kill_group(proc)
            text = log.read_text("utf-8", "replace")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if not out.is_file():
        raise RuntimeError(f"Chromium (exit {proc.returncode}) wrote no screenshot of {page}; output tail:\n"
                           f"{text[-2000:]}")
    console = [m.group(1) for m in re.finditer(r":CONSOLE[^\]]*\] (.*)", text)]
    return {"png": out, "console": console}
