"""Safe extraction (tmf.data.archive): links and special members refused, nothing ever lands outside the
target, limits, truncated and corrupt archives; the target is removed on every error.

Standard library only (unittest, no numpy, no pytest), so that besides pytest under the project's Python the
same tests also run under Debian's /usr/bin/python3.11 (3.11.2, no PEP 706 tarfile filters):
``test_under_system_python`` runs this file there in a subprocess, with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
import zipfile
from pathlib import Path
from unittest import mock

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from tmf.data import archive  # noqa: E402
from tmf.data.archive import (  # noqa: E402
    ArchiveError,
    ArchiveLimitError,
    CorruptArchiveError,
    UnsafeArchiveError,
    safe_extract,
)

SYSTEM_PYTHON = "/usr/bin/python3.11"
FILES = {
    "MiniFrance/labeled/Nice/BDORTHO/06-2014-1040-6300-LA93-0M50-E080.tif": b"I" * 3000,
    "MiniFrance/labeled/Nice/UrbanAtlas/06-2014-1040-6300-LA93-0M50-E080_UA2012.tif": b"L" * 1000,
    "MiniFrance/test/Cherbourg/BDORTHO/50-2012-0365-6965-LA93-0M50-E080.tif": bytes(range(256)) * 20,
}


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link_member(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = target
    return m, b""


def zip_bytes(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symlink whose target is the member's content
            zf.writestr(info, target)
    return buf.getvalue()


# the chain of issue 12: l1 -> ., l1/l2 -> .., l1/l2/x -> .., then a file written through it: on Python < 3.11.4
# a lexical check passes it and the file lands two levels above the target
SYMLINK_CHAIN = [link_member("l1", "."), link_member("l1/l2", ".."), link_member("l1/l2/x", ".."),
                 file_member("l1/l2/x/escaped.txt", b"pwned")]


class Extraction(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)
        self.box = self.tmp / "a" / "b"  # the target's parents: where an escape would land
        self.box.mkdir(parents=True)
        self.target = self.box / "out"

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, name: str, data: bytes) -> Path:
        p = self.tmp / "archives" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        return p

    def assert_nothing_outside(self):
        found = sorted(p.relative_to(self.tmp).as_posix() for p in self.tmp.rglob("*")
                       if p.relative_to(self.tmp).parts[0] != "archives")
        self.assertEqual(found, ["a", "a/b"], "extraction wrote outside its target or left its target behind")

    def refused(self, arc: Path, error=UnsafeArchiveError, pattern: str = "", **kw):
        with self.assertRaisesRegex(error, pattern):
            safe_extract(arc, self.target, **kw)
        self.assert_nothing_outside()

    def test_good_archives_extract(self):
        for name, data in [("mf.zip", zip_bytes(FILES)),
                           ("mf.tar.gz", tar_bytes([file_member(n, d) for n, d in FILES.items()], "w:gz"))]:
            arc = self.write(name, data)
            out = safe_extract(arc, self.tmp / name.replace(".", "_"))
            for n, d in FILES.items():
                self.assertEqual((out / n).read_bytes(), d)

    def test_tar_of_a_folder_with_dot_entries(self):
        """``tar -C dir -czf x.tgz .`` writes ``./`` and ``./MiniFrance/...`` members."""
        members = [(tarfile.TarInfo("./"), b""), *[file_member(f"./{n}", d) for n, d in FILES.items()]]
        members[0][0].type = tarfile.DIRTYPE
        out = safe_extract(self.write("dot.tgz", tar_bytes(members, "w:gz")), self.target)
        for n, d in FILES.items():
            self.assertEqual((out / n).read_bytes(), d)
        archive.shutil.rmtree(out)
        self.refused(self.write("dotfile.tar", tar_bytes([file_member(".", b"x")])), pattern="without a name")

    def test_symlink_chain_escapes_a_plain_extractall(self):
        """The fixture is a real escape: tarfile without filters (Python < 3.11.4, or filter="fully_trusted")
        writes ``escaped.txt`` two levels above the target."""
        arc = self.write("chain.tar", tar_bytes(SYMLINK_CHAIN))
        with tarfile.open(arc) as tf:
            kw = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(self.target, **kw)
        self.assertEqual((self.tmp / "a" / "escaped.txt").read_bytes(), b"pwned")

    def test_symlink_chain_refused_without_stdlib_filter(self):
        """The chain is refused at its first link whether or not tarfile has PEP 706 filters: extraction never
        calls extractall, so the filters cannot be what stops it (removed here; absent on 3.11.2)."""
        arc = self.write("chain.tar", tar_bytes(SYMLINK_CHAIN))

        def no_extractall(*a, **k):
            raise AssertionError("safe_extract must not rely on TarFile.extractall")

        saved = {n: getattr(tarfile, n) for n in ("data_filter", "FilterError") if hasattr(tarfile, n)}
        for n in saved:
            delattr(tarfile, n)
        try:
            with mock.patch.object(tarfile.TarFile, "extractall", no_extractall):
                self.refused(arc, pattern=r"unsafe member 'l1' \(symbolic link")
        finally:
            for n, v in saved.items():
                setattr(tarfile, n, v)

    def test_links_and_special_members_refused_by_name(self):
        fifo = tarfile.TarInfo("MiniFrance/fifo")
        fifo.type = tarfile.FIFOTYPE
        dev = tarfile.TarInfo("MiniFrance/dev")
        dev.type = tarfile.CHRTYPE
        cases = [
            (link_member("MiniFrance/link", "/etc/passwd"), "symbolic link"),
            (link_member("MiniFrance/link", "../../outside"), "symbolic link"),
            (link_member("MiniFrance/inside", "labeled"), "symbolic link"),  # even one pointing inside
            (link_member("MiniFrance/hard", "MiniFrance/labeled/a.tif", tarfile.LNKTYPE), "hard link"),
            (link_member("MiniFrance/hard", "../outside", tarfile.LNKTYPE), "hard link"),
            ((fifo, b""), "special file"),
            ((dev, b""), "special file"),
            (file_member("../evil.txt"), r"'\.\.'"),
            (file_member("MiniFrance/../../evil.txt"), r"'\.\.'"),
            (file_member("/tmp/evil.txt"), "absolute"),
        ]
        for member, why in cases:
            with self.subTest(member=member[0].name, why=why):
                arc = self.write("bad.tar", tar_bytes([file_member("MiniFrance/labeled/a.tif"), member]))
                self.refused(arc, pattern=f"unsafe member '{member[0].name}'.*{why}")

    def test_unsafe_zip_members_refused(self):
        ok = {"MiniFrance/labeled/Nice/BDORTHO/a.tif": b"x"}
        for files, links, name in [({**ok, "../evil.txt": b"pwned"}, {}, r"\.\./evil\.txt"),
                                   ({**ok, "..\\evil.txt": b"pwned"}, {}, r"\.\.\\\\evil\.txt"),
                                   ({**ok, "C:/evil.txt": b"pwned"}, {}, "C:/evil.txt"),
                                   (ok, {"MiniFrance/link": "../../../etc/passwd"}, "MiniFrance/link")]:
            with self.subTest(name=name):
                self.refused(self.write("bad.zip", zip_bytes(files, links)), pattern=f"unsafe member '{name}'")

    def test_member_given_twice_is_an_error(self):
        arc = self.write("dup.tar", tar_bytes([file_member("a/x.tif", b"1"), file_member("a/x.tif", b"2")]))
        self.refused(arc, ArchiveError, "'a/x.tif' appears twice")

    def test_limits_name_the_parameter(self):
        many = {f"MiniFrance/f{i}.tif": b"x" * 100 for i in range(20)}
        for name, data in [("many.zip", zip_bytes(many)),
                           ("many.tar.gz", tar_bytes([file_member(n, d) for n, d in many.items()], "w:gz"))]:
            arc = self.write(name, data)
            with self.subTest(archive=name):
                self.refused(arc, ArchiveLimitError, "data.extract.max_members", max_members=10)
                self.refused(arc, ArchiveLimitError, "data.extract.max_gb", max_bytes=1000)
                self.assertTrue(safe_extract(arc, self.target, max_members=20, max_bytes=2000).is_dir())
                archive.shutil.rmtree(self.target)

    def test_truncated_and_corrupt_archives_are_named_errors(self):
        full = tar_bytes([file_member(n, os.urandom(20000)) for n in FILES], "w:gz")
        self.refused(self.write("cut.tar.gz", full[: len(full) // 2]), CorruptArchiveError,
                     r"cut\.tar\.gz: truncated or corrupt archive")
        plain = tar_bytes([file_member(n, os.urandom(20000)) for n in FILES])
        self.refused(self.write("cut.tar", plain[:30000]), CorruptArchiveError, "truncated or corrupt")
        z = bytearray(zip_bytes({n: os.urandom(5000) for n in FILES}))
        z[200] ^= 0xFF  # inside the first member's compressed data: a CRC (or deflate) error on reading
        self.refused(self.write("crc.zip", bytes(z)), CorruptArchiveError,
                     r"crc\.zip: truncated or corrupt archive at member 'MiniFrance/labeled/Nice")
        self.refused(self.write("cut.zip", bytes(z[:100])), CorruptArchiveError, "not a valid zip")
        self.refused(self.write("junk.tar.gz", b"\x1f\x8b" + b"\x00" * 50), CorruptArchiveError, "junk")
        self.refused(self.write("notes.txt", b"hello"), ArchiveError, "not an archive")

    def test_existing_target_is_not_reused(self):
        arc = self.write("mf.zip", zip_bytes(FILES))
        self.target.mkdir()
        with self.assertRaisesRegex(ArchiveError, "exists already"):
            safe_extract(arc, self.target)


class SystemPython(unittest.TestCase):
    @unittest.skipIf(not os.path.exists(SYSTEM_PYTHON) or os.path.realpath(sys.executable)
                     == os.path.realpath(SYSTEM_PYTHON), f"no separate {SYSTEM_PYTHON} on this machine")
    def test_under_system_python(self):
        """Debian 12's Python (3.11.2: no tarfile.data_filter) runs this file's extraction tests too."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin"), "PYTHONPATH": str(SRC), "LC_ALL": "C.UTF-8"}
        code = ("import sys, tarfile; print(sys.version.split()[0], 'data_filter:', hasattr(tarfile, 'data_filter'),"
                " file=sys.stderr)")
        proc = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, env=env, check=True)
        version = proc.stderr.split()[0]
        proc = subprocess.run([SYSTEM_PYTHON, "-m", "unittest", "-v", "test_archive.Extraction"],
                              cwd=Path(__file__).parent, capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr[-4000:])
        n_here = unittest.defaultTestLoader.loadTestsFromTestCase(Extraction).countTestCases()
        self.assertIn(f"Ran {n_here} tests", proc.stderr)
        print(f"{SYSTEM_PYTHON} {version}: {n_here} extraction tests passed", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
