"""Self-test of the headless-Chromium site checker (tests/browser.py) on a tiny handmade site."""

from __future__ import annotations

import base64
import random
import struct
import time
import zlib
from pathlib import Path

import pytest
from browser import CHROMIUM_MISSING, check_site, require_chromium


def png_bytes(width: int = 2, height: int = 2, noise_seed: int | None = None) -> bytes:
    """A valid RGB PNG written by hand (PNG spec: signature, IHDR, IDAT of zlib'd filtered rows, IEND): red pixels,
    or seeded random pixels (incompressible, so the file is about 3 bytes per pixel) when ``noise_seed`` is given."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rng = random.Random(noise_seed)
    rows = b"".join(b"\x00" + (rng.randbytes(3 * width) if noise_seed is not None else bytes([255, 0, 0] * width))
                    for _ in range(height))  # filter 0
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{body}</body></html>"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    reports = tmp_path / "reports"
    (reports / "notebooks" / "img").mkdir(parents=True)
    (reports / "notebooks" / "img" / "ok.png").write_bytes(png_bytes())
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes(3, 1)).decode()
    (reports / "index.html").write_text(page("Report", (
        "<a href='notebooks/good.html'>good</a> <a href='notebooks/bad.html#top'>bad</a> "
        "<a href='notebooks/good.html?x=1'>good again</a> <a href='notebooks/absent.html'>absent</a> "
        "<a href='notebooks/img/ok.png'>not a page</a> <a href='https://example.org/x.html'>outside</a>")))
    (reports / "notebooks" / "good.html").write_text(page("Good", (
        f"<img src='img/ok.png'><img alt='inline' src='{data_uri}'>"
        "<div style='height:5000px'></div><img loading='lazy' src='img/ok.png'>")))
    (reports / "notebooks" / "bad.html").write_text(page("Bad", (
        "<img src='img/../img/ok.png'><img src='missing.png'><img src='data:image/png;base64,AAAA'>")))
    return tmp_path


def test_check_site_finds_broken_images_and_missing_pages(site: Path) -> None:
    require_chromium()
    result = check_site(site, timeout=60)
    pages = result["pages"]
    assert set(pages) == {"reports/index.html", "reports/notebooks/good.html", "reports/notebooks/bad.html",
                          "reports/notebooks/absent.html"}
    assert result["links"] == ["reports/notebooks/good.html", "reports/notebooks/bad.html",
                               "reports/notebooks/absent.html"]

    index = pages["reports/index.html"]
    assert index["ok"] and index["status"] == 200 and index["title"] == "Report"
    assert index["images"] == 0 and index["broken"] == []

    good = pages["reports/notebooks/good.html"]
    assert good["ok"] and good["title"] == "Good"
    assert good["images"] == 3 and good["broken"] == []  # file PNG, data-URI PNG, lazy PNG far below the fold

    bad = pages["reports/notebooks/bad.html"]
    assert bad["ok"] and bad["title"] == "Bad" and bad["images"] == 3
    assert bad["broken"] == ["missing.png", "data:image/png;base64,AAAA"]

    absent = pages["reports/notebooks/absent.html"]
    assert absent["ok"] is False and absent["status"] == 404 and absent["broken"] == []


def test_notebook_like_pages_with_big_data_uris_and_blocked_scripts(tmp_path: Path) -> None:
    """Regression: nbconvert pages (scripts from a CDN that cannot load offline, MB of base64 figures) once made the
    checker return nothing, because Chromium's virtual-time budget ran out while the images decoded."""
    require_chromium()
    notebooks = tmp_path / "reports" / "notebooks"
    notebooks.mkdir(parents=True)
    head = ("<script src='https://cdn.invalid/require.min.js'></script>"
            "<script src='https://cdn.invalid/mathjax/latest.js?config=TeX-AMS_CHTML-full'></script>")
    links = []
    for n in range(3):
        figures = "".join(
            f"<img src='data:image/png;base64,{base64.b64encode(png_bytes(400, 300, noise_seed=10 * n + k)).decode()}'>"
            for k in range(8))
        if n == 2:
            figures += "<img src='figure_not_written.png'>"
        (notebooks / f"nb{n}.html").write_text(page(f"Notebook {n}", head + figures))
        links.append(f"<a href='notebooks/nb{n}.html'>nb{n}</a>")
    (tmp_path / "reports" / "index.html").write_text(page("Report", "".join(links)))
    start = time.monotonic()
    result = check_site(tmp_path, timeout=60)
    assert time.monotonic() - start < 60
    assert result["links"] == [f"reports/notebooks/nb{n}.html" for n in range(3)]
    for n in range(3):
        rec = result["pages"][f"reports/notebooks/nb{n}.html"]
        assert rec["ok"] and rec["title"] == f"Notebook {n}"
        assert rec["images"] == (9 if n == 2 else 8)
        assert rec["broken"] == (["figure_not_written.png"] if n == 2 else [])


def test_missing_index_is_not_ok(tmp_path: Path) -> None:
    require_chromium()
    result = check_site(tmp_path, index="reports/index.html", timeout=30)
    assert result["pages"] == {"reports/index.html": {"ok": False, "status": 404, "title": None, "images": 0,
                                                      "broken": []}}
    assert result["links"] == []


def test_require_chromium_skips_or_fails_by_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import browser

    monkeypatch.setattr(browser, "chromium_path", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"Chromium not installed \(apt-get install chromium\)"):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_chromium()
    assert "apt-get install chromium" in CHROMIUM_MISSING


def test_bad_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        check_site(tmp_path / "nope")


def test_hung_page_times_out_and_chromium_is_killed(tmp_path: Path) -> None:
    require_chromium()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "index.html").write_text(page("Hang", "<script>while (true) {}</script>"))
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="within 4 s"):
        check_site(tmp_path, timeout=4)
    assert time.monotonic() - start < 15


def test_screenshot_of_a_page_and_its_console_errors(site: Path, tmp_path: Path) -> None:
    from browser import screenshot

    require_chromium()
    from PIL import Image

    (site / "reports" / "broken.html").write_text(page("Broken", "<h1>Hello</h1><script>undefinedCall();</script>"))
    good = screenshot(site, "reports/notebooks/good.html", tmp_path / "good.png", width=640, height=480)
    assert good["console"] == [] and Image.open(good["png"]).size == (640, 480)
    bad = screenshot(site, "reports/broken.html", tmp_path / "bad.png", width=640, height=480)
    assert len(bad["console"]) == 1 and "undefinedCall is not defined" in bad["console"][0], bad
    with pytest.raises(FileNotFoundError, match="nope.html"):
        screenshot(site, "reports/nope.html", tmp_path / "nope.png")
