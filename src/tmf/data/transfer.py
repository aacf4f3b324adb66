"""HTTP(S) download with resume and progress in the log (standard library only).

A download goes to ``<dest>.part`` and is renamed to ``dest`` once complete. An interrupted transfer resumes
with an HTTP Range request (from zero when the server ignores Range). Every ``progress_every`` seconds the
log says the bytes received, the rate and the time left. A server answering ``text/html`` (a login portal
instead of the archive) is refused at once; what a file *contains* is checked by the caller
(:func:`tmf.data.sources.refuse_html`), once for downloaded and local files alike.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_RETRY_HTTP = (408, 429, 500, 502, 503, 504)
HTML_HELP = (
    "{what} is an HTML page, not an archive. MiniFrance and DFC2022 are published on IEEE DataPort, which needs "
    "a free login: download the archive by hand in a browser, then point the `data.url` parameter at the "
    "downloaded archive (or at the folder you extracted it to, or at a direct file:// / https:// URL of the archive)."
)


class DownloadError(ValueError):
    """A download that failed in a way the user must act on (the message says what)."""


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Logs ``received of total (pct), rate, time left`` at most every ``every`` seconds (and at the end)."""

    def __init__(self, what: str, every: float, start: int, total: int | None, clock=time.monotonic):
        self.what, self.every, self.total, self.clock = what, every, total, clock
        self.t0 = self.last = clock()
        self.start = self.received = start
        self.logged = -1  # bytes at the last line written

    def update(self, received: int, final: bool = False) -> None:
        self.received = received
        now = self.clock()
        if (not final and now - self.last < self.every) or received == self.logged:
            return
        self.last, self.logged = now, received
        rate = (received - self.start) / max(now - self.t0, 1e-9)
        if self.total:
            left = (self.total - received) / rate if rate > 0 else float("inf")
            eta = _duration(left) if left != float("inf") else "unknown"
            log.info("%s: %s of %s (%.1f %%), %s/s, %s left", self.what, _size(received), _size(self.total),
                     100.0 * received / self.total, _size(rate), eta)
        else:
            log.info("%s: %s (size unknown), %s/s", self.what, _size(received), _size(rate))


def download(url: str, dest: str | Path, retries: int = 3, timeout: float = 60.0,
             progress_every: float = 10.0) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part`` (HTTP Range).

    Retries a dropped connection ``retries`` times, resuming each time; raises DownloadError when it keeps
    failing (the ``.part`` is kept, so the next run resumes) or on an HTTP error the user must act on.
    Returns ``dest``. Whether the file is the right one (checksum, HTML content) is the caller's business.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        try:
            complete = _download_once(url, part, timeout, progress_every)
            err = None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code not in _RETRY_HTTP:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            complete, err = False, e
        if complete:
            break
        attempt += 1
        if attempt > retries:
            have = part.stat().st_size if part.exists() else 0
            raise DownloadError(f"{url}: transfer interrupted {attempt} times ({err or 'connection closed early'}); "
                                f"run again to resume from {part} ({have} bytes)")
        log.warning("transfer of %s interrupted (%s); resuming (attempt %d/%d)", url, err, attempt, retries)
        time.sleep(min(2.0**attempt * 0.1, 5.0))
    os.replace(part, dest)
    return dest


def _download_once(url: str, part: Path, timeout: float, progress_every: float) -> bool:
    """One HTTP request appending to ``part``; True when the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "tmf-fetch/1", "Accept-Encoding": "identity"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https only, checked by caller)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part file is already complete
            return True
        raise
    with resp:
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if "text/html" in ctype:
            raise DownloadError(HTML_HELP.format(what=f"{url} (Content-Type {ctype})"))
        status = getattr(resp, "status", 200)
        if have and status == 206:
            crange = resp.headers.get("Content-Range", "")
            if _range_start(crange) != have:
                raise DownloadError(f"{url}: server answered Range bytes={have}- with {crange!r}")
            mode, total = "ab", _range_total(crange)
        else:  # a fresh start, or a server that ignores Range: start over
            if have:
                log.warning("%s ignores HTTP Range; restarting the download from zero", url)
            mode, have = "wb", 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        received = have
        progress = Progress(url, progress_every, have, total)
        with open(part, mode) as f:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except Exception:  # http.client.IncompleteRead & co: keep what arrived, resume later
                    f.flush()
                    progress.update(received, final=True)
                    return False
                if not block:
                    break
                f.write(block)
                received += len(block)
                progress.update(received)
        progress.update(received, final=True)
    return total is None or received >= total


def _range_start(crange: str) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(crange.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _range_total(crange: str) -> int | None:
    try:
        total = crange.rsplit("/", 1)[1]
        return int(total) if total != "*" else None
    except (IndexError, ValueError):
        return None
