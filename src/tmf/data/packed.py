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

Elevation (DFC2022's RGEALTI, the embedded data's synthetic DEM) is another modality: when the manifest has the
elevation columns (:data:`tmf.data.elevation.DEM_COLUMNS`: the crop, ``has_dem``, min / mean / max in metres and
the valid share), ``tmf pack`` also writes the arrays of ``DEM_ARRAYS`` (``dem`` float32 ``(N, S, S)`` metres on the
sub-tile's grid, 0 where not valid; ``dem_valid`` uint8 0/1), and :func:`open_packed` checks them (the valid share
of the checked rows against ``dem_valid``) and hands them out as ``packed.dem`` / ``packed.dem_valid``. A manifest
without those columns (MiniFrance, ``data.dem: none``) is the RGB-only data product, exactly as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tmf.data.elevation import DEM_COLUMNS
from tmf.data.minifrance import N_CLASSES, SPLITS

COUNT_COLUMNS = [f"count_{i}" for i in range(N_CLASSES)]
MANIFEST_COLUMNS = ["id", "city", "split", "tile", "row_off", "col_off", "height", "width", "image", "label",
                    "has_label", *COUNT_COLUMNS]
_TEXT_COLUMNS = {"id": str, "city": str, "split": str, "tile": str, "image": str, "label": str, "dem": str}
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
DEM_ARRAYS: tuple[Array, ...] = (
    Array("dem", np.float32, None, "elevation (m) on the sub-tile's grid, masked bilinear; 0 where not valid"),
    Array("dem_valid", np.uint8, None, "1 where the elevation is valid"),
)
DEM_ARRAY_NAMES = tuple(a.name for a in DEM_ARRAYS)


def has_dem_columns(frame: pd.DataFrame) -> bool:
    """Whether a manifest carries elevation (all of :data:`DEM_COLUMNS`)."""
    return all(c in frame.columns for c in DEM_COLUMNS)


def array_path(folder: str | Path, name: str) -> Path:
    """The file of packed array ``name`` in ``folder`` (``packed/<name>.npy``)."""
    return Path(folder) / f"{name}.npy"


def read_manifest(path: str | Path) -> pd.DataFrame:
    """``manifest.csv`` with its columns, cities (named) and splits checked (text columns as text, empty labels as
    "")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    frame = pd.read_csv(path, dtype=_TEXT_COLUMNS, keep_default_na=False,
                        na_values={c: [""] for c in ("dem_min", "dem_mean", "dem_max")})
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (docs/file-formats.md)")
    if (frame["city"] == "").any():  # a city folder that is not one of MiniFrance's 16 is a city of its own
        raise ValueError(f"{path}: row {int((frame['city'] == '').to_numpy().argmax())} has no city")
    partial = [c for c in DEM_COLUMNS if c not in frame.columns]
    if partial and len(partial) < len(DEM_COLUMNS):
        raise ValueError(f"{path}: elevation column(s) {partial} missing (a manifest has all of {DEM_COLUMNS} or "
                         "none; docs/file-formats.md)")
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
    def has_dem(self) -> bool:
        """Whether the data carries elevation (the manifest's elevation columns and the ``dem`` arrays)."""
        return "dem" in self.arrays

    @property
    def dem(self) -> np.ndarray:
        """float32 (N, S, S), metres, 0 where ``dem_valid`` is 0."""
        return self._dem_array("dem")

    @property
    def dem_valid(self) -> np.ndarray:
        """uint8 (N, S, S), 1 where the elevation is valid."""
        return self._dem_array("dem_valid")

    def _dem_array(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise ValueError(f"{self.manifest_path}: this tinyMiniFrance has no elevation (no RGEALTI DEM was "
                             "cropped: data.source without DEMs, or data.dem: none)")
        return self.arrays[name]

    def require_dem(self, what: str, rows: np.ndarray | None = None) -> None:
        """Raise a ParamsError naming ``what`` (the method or protocol that needs it) unless the data has
        elevation, for every row of ``rows`` when given."""
        from tmf.config import ParamsError

        if not self.has_dem:
            raise ParamsError(f"{what} needs elevation, but {self.manifest_path} has none (no RGEALTI DEM: "
                              "data.source minifrance, data.dem: none, or tiles without RGEALTI/<stem>_RGEALTI.tif)")
        if rows is not None:
            lacking = np.asarray(rows)[self.manifest["has_dem"].to_numpy()[np.asarray(rows)] == 0]
            if lacking.size:
                raise ParamsError(f"{what} needs elevation, but {lacking.size} of its sub-tiles have none (e.g. "
                                  f"{self.manifest['id'].iloc[int(lacking[0])]} of {self.manifest_path}: its tile "
                                  "has no RGEALTI DEM)")

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
        if packed.has_dem and abs(float(np.asarray(packed.dem_valid[i]).mean()) - float(frame["dem_valid"].iloc[i])) \
                > 1e-5:
            raise ValueError(f"{array_path(packed.folder, 'dem_valid')}: row {i} does not match row {i} "
                             f"({frame['id'].iloc[i]}) of {packed.manifest_path} (its valid share): the packed "
                             "arrays are not in manifest order (re-run tmf pack)")


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
    for spec in (*ARRAYS, *(DEM_ARRAYS if has_dem_columns(frame) else ())):
        size = int(next(iter(arrays.values())).shape[1]) if arrays else None
        arrays[spec.name] = _open_array(spec, folder, len(frame), size)
    out = Packed(frame, arrays, Path(manifest), folder)
    _check_row_order(out)
    return out


__all__ = ["ARRAYS", "ARRAY_NAMES", "COUNT_COLUMNS", "DEM_ARRAYS", "DEM_ARRAY_NAMES", "DEM_COLUMNS",
           "MANIFEST_COLUMNS", "Array", "Packed", "array_path", "has_dem_columns", "open_packed", "read_manifest"]
