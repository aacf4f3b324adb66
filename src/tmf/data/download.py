"""Real data: fetch MiniFrance / DFC2022 from a URL, an archive or a folder (SPEC.md §1).

MiniFrance lives on IEEE DataPort, which needs a (free) login: the portal's pages cannot be downloaded by a
script. :func:`fetch` therefore takes a *direct* URL (http, https, file://) of an archive, a local archive
(.zip, .tar, .tar.gz, .tgz) or a local folder already in the public layout, and leaves
``dest_dir/<split>/<City>/BDORTHO/...`` behind. Downloads resume (HTTP Range into a ``.part`` file), are
checked against a SHA-256 when one is given, and an HTML page is refused with a message explaining what to do.
Archives are extracted safely: a member that would land outside the target folder (absolute path, ``..``,
a link pointing outside) is refused by name. Standard library only (urllib, zipfile, tarfile).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tmf.data.minifrance import CITY_NAMES

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_SPLIT_NAMES = ("labeled", "unlabeled", "test", "labeled_train", "unlabeled_train", "val")
_HTML_HELP = (
    "{what} is an HTML page, not an archive. MiniFrance is published on IEEE DataPort, which needs a free "
    "login: download the archive by hand in a browser, then point the `data.url` parameter at the downloaded "
    "archive (or at the folder you extracted it to, or at a direct file:// / https:// URL of the archive)."
)


class DownloadError(ValueError):
    """A download that failed in a way the user must act on (message says what)."""


# ---------------------------------------------------------------------------------------------------------
# helpers


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _looks_like_html(head: bytes) -> bool:
    s = head.lstrip(b" \t\r\n\xef\xbb\xbf")[:512].lower()
    return s.startswith(b"<!doctype html") or s.startswith(b"<html")


def _is_archive(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


def _verify(path: Path, sha256: str, what: str) -> None:
    if not sha256:
        return
    got = sha256_of(path)
    if got.lower() != sha256.lower():
        raise DownloadError(f"{what}: SHA-256 mismatch: expected {sha256.lower()}, got {got} "
                            "(check `data.sha256`, or the file is corrupt)")


# ---------------------------------------------------------------------------------------------------------
# HTTP download with resume


def download(url: str, dest: str | Path, sha256: str = "", retries: int = 3, timeout: float = 60.0) -> Path:
    """Download ``url`` to the file ``dest`` through ``dest.part``, resuming a partial ``.part`` with an HTTP
    Range request (restarting from zero when the server ignores Range). Verifies ``sha256`` when given: on
    a mismatch the bad file is removed and a DownloadError raised; it is never renamed into place. Refuses
    HTML pages (a login portal instead of the archive)."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        try:
            _verify(dest, sha256, str(dest))
            return dest
        except DownloadError:
            dest.unlink()
    attempt = 0
    while True:
        try:
            complete = _download_once(url, part, timeout)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code not in (408, 429, 500, 502, 503, 504):
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            complete, err = False, e
        else:
            err = None
        if complete:
            break
        attempt += 1
        if attempt > retries:
            raise DownloadError(f"{url}: transfer interrupted {attempt} times ({err or 'connection closed early'}); "
                                f"run again to resume from {part} ({part.stat().st_size if part.exists() else 0} bytes)")
        log.warning("transfer of %s interrupted (%s); resuming (attempt %d/%d)", url, err, attempt, retries)
        time.sleep(min(2.0**attempt * 0.1, 5.0))
    try:
        _verify(part, sha256, url)
    except DownloadError:
        part.unlink(missing_ok=True)  # a corrupt file is never resumed nor used
        raise
    os.replace(part, dest)
    return dest


def _download_once(url: str, part: Path, timeout: float) -> bool:
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
            raise DownloadError(_HTML_HELP.format(what=f"{url} (Content-Type {ctype})"))
        status = getattr(resp, "status", 200)
        if have and status == 206:
            crange = resp.headers.get("Content-Range", "")
            start = _range_start(crange)
            if start != have:
                raise DownloadError(f"{url}: server answered Range bytes={have}- with {crange!r}")
            mode = "ab"
            expected_total = _range_total(crange)
        else:  # a fresh start, or a server that ignores Range: start over
            if have:
                log.warning("%s ignores HTTP Range; restarting the download from zero", url)
            mode, have = "wb", 0
            length = resp.headers.get("Content-Length")
            expected_total = int(length) if length and length.isdigit() else None
        received = have
        first = mode == "wb"
        with open(part, mode) as f:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except Exception:  # http.client.IncompleteRead & co: keep what arrived, resume later
                    f.flush()
                    return False
                if not block:
                    break
                if first:
                    if _looks_like_html(block[:1024]):
                        f.close()
                        part.unlink(missing_ok=True)
                        raise DownloadError(_HTML_HELP.format(what=url))
                    first = False
                f.write(block)
                received += len(block)
    if expected_total is not None and received < expected_total:
        return False
    return True


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


# ---------------------------------------------------------------------------------------------------------
# safe extraction


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive}: unsafe member {name!r} (absolute path); refusing to extract")
    if ".." in p.parts:
        raise DownloadError(f"{archive}: unsafe member {name!r} (escapes the target folder with '..'); "
                            "refusing to extract")
    return p


def _inside(target: Path, link_from: PurePosixPath, link_to: str) -> bool:
    """Whether a link at ``link_from`` (relative) pointing to ``link_to`` stays inside ``target``."""
    if link_to.startswith("/") or (len(link_to) > 1 and link_to[1] == ":"):
        return False
    root = os.path.normpath(str(target))
    resolved = os.path.normpath(os.path.join(root, str(link_from.parent), link_to))
    return resolved == root or resolved.startswith(root + os.sep)


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a .zip/.tar/.tar.gz/.tgz into ``target``, refusing (by name) any member that would escape it:
    absolute paths, ``..`` components, symbolic or hard links pointing outside, device files."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if name.endswith(".zip"):
        try:
            zf = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as e:
            raise DownloadError(f"{archive}: not a valid zip archive ({e})") from None
        with zf:
            for info in zf.infolist():
                p = _check_member_name(info.filename, archive)
                mode = info.external_attr >> 16
                if (mode & 0o170000) == 0o120000:  # symlink: its target is the member's content
                    link_to = zf.read(info).decode("utf-8", "replace")
                    if not _inside(target, p, link_to):
                        raise DownloadError(f"{archive}: unsafe member {info.filename!r} (symlink to {link_to!r} "
                                            "outside the target folder); refusing to extract")
            zf.extractall(target)
    elif name.endswith((".tar", ".tar.gz", ".tgz")):
        try:
            tf = tarfile.open(archive)
        except tarfile.TarError as e:
            raise DownloadError(f"{archive}: not a valid tar archive ({e})") from None
        with tf:
            members = tf.getmembers()
            for m in members:
                p = _check_member_name(m.name, archive)
                if m.issym() and not _inside(target, p, m.linkname):
                    raise DownloadError(f"{archive}: unsafe member {m.name!r} (symlink to {m.linkname!r} outside "
                                        "the target folder); refusing to extract")
                if m.islnk():
                    q = _check_member_name(m.linkname, archive)
                    if not _inside(target, PurePosixPath("x"), str(q)):
                        raise DownloadError(f"{archive}: unsafe member {m.name!r} (hard link to {m.linkname!r} "
                                            "outside the target folder); refusing to extract")
                if m.isdev():
                    raise DownloadError(f"{archive}: unsafe member {m.name!r} (device file); refusing to extract")
            if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4 (e.g. Debian 12's 3.11.2): no PEP 706
                tf.extractall(target, members=members)  # filters, so the checks above are the only ones
                return target
            try:
                tf.extractall(target, members=members, filter="data")
            except tarfile.FilterError as e:  # defence in depth: the stdlib's own checks
                raise DownloadError(f"{archive}: unsafe member ({e}); refusing to extract") from None
    else:
        raise DownloadError(f"{archive}: not an archive (expected {', '.join(_ARCHIVE_SUFFIXES)})")
    return target


# ---------------------------------------------------------------------------------------------------------
# finding the layout


def find_layout_root(folder: str | Path, max_depth: int = 4) -> Path:
    """The folder under ``folder`` (itself included) holding ``<split>/<City>/BDORTHO`` (breadth first)."""
    folder = Path(folder)
    frontier = [folder]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            if _has_layout(d):
                return d
            try:
                nxt.extend(sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink()
                                  and not p.name.startswith(".")))
            except OSError:
                continue
        frontier = nxt
    raise FileNotFoundError(f"{folder}: no MiniFrance layout found (expected <split>/<City>/BDORTHO/*.tif with "
                            f"split one of {', '.join(_SPLIT_NAMES)} and a MiniFrance city name)")


def _has_layout(d: Path) -> bool:
    for split in _SPLIT_NAMES:
        s = d / split
        if s.is_dir() and any((s / c / "BDORTHO").is_dir() for c in CITY_NAMES):
            return True
    return False


def _link_layout(layout: Path, dest_dir: Path) -> None:
    """Make ``dest_dir/<split>`` point at ``layout/<split>`` (symlinks; nothing copied)."""
    for s in _SPLIT_NAMES:
        src = layout / s
        if src.is_dir():
            link = dest_dir / s
            if link.is_symlink() or link.exists():
                if link.is_symlink() or link.is_file():
                    link.unlink()
                else:
                    shutil.rmtree(link)
            link.symlink_to(src.resolve(), target_is_directory=True)


def _move_layout(layout: Path, dest_dir: Path) -> None:
    for s in _SPLIT_NAMES:
        src = layout / s
        if src.is_dir():
            dst = dest_dir / s
            if dst.is_symlink() or dst.is_file():
                dst.unlink()
            elif dst.exists():
                shutil.rmtree(dst)
            os.replace(src, dst)


# ---------------------------------------------------------------------------------------------------------
# entry point


def fetch(url_or_path: str, dest_dir: str | Path, sha256: str = "", download_dir: str | Path | None = None) -> Path:
    """Bring real data into ``dest_dir`` and return the folder holding the public layout (``dest_dir``).

    ``url_or_path``: http(s):// URL of an archive (downloaded with resume into ``download_dir``, by default
    ``dest_dir/.download``; removed after extraction; put it outside a folder that a workflow manager deletes
    on failure to resume across attempts), file:// URL or local path of an archive (extracted in place of a download) or
    of a folder in the layout (linked, not copied). ``sha256`` checks the archive (not a folder).
    Afterwards ``dest_dir/<split>/<City>/BDORTHO/...`` exists and ``dest_dir/.fetched.json`` records the
    source.
    """
    if not url_or_path:
        raise DownloadError("no data source: set `data.url` to a URL, archive or folder of MiniFrance/DFC2022")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlparse(url_or_path)
    scheme = parsed.scheme.lower()
    downloaded = None
    if scheme in ("http", "https"):
        name = Path(urllib.parse.unquote(parsed.path)).name or "download"
        cache = Path(download_dir) if download_dir else dest_dir / ".download"
        downloaded = download(url_or_path, cache / name, sha256)
        with open(downloaded, "rb") as f:
            if _looks_like_html(f.read(1024)):
                downloaded.unlink()
                raise DownloadError(_HTML_HELP.format(what=url_or_path))
        local = downloaded
        if not _is_archive(name):
            local = _rename_by_magic(downloaded)
    elif scheme == "file":
        local = Path(urllib.request.url2pathname(parsed.path))
    elif scheme == "":
        local = Path(url_or_path).expanduser()
    else:
        raise DownloadError(f"{url_or_path}: unsupported URL scheme {scheme!r} (use http, https, file or a path)")

    if not local.exists():
        raise FileNotFoundError(f"data source not found: {local}")
    if local.is_dir():
        layout = find_layout_root(local)
        _link_layout(layout, dest_dir)
    else:
        if downloaded is None:
            with open(local, "rb") as f:
                if _looks_like_html(f.read(1024)):
                    raise DownloadError(_HTML_HELP.format(what=str(local)))
            _verify(local, sha256, str(local))
        extract_dir = dest_dir / ".extract"
        if extract_dir.exists():
            shutil.rmtree(extract_dir)
        safe_extract(local, extract_dir)
        layout = find_layout_root(extract_dir)
        _move_layout(layout, dest_dir)
        shutil.rmtree(extract_dir)
        if downloaded is not None:
            downloaded.unlink()
    (dest_dir / ".fetched.json").write_text(json.dumps({"source": url_or_path, "sha256": sha256.lower()},
                                                       sort_keys=True) + "\n")
    return dest_dir


def _rename_by_magic(path: Path) -> Path:
    """A download whose URL does not end in an archive suffix: name it after its content."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        suffix = ".zip"
    elif head.startswith(b"\x1f\x8b"):
        suffix = ".tar.gz"
    elif len(head) >= 262 and head[257:262] == b"ustar":
        suffix = ".tar"
    else:
        raise DownloadError(f"{path}: downloaded file is neither a zip nor a tar archive")
    new = path.with_name(path.name + suffix)
    os.replace(path, new)
    return new
