"""Safe extraction of data archives (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz): standard library only.

A data archive of MiniFrance / DFC2022 holds folders and regular files, nothing else. So extraction writes
exactly those, member by member, with our own code on every Python version (no ``extractall``, no reliance
on tarfile's PEP 706 filters, which Python < 3.11.4 lacks): a symbolic link, hard link, device or FIFO member
is refused by name. Refusing links rather than resolving them is the decision that makes the member check
complete: with no link ever written, a member's final path is its lexical path (checked to stay inside the
target, and checked again against the target's real path before each write), whatever the order of the
members or the version of Python (a chain ``l1 → .``, ``l1/l2 → ..`` plus a member written through it is
refused at ``l1``). A user whose archive does contain links extracts it with their own tools and points
``data.url`` at the folder.

Limits on the total size and the number of members (generous defaults; :class:`ArchiveLimitError` names the
parameter) stop archive bombs; a truncated or corrupt archive (short gzip stream, zip CRC error) raises
:class:`CorruptArchiveError` naming the archive and the member. On any error the target folder is removed:
extraction never leaves a half-written tree behind.

This module imports nothing outside the standard library, so the extraction tests also run under an
interpreter without the project's packages (Debian's Python 3.11.2, see tests/test_archive.py).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
DEFAULT_MAX_BYTES = 2 * 10**12  # 2 TB: the full MiniFrance stored without compression is under 1 TB
DEFAULT_MAX_MEMBERS = 1_000_000  # DFC2022's three archives hold about 15,000 files
_CHUNK = 1 << 20
_LIMIT_PARAMS = {"bytes": "data.extract.max_gb", "members": "data.extract.max_members"}
# what a broken compressed stream raises from inside tarfile / zipfile
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error)
try:  # not built into every Python
    import lzma

    _CORRUPT += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass


class ArchiveError(ValueError):
    """An archive that cannot be extracted as it is; the message names the archive (and the member)."""


class UnsafeArchiveError(ArchiveError):
    """A member that could write outside the target folder, or that is not a file or a folder."""


class CorruptArchiveError(ArchiveError):
    """A truncated or damaged archive (or one in a format this Python cannot read)."""


class ArchiveLimitError(ArchiveError):
    """An archive larger than the extraction limits (total bytes, number of members)."""


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def member_path(name: str, archive: Path | str) -> PurePosixPath:
    """The relative path a member name stands for (``.`` for the archive's own top folder, as in ``./``);
    refuses absolute paths, drive letters and ``..``."""
    norm = name.replace("\\", "/")  # zips written on Windows
    p = PurePosixPath(norm)
    if "\x00" in name or not name:
        raise UnsafeArchiveError(f"{archive}: unsafe member {name!r} (empty or invalid name); refusing to extract")
    if p.is_absolute() or (len(norm) > 1 and norm[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: unsafe member {name!r} (absolute path); refusing to extract")
    if ".." in p.parts:
        raise UnsafeArchiveError(f"{archive}: unsafe member {name!r} (escapes the target folder with '..'); "
                                 "refusing to extract")
    return p


def _refuse(archive: Path, name: str, what: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: unsafe member {name!r} ({what}); data archives hold only files and folders, so links and "
        "special files are refused. If the archive is yours, extract it with your own tools and point `data.url` "
        "at the extracted folder")


class _Writer:
    """Writes members under ``target`` and keeps the limits; never follows or creates a link."""

    def __init__(self, archive: Path, target: Path, max_bytes: int, max_members: int):
        self.archive, self.target = archive, target
        self.real_target = os.path.realpath(target)
        self.max_bytes, self.max_members = max_bytes, max_members
        self.n_bytes = self.n_members = 0
        self.member = ""  # the member being written, for error messages

    def _limit(self, kind: str, value: int, limit: int) -> ArchiveLimitError:
        shown = f"{value / 1e9:.3g} GB" if kind == "bytes" else f"{value} members"
        cap = f"{limit / 1e9:.3g} GB" if kind == "bytes" else f"{limit} members"
        return ArchiveLimitError(f"{self.archive}: more than {cap} to extract (at least {shown}); raise "
                                 f"`{_LIMIT_PARAMS[kind]}` if the archive is genuine")

    def count(self, size: int = 0) -> None:
        self.n_members += 1
        if self.n_members > self.max_members:
            raise self._limit("members", self.n_members, self.max_members)
        if self.n_bytes + size > self.max_bytes:
            raise self._limit("bytes", self.n_bytes + size, self.max_bytes)

    def _dest(self, rel: PurePosixPath, name: str) -> Path:
        dest = self.target.joinpath(*rel.parts)
        real_parent = os.path.realpath(dest.parent)
        if real_parent != self.real_target and not real_parent.startswith(self.real_target + os.sep):
            raise UnsafeArchiveError(f"{self.archive}: unsafe member {name!r} (resolves outside the target "
                                     "folder); refusing to extract")
        return dest

    def mkdir(self, rel: PurePosixPath, name: str) -> None:
        if rel.parts:  # "./" is the target itself
            self.target.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
            self._dest(rel, name)

    def write(self, rel: PurePosixPath, name: str, stream) -> None:
        if not rel.parts:
            raise UnsafeArchiveError(f"{self.archive}: unsafe member {name!r} (a file without a name); "
                                     "refusing to extract")
        self.target.joinpath(*rel.parent.parts).mkdir(parents=True, exist_ok=True)
        dest = self._dest(rel, name)
        try:
            f = open(dest, "xb")  # noqa: SIM115 ("x": a member given twice is an error, never an overwrite)
        except FileExistsError:
            raise ArchiveError(f"{self.archive}: member {name!r} appears twice; refusing to extract") from None
        with f:
            while True:
                block = stream.read(_CHUNK)
                if not block:
                    break
                self.n_bytes += len(block)
                if self.n_bytes > self.max_bytes:
                    raise self._limit("bytes", self.n_bytes, self.max_bytes)
                f.write(block)


def safe_extract(archive: str | Path, target: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_members: int = DEFAULT_MAX_MEMBERS, fmt: str | None = None) -> Path:
    """Extract ``archive`` into the new folder ``target`` (which must not exist yet) and return it.

    Only folders and regular files are written; links, devices and FIFOs are refused by name, as are absolute
    paths and ``..``. More than ``max_bytes`` bytes or ``max_members`` members raise ArchiveLimitError; a
    truncated or corrupt archive raises CorruptArchiveError. On any error ``target`` is removed. ``fmt``
    (``zip`` | ``tar``) overrides the format the file name says (a download whose URL has no suffix).
    """
    archive, target = Path(archive), Path(target)
    fmt = fmt or ("zip" if archive.name.lower().endswith(".zip") else "tar" if is_archive(archive.name) else None)
    if fmt not in ("zip", "tar"):
        raise ArchiveError(f"{archive}: not an archive (expected {', '.join(ARCHIVE_SUFFIXES)})")
    if target.exists() or target.is_symlink():
        raise ArchiveError(f"{target}: extraction folder exists already; remove it first")
    target.mkdir(parents=True)
    writer = _Writer(archive, target, max_bytes, max_members)
    try:
        (_extract_zip if fmt == "zip" else _extract_tar)(archive, writer)
    except ArchiveError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    except _CORRUPT as e:
        shutil.rmtree(target, ignore_errors=True)
        where = f" at member {writer.member!r}" if writer.member else ""
        raise CorruptArchiveError(f"{archive}: truncated or corrupt archive{where} ({type(e).__name__}: {e}); "
                                  "download it again (or check its checksum)") from None
    except NotImplementedError as e:  # e.g. Deflate64, which Windows writes for large files
        shutil.rmtree(target, ignore_errors=True)
        raise CorruptArchiveError(f"{archive}: member {writer.member!r} uses a compression Python cannot read ({e}); "
                                  "extract it with another tool and point `data.url` at the folder") from None
    except RuntimeError as e:  # zipfile: encrypted member
        shutil.rmtree(target, ignore_errors=True)
        raise ArchiveError(f"{archive}: member {writer.member!r} cannot be read ({e})") from None
    except OSError as e:  # disk full, a member whose parent is a file, ...
        shutil.rmtree(target, ignore_errors=True)
        raise ArchiveError(f"{archive}: cannot write member {writer.member!r} under {target} ({e})") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _extract_zip(archive: Path, writer: _Writer) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise CorruptArchiveError(f"{archive}: not a valid zip archive ({e}); download it again") from None
    with zf:
        infos = zf.infolist()
        declared = sum(i.file_size for i in infos)
        if declared > writer.max_bytes:
            raise writer._limit("bytes", declared, writer.max_bytes)
        if len(infos) > writer.max_members:
            raise writer._limit("members", len(infos), writer.max_members)
        free = shutil.disk_usage(writer.target).free
        if declared > free:
            raise ArchiveError(f"{archive}: needs {declared / 1e9:.3g} GB, only {free / 1e9:.3g} GB free under "
                               f"{writer.target}")
        for info in infos:
            writer.member = info.filename
            rel = member_path(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse(archive, info.filename, "symbolic link")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise _refuse(archive, info.filename, "special file")
            writer.count(info.file_size)
            if info.is_dir():
                writer.mkdir(rel, info.filename)
            else:
                with zf.open(info) as stream:
                    writer.write(rel, info.filename, stream)


def _extract_tar(archive: Path, writer: _Writer) -> None:
    """One streaming pass over the tar (a .tar.gz is decompressed once, not once to list and once to write)."""
    try:
        tf = tarfile.open(archive)
    except _CORRUPT as e:
        raise CorruptArchiveError(f"{archive}: not a valid tar archive ({type(e).__name__}: {e}); "
                                  "download it again") from None
    with tf:
        for m in tf:
            writer.member = m.name
            rel = member_path(m.name, archive)
            if m.issym():
                raise _refuse(archive, m.name, f"symbolic link to {m.linkname!r}")
            if m.islnk():
                raise _refuse(archive, m.name, f"hard link to {m.linkname!r}")
            if not (m.isreg() or m.isdir()):
                raise _refuse(archive, m.name, "device, FIFO or other special file")
            writer.count(m.size if m.isreg() else 0)
            if m.isdir():
                writer.mkdir(rel, m.name)
            else:
                writer.write(rel, m.name, tf.extractfile(m))
