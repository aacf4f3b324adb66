"""Real data from ``data.url``: one or several parts (URLs, archives, folders), checked and merged into one
layout under ``data/raw/<source>`` (SPEC.md §1, §7).

MiniFrance and DFC2022 live on IEEE DataPort, which needs a (free) login: its pages cannot be downloaded by a
script, so a part is a *direct* http(s):// or file:// URL of an archive, a local archive, or a local folder
already in the public layout. Each part may carry a checksum (``md5:<hex>`` or ``sha256:<hex>``); a part whose
file name is one of the published DFC2022 archives (:data:`tmf.data.minifrance.PUBLISHED_CHECKSUMS`) is
checked against the published MD5 unless it has its own checksum. Per part: downloads resume (``.part`` file,
HTTP Range), HTML pages are refused with advice, archives are extracted safely (:mod:`tmf.data.archive`). The
parts merge into one layout (:class:`tmf.data.layout.Merge`; the same tile twice is an error); nothing of a
failed fetch is left in the layout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tmf.data.archive import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS, is_archive, safe_extract
from tmf.data.layout import Merge, find_layout_root
from tmf.data.minifrance import PUBLISHED_CHECKSUMS
from tmf.data.transfer import HTML_HELP, DownloadError, download

log = logging.getLogger(__name__)

_ALGOS = {"md5": 32, "sha256": 64}


@dataclass(frozen=True)
class Part:
    """One source of ``data.url``: where it is, and the checksum it must have ("" = none given)."""

    url: str
    checksum: str = ""

    @property
    def name(self) -> str:
        """File name of the archive (the last component of the URL or path)."""
        parsed = urllib.parse.urlparse(self.url)
        path = parsed.path if parsed.scheme.lower() in ("http", "https", "file") else self.url
        return Path(urllib.parse.unquote(path)).name


def parse_checksum(value: str, where: str = "data.url") -> tuple[str, str]:
    """``"md5:<hex>"`` / ``"sha256:<hex>"`` → (algorithm, lower-case hex digest)."""
    algo, _, digest = value.partition(":")
    algo, digest = algo.lower(), digest.lower()
    if algo not in _ALGOS or len(digest) != _ALGOS[algo] or any(c not in "0123456789abcdef" for c in digest):
        raise DownloadError(f"{where}: checksum {value!r} is not md5:<32 hex digits> or sha256:<64 hex digits>")
    return algo, digest


def parse_parts(url: str | dict | list) -> list[Part]:
    """The parts of ``data.url``: a string, a ``{url, checksum}`` mapping, or a list of either."""
    items = url if isinstance(url, list) else [url]
    parts = []
    for k, item in enumerate(items):
        where = f"data.url[{k}]" if isinstance(url, list) else "data.url"
        if isinstance(item, str):
            part = Part(item)
        elif isinstance(item, dict) and set(item) <= {"url", "checksum"} and isinstance(item.get("url"), str):
            part = Part(item["url"], item.get("checksum") or "")
        else:
            raise DownloadError(f"{where}: expected a URL / path or {{url: ..., checksum: md5:<hex>}}, got {item!r}")
        if not part.url:
            raise DownloadError(f"{where} is empty: set it to the URL, archive or folder of MiniFrance / DFC2022")
        if part.checksum:
            parse_checksum(part.checksum, where)
        parts.append(part)
    if not parts:
        raise DownloadError("data.url is an empty list: give at least one URL, archive or folder")
    return parts


def file_checksum(path: Path, algo: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algo).hexdigest()


def verify(path: Path, part: Part) -> str:
    """Check ``path`` against the part's checksum, or the published one for its file name; return the checksum
    used ("" when there is none). Raises DownloadError on a mismatch."""
    given = part.checksum
    checksum = given or PUBLISHED_CHECKSUMS.get(part.name, "")
    if not checksum:
        return ""
    algo, want = parse_checksum(checksum)
    got = file_checksum(path, algo)
    if got != want:
        if given:
            why = "check the checksum given in `data.url`, or the file is corrupt"
        else:
            why = (f"{want} is the published MD5 of {part.name}: the file is corrupt or not the published release "
                   f"(if you repacked it, give its own checksum: {{url: {part.url}, checksum: {algo}:{got}}})")
        raise DownloadError(f"{path}: {algo.upper()} mismatch: expected {want}, got {got} ({why})")
    log.info("%s: %s checksum %s verified%s", path, algo.upper(), want, "" if given else " (published)")
    return f"{algo}:{want}"


def refuse_html(path: Path, what: str) -> None:
    """The one content sniff: an HTML page (a login portal saved instead of the archive) is refused."""
    with open(path, "rb") as f:
        head = f.read(1024).lstrip(b" \t\r\n\xef\xbb\xbf")[:512].lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise DownloadError(HTML_HELP.format(what=what))


def archive_format(path: Path) -> str:
    """``zip`` or ``tar`` from the first bytes (for a download whose URL has no archive suffix)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or (len(head) >= 262 and head[257:262] == b"ustar"):
        return "tar"
    raise DownloadError(f"{path}: neither a zip nor a tar archive")


def fetch(url: str | dict | list, dest_dir: str | Path, download_dir: str | Path | None = None, *,
          max_bytes: int = DEFAULT_MAX_BYTES, max_members: int = DEFAULT_MAX_MEMBERS,
          progress_every: float = 10.0) -> Path:
    """Bring the parts of ``url`` (see :func:`parse_parts`) into ``dest_dir`` as one layout; return ``dest_dir``.

    A remote part is downloaded (with resume) into ``download_dir`` (default ``dest_dir/.download``; put it
    outside a folder that a workflow manager deletes on failure, so a new attempt resumes) and removed once the
    whole fetch succeeded; a local archive is extracted, not consumed; a local folder is linked, not copied.
    Afterwards ``dest_dir/<split>/<City>/BDORTHO/...`` holds the merged layout and ``dest_dir/.fetched.json``
    the parts and where each was placed. On any error the layout under ``dest_dir`` is left as it was.
    """
    parts = parse_parts(url)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(download_dir) if download_dir else dest_dir / ".download"
    remote_names = [p.name for p in parts if urllib.parse.urlparse(p.url).scheme.lower() in ("http", "https")]
    merge = Merge(dest_dir)
    downloads: list[Path] = []
    try:
        for k, part in enumerate(parts):
            t0 = time.perf_counter()
            what = f"data.url part {k + 1}/{len(parts)} ({part.url})"
            local, downloaded = _local_copy(part, k, cache, remote_names, progress_every)
            if downloaded:
                downloads.append(local)
            info = {"url": part.url, "path": os.path.realpath(local), "checksum": ""}
            if local.is_dir():
                if part.checksum:
                    raise DownloadError(f"{what}: a checksum applies to an archive, not to the folder {local}")
                layout = find_layout_root(local)
                info.update(kind="folder", root=_rel(layout, local))
                merge.add(layout, info, move=False)
            else:
                info.update(kind="archive", checksum=_check_file(local, part, downloaded, what))
                fmt = None if is_archive(local.name) else archive_format(local)
                extract = dest_dir / ".extract" / str(k)
                if extract.exists():
                    shutil.rmtree(extract)
                safe_extract(local, extract, max_bytes=max_bytes, max_members=max_members, fmt=fmt)
                layout = find_layout_root(extract)
                info["root"] = _rel(layout, extract)
                merge.add(layout, info, move=True)
                shutil.rmtree(extract)
            log.info("%s: merged in %.1f s", what, time.perf_counter() - t0)
        merge.finish()
    except BaseException:
        merge.abort()
        raise
    finally:
        shutil.rmtree(dest_dir / ".extract", ignore_errors=True)
    for d in downloads:
        d.unlink(missing_ok=True)
    return dest_dir


def _rel(layout: Path, top: Path) -> str:
    rel = layout.relative_to(top).as_posix()
    return "" if rel == "." else rel


def _local_copy(part: Part, k: int, cache: Path, remote_names: list[str],
                progress_every: float) -> tuple[Path, bool]:
    """The part as a local file or folder: (path, whether this fetch downloaded it)."""
    parsed = urllib.parse.urlparse(part.url)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        name = part.name or "download"
        if remote_names.count(part.name) > 1:  # two URLs ending in the same file name
            name = f"{k}-{name}"
        dest = cache / name
        if dest.exists() and part.checksum:
            try:
                verify(dest, part)
            except DownloadError:  # a stale or corrupt earlier download: fetch it again
                dest.unlink()
        if not dest.exists():
            download(part.url, dest, progress_every=progress_every)
        return dest, True
    if scheme == "file":
        local = Path(urllib.request.url2pathname(parsed.path))
    elif scheme == "" or (len(scheme) == 1 and part.url[1:2] == ":"):
        local = Path(part.url).expanduser()
    else:
        raise DownloadError(f"{part.url}: unsupported URL scheme {scheme!r} (use http, https, file or a path)")
    if not local.exists():
        raise FileNotFoundError(f"data source not found: {local} (from `data.url`)")
    return local, False


def _check_file(local: Path, part: Part, downloaded: bool, what: str) -> str:
    """HTML refusal and checksum of an archive part; a bad download is deleted, never resumed nor used."""
    try:
        refuse_html(local, what)
        return verify(local, part)
    except DownloadError:
        if downloaded:
            local.unlink(missing_ok=True)
        raise
