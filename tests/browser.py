"""Headless-Chromium checker for the workflow's HTML report (issue #6: "reports/index.html opens in a browser,
the page and every linked notebook load, every image resolves").

``check_site(root)`` serves ``root`` over HTTP on 127.0.0.1 (a ``ThreadingHTTPServer`` on an ephemeral port, in a
thread), and runs Debian's Chromium headless with ``--dump-dom`` on a small checker page served by the same server
(same origin, so the checker can read the frames' DOM). The checker page

1. fetches the index page (HTTP status), loads it in an iframe, and collects every ``<a href>`` pointing to a
   local ``.html`` page (same origin, query and fragment dropped, each page once);
2. for the index and each linked page in turn: ``fetch()`` it (``ok`` means HTTP 200), loads it in an iframe,
   makes lazy images eager and waits for every ``<img>`` to settle, and records the title, the number of
   ``<img>`` elements and the (truncated) ``src`` of each image that did not resolve
   (``!img.complete || img.naturalWidth === 0``; ``data:`` URIs are checked the same way);
3. writes the result as JSON into ``<pre id="result">``, which ``--dump-dom`` prints and Python parses.

Outside hosts are mapped to "not found" (``--host-resolver-rules``), so the check is offline and a report that
needs the internet to show an image fails it.

``require_chromium()`` is for tests: it skips when Chromium is missing, except under ``CI=true`` where it fails
(CI installs Chromium: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import functools
import html
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

CHROMIUM_MISSING = "Chromium not installed (apt-get install chromium)"
CHECKER_PATH = "/__tmf_check__/check.html"

CHECKER_JS = r"""
const INDEX = %(index)s;
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
  await Promise.all(imgs.map(img => img.decode().catch(() => {})));
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
  const pre = document.createElement('pre');
  pre.id = 'result';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}
main();
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
    js = CHECKER_JS % {"index": json.dumps("/" + quote(index.lstrip("/"))), "page_timeout": page_timeout_ms}
    return ("<!doctype html><html><head><meta charset='utf-8'><title>tmf site check</title></head>"
            f"<body><div id='frames'></div><script>{js}</script></body></html>").encode()


def _handler(root: Path, checker: bytes) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?", 1)[0] == CHECKER_PATH:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(checker)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(checker)
                return
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
            pass

    return functools.partial(Handler, directory=str(root))  # type: ignore[return-value]


def _run_chromium(cmd: list[str], timeout: float) -> tuple[int, str, str]:
    """Run ``cmd`` in its own process group; on timeout kill the whole group (Chromium forks helpers)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        raise TimeoutError(f"Chromium did not finish the site check within {timeout:g} s; "
                           f"stderr tail:\n{err[-2000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err


def check_site(root: Path, index: str = "reports/index.html", timeout: float = 60) -> dict:
    """Load ``root/index`` and every local ``.html`` page it links to in headless Chromium.

    Returns ``{"pages": {relpath: {"ok", "status", "title", "images", "broken"[, "error"]}}, "links": [relpath]}``:
    ``ok`` is True when the page answered HTTP 200 and loaded; ``images`` counts its ``<img>`` elements and
    ``broken`` lists the (truncated) ``src`` of those that did not resolve. ``links`` lists the local pages the
    index links to (in document order). Raises FileNotFoundError when Chromium or ``root`` is missing, TimeoutError
    when Chromium runs past ``timeout`` seconds (it is killed), RuntimeError when it prints no result.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"check_site: site root {root} is not a directory")
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError(CHROMIUM_MISSING)
    page_timeout_ms = max(1000, int(timeout * 1000 / 4))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, _checker_page(index, page_timeout_ms)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="check_site-http", daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with tempfile.TemporaryDirectory(prefix="tmf-chromium-") as profile:
            cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
                   "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                   f"--user-data-dir={profile}", f"--virtual-time-budget={int(timeout * 1000)}",
                   "--dump-dom", f"http://127.0.0.1:{port}{CHECKER_PATH}"]
            rc, out, err = _run_chromium(cmd, timeout)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    start = out.find('<pre id="result">')
    end = out.find("</pre>", start)
    if start < 0 or end < 0:
        raise RuntimeError(f"Chromium (exit {rc}) printed no site-check result for {root / index}; "
                           f"stderr tail:\n{err[-2000:]}")
    result = json.loads(html.unescape(out[start + len('<pre id="result">'):end]))
    if "error" in result:
        raise RuntimeError(f"site checker failed on {root / index}: {result['error']}")
    return result
