"""tinyMiniFrance as one data product: ``manifest.csv`` and the packed arrays, opened and checked once, for every stage.

Files (docs/file-formats.md, "Data"): ``data/tinyminifrance/manifest.csv`` (one row per sub-tile, the columns of
``MANIFEST_COLUMNS``) and, in ``packed/``, one ``<name>.npy`` per entry of ``ARRAYS`` (``images`` uint8
``(N, S, S, 3)``, ``labels`` uint8 ``(N, S, S)``), rows in manifest order, written by ``tmf pack``.

:func:`open_packed` is the one reader (in the spirit of a TorchGeo dataset with one verification step): it reads
the manifest, memory-maps the arrays (a stage that needs a few rows reads only those) and checks, naming the
file: the manifest's columns, cities (any name: a city folder that is not one of MiniFrance's 16 is its own city)
and splits; each array's dtype, shape and row
count; and the row order, by comparing the label histograms of a few rows (first, last, evenly spaced) with the
manifest's ``count_*`` columns. Stages then take rows by split (:meth:`Packed.rows`) and arrays by name.

Another modality (e.g. an elevation raster) is one more :class:`Array` in ``ARRAYS``: ``tmf pack`` writes it,
:func:`open_packed` checks it and hands it out as ``packed.arrays[name]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tmf.data.minifrance import N_CLASSES, SPLITS

COUNT_COLUMNS = [f"count_{i}" for i in range(N_CLASSES)]
MANIFEST_COLUMNS = ["id", "city", "split", "tile", "row_off", "col_off", "height", "width", "image", "label",
                    "has_label", *COUNT_COLUMNS]
_TEXT_COLUMNS = {"id": str, "city": str, "split": str, "tile": str, "image": str, "label": str}
ORDER_CHECKED_ROWS = 8  # rows whose label histogram is compared with the manifest's counts


@dataclass(frozen=True)
class Array:
    """One packed array: ``<name>.npy`` in the packed folder, ``dtype``, shape ``(N, S, S)`` plus ``bands`` as a
    last axis when given, rows in manifest order."""

    name: str
    dtype: type
    bands: int | None
    what: str

    def shape(self, n: int, size: int) -> tuple[int, ...]:
        return (n, size, size) + ((self.bands,) if self.bands else ())

    def layout(self) -> str:
        return f"{np.dtype(self.dtype).name} (N, S, S{', ' + str(self.bands) if self.bands else ''})"


ARRAYS: tuple[Array, ...] = (
    Array("images", np.uint8, 3, "RGB sub-tiles"),
    Array("labels", np.uint8, None, "MiniFrance ids 0-15; 0 where a sub-tile has no label"),
)
ARRAY_NAMES = tuple(a.name for a in ARRAYS)


def array_path(folder: str | Path, name: str) -> Path:
    """The file of packed array ``name`` in ``folder`` (``packed/<name>.npy``)."""
    return Path(folder) / f"{name}.npy"


def read_manifest(path: str | Path) -> pd.DataFrame:
    """``manifest.csv`` with its columns, cities (named) and splits checked (text columns as text, empty labels as
    "")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    frame = pd.read_csv(path, dtype=_TEXT_COLUMNS, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (docs/file-formats.md)")
    if (frame["city"] == "").any():  # a city folder that is not one of MiniFrance's 16 is a city of its own
        raise ValueError(f"{path}: row {int((frame['city'] == '').to_numpy().argmax())} has no city")
    bad = sorted(set(frame["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{path}: unknown split(s) {bad}; expected {list(SPLITS)}")
    return frame


@dataclass(frozen=True)
class Packed:
    """The manifest and its memory-mapped arrays, rows aligned (see :func:`open_packed`)."""

    manifest: pd.DataFrame
    arrays: dict[str, np.ndarray]
    manifest_path: Path
    folder: Path

    @property
    def images(self) -> np.ndarray:
        """uint8 (N, S, S, 3)."""
        return self.arrays["images"]

    @property
    def labels(self) -> np.ndarray:
        """uint8 (N, S, S), MiniFrance ids."""
        return self.arrays["labels"]

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def rows(self, splits) -> np.ndarray:
        """Row numbers (manifest order = packed order) of the sub-tiles in ``splits``."""
        bad = sorted(set(splits) - set(SPLITS))
        if bad:
            raise ValueError(f"unknown split(s) {bad}; expected a subset of {list(SPLITS)}")
        rows = np.flatnonzero(self.manifest["split"].isin(list(splits)).to_numpy())
        if rows.size == 0:
            raise ValueError(f"{self.manifest_path}: no sub-tile is in the splits {list(splits)}")
        return rows

    def fingerprint(self, names=ARRAY_NAMES) -> str:
        """SHA-256 of the manifest's bytes and of the files of the arrays ``names``, streamed (about 1 GB/s:
        seconds for the real tinyMiniFrance). What a checkpoint records of the data it was trained on."""
        h = hashlib.sha256()
        for path in (self.manifest_path, *(array_path(self.folder, n) for n in names)):
            with open(path, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
        return h.hexdigest()


def _open_array(spec: Array, folder: Path, n: int, size: int | None) -> np.ndarray:
    """Memory-map one array and check its dtype and shape: ``n`` rows, square sub-tiles of ``size`` px (that of
    the first array when None)."""
    path = array_path(folder, spec.name)
    if not path.is_file():
        raise FileNotFoundError(f"packed array not found: {path} (written by tmf pack)")
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from None
    s = size if size is not None else (arr.shape[1] if arr.ndim > 1 else 0)
    if arr.dtype != spec.dtype or arr.shape[1:] != spec.shape(n, s)[1:]:
        raise ValueError(f"{path}: expected {spec.layout()} with S = {s}, got {arr.dtype} {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"{path}: {len(arr)} sub-tiles but the manifest has {n} rows")
    return arr


def _check_row_order(packed: Packed) -> None:
    """The label histograms of a few rows equal the manifest's counts (labels all 0 where ``has_label`` is 0)."""
    frame, labels = packed.manifest, packed.labels
    n = len(frame)
    has = frame["has_label"].astype(int).to_numpy()
    counts = frame[COUNT_COLUMNS].to_numpy(dtype=np.int64)
    for i in np.unique(np.linspace(0, n - 1, min(n, ORDER_CHECKED_ROWS)).round().astype(int)):
        row = np.asarray(labels[i])
        ok = np.array_equal(np.bincount(row.ravel(), minlength=N_CLASSES)[:N_CLASSES], counts[i]) if has[i] \
            else not row.any()
        if not ok:
            raise ValueError(f"{array_path(packed.folder, 'labels')}: row {i} does not match row {i} "
                             f"({frame['id'].iloc[i]}) of {packed.manifest_path}: the packed arrays are not in "
                             f"manifest order (re-run tmf pack)")


def open_packed(manifest: str | Path, packed: str | Path) -> Packed:
    """Open ``manifest.csv`` and the packed arrays (``packed``: the ``packed/`` folder, or a file in it such as
    ``images.npy``), check them once, and return them memory-mapped."""
    frame = read_manifest(manifest)
    if len(frame) == 0:
        raise ValueError(f"{manifest}: no sub-tile")
    folder = Path(packed)
    if folder.suffix == ".npy":
        folder = folder.parent
    arrays: dict[str, np.ndarray] = {}
    for spec in ARRAYS:
        size = int(next(iter(arrays.values())).shape[1]) if arrays else None
        arrays[spec.name] = _open_array(spec, folder, len(frame), size)
    out = Packed(frame, arrays, Path(manifest), folder)
    _check_row_order(out)
    return out


__all__ = ["ARRAYS", "ARRAY_NAMES", "COUNT_COLUMNS", "MANIFEST_COLUMNS", "Array", "Packed", "array_path",
           "open_packed", "read_manifest"]
