"""Fetching real data (tmf.data.download) against a local HTTP server on 127.0.0.1: resume, Range ignored,
checksums, HTML refusal, unsafe archives, file:// URLs, local folders and archives. No network."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import pytest

from tmf.data.download import DownloadError, fetch, find_layout_root, safe_extract

FILES = {
    "MiniFrance/labeled/Nice/BDORTHO/06-2014-1040-6300-LA93-0M50-E080.tif": b"I" * 3000,
    "MiniFrance/labeled/Nice/UrbanAtlas/06-2014-1040-6300-LA93-0M50-E080_UA2012.tif": b"L" * 1000,
    "MiniFrance/test/Cherbourg/BDORTHO/50-2012-0365-6965-LA93-0M50-E080.tif": bytes(range(256)) * 20,
}


def _targz(files=FILES) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(files=FILES) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        cfg = self.server.cfg
        cfg["log"].append(self.headers.get("Range"))
        if self.path not in cfg["files"]:
            self.send_error(404)
            return
        data, ctype = cfg["files"][self.path]
        start = 0
        rng = self.headers.get("Range")
        if rng and cfg["range"]:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cfg["drops"] > 0:  # send part of the body, then drop the connection
            cfg["drops"] -= 1
            self.wfile.write(body[: cfg["drop_after"]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.cfg = {"files": {}, "range": True, "drops": 0, "drop_after": 0, "log": []}
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _check_layout(dest):
    assert (dest / "labeled" / "Nice" / "BDORTHO" / "06-2014-1040-6300-LA93-0M50-E080.tif").read_bytes() == b"I" * 3000
    assert (dest / "test" / "Cherbourg" / "BDORTHO").is_dir()
    assert not (dest / ".extract").exists()


def test_download_resumes_after_interrupted_transfer(server, tmp_path):
    srv, base = server
    data = _targz()
    srv.cfg["files"]["/mf.tar.gz"] = (data, "application/gzip")
    srv.cfg.update(drops=2, drop_after=len(data) // 3)
    dest = fetch(f"{base}/mf.tar.gz", tmp_path / "raw", sha256=_sha(data))
    _check_layout(dest)
    third = len(data) // 3
    assert srv.cfg["log"] == [None, f"bytes={third}-", f"bytes={2 * third}-"]


def test_download_resumes_an_existing_part_file(server, tmp_path):
    srv, base = server
    data = _zip()
    srv.cfg["files"]["/mf.zip"] = (data, "application/zip")
    part = tmp_path / "raw" / ".download" / "mf.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:500])
    dest = fetch(f"{base}/mf.zip", tmp_path / "raw", sha256=_sha(data))
    _check_layout(dest)
    assert srv.cfg["log"] == ["bytes=500-"]
    assert not part.exists() and not (tmp_path / "raw" / ".download" / "mf.zip").exists()
    # a download folder outside the destination (survives a workflow deleting a failed job's output)
    cache = tmp_path / "cache" / "mf.zip.part"
    cache.parent.mkdir()
    cache.write_bytes(data[:700])
    _check_layout(fetch(f"{base}/mf.zip", tmp_path / "raw2", sha256=_sha(data), download_dir=tmp_path / "cache"))
    assert srv.cfg["log"][-1] == "bytes=700-" and not cache.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    srv, base = server
    data = _targz()
    srv.cfg["files"]["/mf.tar.gz"] = (data, "application/octet-stream")
    srv.cfg["range"] = False
    part = tmp_path / "raw" / ".download" / "mf.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage" * 50)  # would corrupt the file if appended to
    dest = fetch(f"{base}/mf.tar.gz", tmp_path / "raw", sha256=_sha(data))
    _check_layout(dest)
    assert srv.cfg["log"] == ["bytes=350-"]


def test_checksum_mismatch_is_refused_and_the_file_never_used(server, tmp_path):
    srv, base = server
    data = _targz()
    srv.cfg["files"]["/mf.tar.gz"] = (data, "application/gzip")
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch(f"{base}/mf.tar.gz", tmp_path / "raw", sha256="0" * 64)
    assert not (tmp_path / "raw" / "labeled").exists()
    assert not list((tmp_path / "raw" / ".download").iterdir())  # neither the file nor its .part is kept


def test_html_page_refused_with_advice(server, tmp_path):
    srv, base = server
    page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
    srv.cfg["files"]["/open-access/minifrance"] = (page, "text/html; charset=utf-8")
    srv.cfg["files"]["/sneaky.zip"] = (b"\n  " + page, "application/octet-stream")  # sniffed from content
    for path in ("/open-access/minifrance", "/sneaky.zip"):
        with pytest.raises(DownloadError, match=r"IEEE DataPort.*login.*data\.url"):
            fetch(base + path, tmp_path / "raw")
    assert not (tmp_path / "raw" / ".download" / "sneaky.zip.part").exists()
    local = tmp_path / "saved.html"
    local.write_bytes(page)
    with pytest.raises(DownloadError, match="IEEE DataPort"):
        fetch(str(local), tmp_path / "raw2")


def test_file_url_local_archive_and_local_folder(tmp_path):
    arc = tmp_path / "mf.tar.gz"
    arc.write_bytes(_targz())
    _check_layout(fetch(arc.as_uri(), tmp_path / "a", sha256=_sha(arc.read_bytes())))
    assert arc.exists()  # a local archive is extracted, not consumed
    z = tmp_path / "mf.zip"
    z.write_bytes(_zip())
    _check_layout(fetch(str(z), tmp_path / "b"))
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch(str(z), tmp_path / "c", sha256="f" * 64)
    # a folder already in the layout: its split folders are linked, not copied
    folder = tmp_path / "b"
    dest = fetch(str(folder), tmp_path / "d")
    _check_layout(dest)
    assert (dest / "labeled").is_symlink()
    with pytest.raises(FileNotFoundError, match="no MiniFrance layout"):
        fetch(str(tmp_path / "a" / "labeled" / "Nice"), tmp_path / "e")
    with pytest.raises(FileNotFoundError):
        fetch(str(tmp_path / "missing.zip"), tmp_path / "f")


def test_find_layout_root_inside_top_folder(tmp_path):
    (tmp_path / "x" / "MiniFrance" / "val" / "Rennes" / "BDORTHO").mkdir(parents=True)
    assert find_layout_root(tmp_path) == tmp_path / "x" / "MiniFrance"


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ok = tarfile.TarInfo("MiniFrance/labeled/Nice/BDORTHO/a.tif")
        ok.size = 1
        tf.addfile(ok, io.BytesIO(b"x"))
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _link(name, target, kind=tarfile.SYMTYPE):
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = target
    return m


@pytest.mark.parametrize("member,why", [
    (tarfile.TarInfo("../evil.txt"), r"\.\."),
    (tarfile.TarInfo("MiniFrance/../../evil.txt"), r"\.\."),
    (tarfile.TarInfo("/tmp/evil.txt"), "absolute"),
    (_link("MiniFrance/link", "/etc/passwd"), "symlink"),
    (_link("MiniFrance/link", "../../outside"), "symlink"),
    (_link("MiniFrance/hard", "../outside", tarfile.LNKTYPE), r"\.\.|hard link"),
])
def test_unsafe_tar_members_refused_by_name(tmp_path, member, why):
    name = member.name
    arc = tmp_path / "bad.tar"
    arc.write_bytes(_tar_with(member, b"pwned" if member.isfile() else b""))
    with pytest.raises(DownloadError, match=f"unsafe member '{name}'.*{why}|{why}.*{name}"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(DownloadError, match="unsafe member"):
        fetch(str(arc), tmp_path / "raw")


def test_tar_extraction_without_stdlib_filters(tmp_path, monkeypatch):
    """Python < 3.11.4 has no tarfile extraction filters (PEP 706): a good archive still extracts and a bad
    member is still refused by name, by our own checks."""
    real = tarfile.TarFile.extractall

    def extractall_before_pep706(self, path=".", members=None, *, numeric_owner=False):
        return real(self, path, members, numeric_owner=numeric_owner)

    for name in ("data_filter", "FilterError"):
        monkeypatch.delattr(tarfile, name, raising=False)
    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall_before_pep706)
    arc = tmp_path / "mf.tar.gz"
    arc.write_bytes(_targz())
    _check_layout(fetch(str(arc), tmp_path / "a"))
    bad = tmp_path / "bad.tar"
    bad.write_bytes(_tar_with(_link("MiniFrance/link", "../../outside")))
    with pytest.raises(DownloadError, match="unsafe member 'MiniFrance/link'.*symlink"):
        safe_extract(bad, tmp_path / "out")


def test_unsafe_zip_members_refused_by_name(tmp_path):
    arc = tmp_path / "bad.zip"
    arc.write_bytes(_zip({"MiniFrance/labeled/Nice/BDORTHO/a.tif": b"x", "../evil.txt": b"pwned"}))
    with pytest.raises(DownloadError, match=r"unsafe member '\.\./evil\.txt'"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("MiniFrance/link")
        info.external_attr = 0o120777 << 16  # a symlink whose target is the member's content
        zf.writestr(info, "../../../etc/passwd")
    arc.write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="unsafe member 'MiniFrance/link'.*symlink"):
        safe_extract(arc, tmp_path / "out2")


def test_cli_fetch_errors(tmp_path, capsys):
    from tmf.cli import main

    assert main(["fetch", "--out", str(tmp_path / "raw"), "--cfg", '{"source": "synthetic"}']) == 2
    assert "tmf generate" in capsys.readouterr().err
    assert main(["fetch", "--out", str(tmp_path / "raw"), "--cfg", '{"source": "minifrance"}']) == 2
    assert "data.url" in capsys.readouterr().err
    arc = tmp_path / "mf.zip"
    arc.write_bytes(_zip())
    cfg = f'{{"source": "minifrance", "url": "{arc.as_uri()}", "sha256": "{_sha(arc.read_bytes())}"}}'
    assert main(["fetch", "--out", str(tmp_path / "raw"), "--cfg", cfg]) == 0
    _check_layout(tmp_path / "raw")
