"""The public layout under ``data/raw/<source>``: where it starts inside an archive or a folder, how several
parts merge into it, and which part (archive member or user folder) each of its files came from.

Layout: ``<split>/<City>/BDORTHO/<stem>.tif`` (+ ``UrbanAtlas``, ``RGEALTI``), split folders as in
:data:`tmf.data.minifrance.SPLIT_FOLDERS`. Parts merge folder by folder: a folder that only one part has is
moved (extracted archive) or linked (user folder) as a whole; a folder several parts share is merged inside;
a file that two parts both hold is an error naming both. ``.fetched.json`` records the parts and where each
was placed, so that a later error about ``data/raw/...`` can name the file as the user gave it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tmf.data.minifrance import IMAGE_DIR, SPLIT_FOLDERS

PROVENANCE = ".fetched.json"


class LayoutError(ValueError):
    """Parts that do not merge into one layout (the same file twice)."""


def has_layout(d: Path) -> bool:
    """Whether ``d`` holds ``<split>/<any city>/BDORTHO`` for a known split folder name."""
    for split in SPLIT_FOLDERS:
        s = d / split
        if s.is_dir():
            try:
                if any((c / IMAGE_DIR).is_dir() for c in s.iterdir()):
                    return True
            except OSError:
                continue
    return False


def find_layout_root(folder: str | Path, max_depth: int = 4) -> Path:
    """The folder under ``folder`` (itself included, breadth first) that holds ``<split>/<City>/BDORTHO``."""
    folder = Path(folder)
    frontier = [folder]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            if has_layout(d):
                return d
            try:
                nxt.extend(sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink()
                                  and not p.name.startswith(".")))
            except OSError:
                continue
        frontier = nxt
    raise FileNotFoundError(f"{folder}: no MiniFrance layout found (expected <split>/<City>/{IMAGE_DIR}/*.tif with "
                            f"split one of {', '.join(SPLIT_FOLDERS)})")


class Merge:
    """Builds one layout in ``staging`` from several parts, then puts it in place under ``dest``."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.staging = dest / ".staging"
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self.parts: list[dict] = []
        self.placed: dict[str, int] = {}  # layout path (relative) -> index of the part placed there

    def add(self, layout: Path, part: dict, move: bool) -> None:
        """Merge ``layout``'s split folders; ``move`` (extracted archive) or link (a user's folder)."""
        k = len(self.parts)
        self.parts.append(part)
        for split in SPLIT_FOLDERS:
            src = layout / split
            if src.is_dir():
                self._merge(src, self.staging / split, split, k, move)

    def _merge(self, src: Path, dst: Path, rel: str, k: int, move: bool) -> None:
        if not os.path.lexists(dst):
            if move:
                os.replace(src, dst)
            else:
                dst.symlink_to(os.path.realpath(src), target_is_directory=src.is_dir())
            self.placed[rel] = k
            return
        if dst.is_dir() and src.is_dir():
            if dst.is_symlink():  # an earlier folder part was linked here whole: link its entries one by one
                target = Path(os.path.realpath(dst))
                dst.unlink()
                dst.mkdir()
                for c in sorted(target.iterdir()):
                    (dst / c.name).symlink_to(c, target_is_directory=c.is_dir())
            for child in sorted(src.iterdir()):
                self._merge(child, dst / child.name, f"{rel}/{child.name}", k, move)
            return
        what = "tile file" if src.is_file() else "path"
        raise LayoutError(f"{rel}: the same {what} comes from two parts of `data.url`: "
                          f"{_origin(self.parts, self.placed, rel)} and {_origin(self.parts, {rel: k}, rel)}; "
                          "remove one of them")

    def finish(self) -> None:
        """Replace the split folders of ``dest`` with the merged ones and record the parts."""
        for split in SPLIT_FOLDERS:
            old = self.dest / split
            if old.is_symlink() or old.is_file():
                old.unlink()
            elif old.exists():
                shutil.rmtree(old)
            new = self.staging / split
            if os.path.lexists(new):
                os.replace(new, old)
        shutil.rmtree(self.staging)
        tmp = self.dest / f"{PROVENANCE}.tmp"
        tmp.write_text(json.dumps({"parts": self.parts, "placed": self.placed}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.dest / PROVENANCE)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _origin(parts: list[dict], placed: dict[str, int], rel: str) -> str:
    """Where the layout path ``rel`` came from: ``member <path> of <archive>`` or the user's file path."""
    keys = [p for p in placed if rel == p or rel.startswith(p + "/")]
    if not keys:
        return ""
    part = parts[placed[max(keys, key=len)]]
    inner = f"{part['root']}/{rel}" if part["root"] else rel
    if part["kind"] == "archive":
        return f"member {inner} of {part['path']}"
    return str(Path(part["path"]) / inner)


def user_path(root: str | Path, path: str | Path) -> str:
    """``path`` (a file under the layout ``root``) as the user gave it, for error messages.

    ``data/raw/dfc2022/val/Rennes/BDORTHO/x.tif (member val/Rennes/BDORTHO/x.tif of /data/val.zip)`` for a
    fetched archive, ``... (/data/dfc/val/Rennes/BDORTHO/x.tif)`` for a linked folder, the path alone for data
    that was not fetched (the synthetic data).
    """
    root, path = Path(root), Path(path)
    try:
        rel = path.relative_to(root).as_posix()
        prov = json.loads((root / PROVENANCE).read_text())
        origin = _origin(prov["parts"], prov["placed"], rel)
    except (ValueError, OSError, KeyError, TypeError):
        origin = ""
    return f"{path} ({origin})" if origin else str(path)
