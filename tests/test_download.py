"""Fetching real data (tmf.data.sources, tmf.data.transfer) against a local HTTP server on 127.0.0.1: resume,
Range ignored, progress in the log, checksums (given, or published for DFC2022's archives), HTML refusal, unsafe
and corrupt archives, file:// URLs, local folders and archives, several parts merged into one layout. No
network. The extraction itself is tested in tests/test_archive.py."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import logging
import tarfile
import threading
import zipfile

import pytest
from public_releases import make_dfc2022_release

from tmf.config import ParamsError, validate
from tmf.data.archive import CorruptArchiveError, UnsafeArchiveError
from tmf.data.layout import LayoutError, find_layout_root, user_path
from tmf.data.sources import fetch
from tmf.data.transfer import DownloadError

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
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _part(url: str, data: bytes) -> dict:
    return {"url": url, "checksum": _sha(data)}


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
    dest = fetch(_part(f"{base}/mf.tar.gz", data), tmp_path / "raw")
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
    dest = fetch(_part(f"{base}/mf.zip", data), tmp_path / "raw")
    _check_layout(dest)
    assert srv.cfg["log"] == ["bytes=500-"]
    assert not part.exists() and not (tmp_path / "raw" / ".download" / "mf.zip").exists()
    # a download folder outside the destination (survives a workflow deleting a failed job's output)
    cache = tmp_path / "cache" / "mf.zip.part"
    cache.parent.mkdir()
    cache.write_bytes(data[:700])
    _check_layout(fetch(_part(f"{base}/mf.zip", data), tmp_path / "raw2", download_dir=tmp_path / "cache"))
    assert srv.cfg["log"][-1] == "bytes=700-" and not cache.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    srv, base = server
    data = _targz()
    srv.cfg["files"]["/mf.tar.gz"] = (data, "application/octet-stream")
    srv.cfg["range"] = False
    part = tmp_path / "raw" / ".download" / "mf.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage" * 50)  # would corrupt the file if appended to
    dest = fetch(_part(f"{base}/mf.tar.gz", data), tmp_path / "raw")
    _check_layout(dest)
    assert srv.cfg["log"] == ["bytes=350-"]


def test_checksum_mismatch_is_refused_and_the_file_never_used(server, tmp_path):
    srv, base = server
    data = _targz()
    srv.cfg["files"]["/mf.tar.gz"] = (data, "application/gzip")
    with pytest.raises(DownloadError, match="SHA256 mismatch"):
        fetch({"url": f"{base}/mf.tar.gz", "checksum": "sha256:" + "0" * 64}, tmp_path / "raw")
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
    _check_layout(fetch(_part(arc.as_uri(), arc.read_bytes()), tmp_path / "a"))
    assert arc.exists()  # a local archive is extracted, not consumed
    z = tmp_path / "mf.zip"
    z.write_bytes(_zip())
    _check_layout(fetch(str(z), tmp_path / "b"))
    with pytest.raises(DownloadError, match="SHA256 mismatch"):
        fetch({"url": str(z), "checksum": "sha256:" + "f" * 64}, tmp_path / "c")
    assert z.exists()  # the user's own file is never deleted
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        fetch({"url": str(z), "checksum": "md5:" + "0" * 32}, tmp_path / "c")
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


def test_unsafe_or_corrupt_archive_leaves_the_layout_as_it_was(tmp_path):
    """A bad part (unsafe member, truncated archive) stops the fetch with a named error; the layout of an
    earlier fetch stays untouched and no staging or extraction folder is left behind."""
    good = tmp_path / "mf.zip"
    good.write_bytes(_zip())
    raw = tmp_path / "raw"
    fetch(str(good), raw)
    before = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*"))
    bad = tmp_path / "bad.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("MiniFrance/labeled/l1")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        tf.addfile(link)
    bad.write_bytes(buf.getvalue())
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(_targz()[:200])
    for part, error in [(bad, UnsafeArchiveError), (cut, CorruptArchiveError)]:
        with pytest.raises(error, match=part.name):
            fetch([str(good), str(part)], raw)
        assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*")) == before


def test_cli_fetch_errors(tmp_path, capsys):
    from tmf.cli import main

    assert main(["fetch", "--out", str(tmp_path / "raw"), "--cfg", '{"source": "synthetic"}']) == 2
    assert "tmf generate" in capsys.readouterr().err
    assert main(["fetch", "--out", str(tmp_path / "raw"), "--cfg", '{"source": "minifrance"}']) == 2
    assert "data.url" in capsys.readouterr().err
    arc = tmp_path / "mf.zip"
    arc.write_bytes(_zip())
    cfg = json.dumps({"source": "minifrance", "url": [_part(arc.as_uri(), arc.read_bytes())]})
    assert main(["fetch", "--out", str(tmp_path / "raw"), "--cfg", cfg]) == 0
    _check_layout(tmp_path / "raw")
    cfg = json.dumps({"source": "minifrance", "url": str(arc), "extract": {"max_members": 2}})
    assert main(["fetch", "--out", str(tmp_path / "raw2"), "--cfg", cfg]) == 2
    assert "data.extract.max_members" in capsys.readouterr().err


# ---- several parts: the DFC2022 release as three archives ----


@pytest.fixture(scope="module")
def dfc(tmp_path_factory):
    return make_dfc2022_release(tmp_path_factory.mktemp("dfc"), seed=0, tiles_per_city=1)


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_three_archives_with_md5_merge_into_one_layout(dfc, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    raw = fetch(dfc.url(), tmp_path / "raw")
    assert [p for p in _files(raw) if not p.startswith(".")] == sorted(dfc.files)
    assert sorted(p.name for p in raw.iterdir()) == [".fetched.json", "labeled_train", "unlabeled_train", "val"]
    prov = json.loads((raw / ".fetched.json").read_text())
    assert [p["checksum"] for p in prov["parts"]] == [dfc.checksums[n] for n in dfc.archives]
    assert prov["placed"] == {"labeled_train": 0, "unlabeled_train": 1, "val": 2}
    assert sum("MD5 checksum" in r.message and "verified" in r.message for r in caplog.records) == 3
    # an error about a file of the layout names the archive member it came from
    img = raw / dfc.files[0]
    assert user_path(raw, img) == f"{img} (member {dfc.files[0]} of {dfc.archives['labeled_train.zip']})"


def test_published_md5_checked_when_the_name_matches(dfc, tmp_path, monkeypatch):
    """labeled_train.zip without a checksum is checked against DFC2022's published MD5: our fixture is not the
    release, so it is refused, with the published MD5 and the way to give the file's own checksum."""
    arc = str(dfc.archives["labeled_train.zip"])
    with pytest.raises(DownloadError, match=r"expected 2e87d6a218e466dd0566797d7298c7a9.*published MD5 of "
                                            r"labeled_train\.zip.*checksum: md5:"):
        fetch(arc, tmp_path / "a")
    assert not (tmp_path / "a" / "labeled_train").exists()
    import tmf.data.sources as sources

    monkeypatch.setitem(sources.PUBLISHED_CHECKSUMS, "labeled_train.zip", dfc.checksums["labeled_train.zip"])
    prov = json.loads((fetch(arc, tmp_path / "b") / ".fetched.json").read_text())
    assert prov["parts"][0]["checksum"] == dfc.checksums["labeled_train.zip"]


def test_same_tile_twice_is_a_named_error(dfc, tmp_path):
    with pytest.raises(LayoutError, match=r"val/Angers/BDORTHO/.*\.tif: the same tile file comes from two parts.*"
                                          r"member val/Angers/.* of .*val\.zip and .*val/Angers/BDORTHO"):
        fetch([dfc.url(["val.zip"])[0], str(dfc.folder)], tmp_path / "raw")
    assert not (tmp_path / "raw" / "val").exists() and not (tmp_path / "raw" / ".staging").exists()
    with pytest.raises(LayoutError, match="two parts"):
        fetch([dfc.url(["val.zip"])[0], dfc.url(["val.zip"])[0]], tmp_path / "raw")


def test_folder_and_archive_parts_merge_inside_a_shared_split(dfc, tmp_path):
    """A folder linked whole, then an archive with the same split folder: the folder's split is turned into a
    folder of links, the archive's cities are moved in beside them."""
    mine = tmp_path / "mine" / "val"
    (mine / "Paris" / "BDORTHO").mkdir(parents=True)
    (mine / "Paris" / "BDORTHO" / "75-2020-0650-6860-LA93-0M50-E080.tif").write_bytes(b"x")
    raw = fetch([str(tmp_path / "mine"), dfc.url(["val.zip"])[0]], tmp_path / "raw")
    assert (raw / "val" / "Paris").is_symlink() and not (raw / "val").is_symlink()
    assert (raw / "val" / "Angers" / "BDORTHO").is_dir() and not (raw / "val" / "Angers").is_symlink()
    prov = json.loads((raw / ".fetched.json").read_text())
    assert prov["placed"]["val"] == 0 and prov["placed"]["val/Angers"] == 1
    paris = raw / "val" / "Paris" / "BDORTHO" / "75-2020-0650-6860-LA93-0M50-E080.tif"
    assert user_path(raw, paris).endswith(f"({mine / 'Paris' / 'BDORTHO' / paris.name})")
    with pytest.raises(DownloadError, match="checksum applies to an archive"):
        fetch({"url": str(tmp_path / "mine"), "checksum": "md5:" + "0" * 32}, tmp_path / "raw2")


def test_download_progress_in_the_log(server, tmp_path, caplog):
    srv, base = server
    data = _zip()
    srv.cfg["files"]["/mf.zip"] = (data, "application/zip")
    caplog.set_level(logging.INFO, logger="tmf.data.transfer")
    import tmf.data.transfer as transfer

    transfer.download(f"{base}/mf.zip", tmp_path / "mf.zip", progress_every=3600)
    lines = [r.message for r in caplog.records if r.name == "tmf.data.transfer"]
    assert len(lines) == 1 and lines[0].startswith(f"{base}/mf.zip: 9.6 KiB of 9.6 KiB (100.0 %), ")  # the end
    # at the interval: bytes, rate and time left (a clock we drive)
    caplog.clear()
    now = [0.0]
    p = transfer.Progress("x.zip", 30.0, start=0, total=100 * 2**20, clock=lambda: now[0])
    for t, mib in [(10, 10), (29, 20), (30, 30), (50, 40), (60, 60)]:
        now[0] = t
        p.update(mib * 2**20)
    assert [r.message for r in caplog.records] == [
        "x.zip: 30.0 MiB of 100.0 MiB (30.0 %), 1.0 MiB/s, 1m10s left",
        "x.zip: 60.0 MiB of 100.0 MiB (60.0 %), 1.0 MiB/s, 0m40s left"]


def test_url_forms_in_the_schema():
    ok = [["a.zip", {"url": "b.zip", "checksum": "md5:" + "a" * 32}], {"url": "https://x/y.zip"},
          "c.tar.gz", [{"url": "d.zip", "checksum": "sha256:" + "F" * 64}]]
    for url in ok:
        assert validate({"data": {"source": "dfc2022", "url": url}})["data"]["url"] == url
    for bad in [[{"url": "a.zip", "checksum": "md5:123"}], [{"url": "a.zip", "sha": "x"}], [], [""],
                {"checksum": "md5:" + "a" * 32}]:
        with pytest.raises(ParamsError, match="data.url"):
            validate({"data": {"source": "dfc2022", "url": bad}})
    d = validate({})["data"]
    assert d["missing_label"] == "error" and d["extract"] == {"max_gb": 2000, "max_members": 1000000}


def test_url_without_archive_suffix_is_read_by_its_content(server, tmp_path):
    srv, base = server
    srv.cfg["files"]["/record/12345/files"] = (_targz(), "application/octet-stream")
    srv.cfg["files"]["/record/67890/files"] = (b"just some bytes, no archive", "application/octet-stream")
    _check_layout(fetch(f"{base}/record/12345/files", tmp_path / "raw"))
    with pytest.raises(DownloadError, match="neither a zip nor a tar archive"):
        fetch(f"{base}/record/67890/files", tmp_path / "raw2")
