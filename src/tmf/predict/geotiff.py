"""One predicted map as a GeoTIFF on its input tile's exact grid, read and written window by window (rasterio).

The map (docs/file-formats.md): one band of uint8 MiniFrance class ids, the input's CRS, transform and shape
(a tile without georeference, DFC2022's test partition, gets none: it is predicted on its pixel grid), tiled
256 × 256, DEFLATE-compressed, the MiniFrance colours as its colour table, 0 ("no information", the file's
no-data value) where the image has no data (its GDAL mask: a no-data value, an alpha band or a mask band).
Rows are written one block row at a time as :func:`tmf.predict.window.predict_tile` finishes them, so each
compressed block is written once, and the file appears only when complete (``tmf.io.atomic_path``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tmf.data.checks import open_raster
from tmf.data.minifrance import N_CLASSES, colour_table
from tmf.io import atomic_path
from tmf.predict.window import TileStats, predict_tile

log = logging.getLogger(__name__)

BLOCK = 256  # GeoTIFF tile side of the maps
NO_DATA = 0  # MiniFrance "no information"


class _BlockRows:
    """Finished rows of the map, written to ``dst`` a block row at a time; counts the class ids."""

    def __init__(self, dst, src, block: int):
        self.dst, self.src, self.block = dst, src, block
        self.width = dst.width
        self.pending: list[np.ndarray] = []
        self.start = 0  # first row not yet written
        self.buffered = 0
        self.counts = np.zeros(N_CLASSES, dtype=np.int64)
        # read the image's mask only where it can say something (an all-valid mask is not read)
        self.masked = not all("all_valid" in [f.name for f in flags] for flags in src.mask_flag_enums[:3])

    def __call__(self, row0: int, ids: np.ndarray) -> None:
        if row0 != self.start + self.buffered:
            raise ValueError(f"rows {row0}.. handed out of order (expected {self.start + self.buffered})")
        self.pending.append(ids)
        self.buffered += ids.shape[0]
        while self.buffered >= self.block:
            self._flush(self.block)

    def close(self) -> None:
        if self.buffered:
            self._flush(self.buffered)
        if self.start != self.dst.height:
            raise ValueError(f"{self.start} of {self.dst.height} rows written")

    def _flush(self, n: int) -> None:
        from rasterio.windows import Window

        rows = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        out, rest = rows[:n], rows[n:]
        win = Window(0, self.start, self.width, n)
        if self.masked:
            mask = self.src.dataset_mask(window=win)
            out = np.where(mask == 0, np.uint8(NO_DATA), out)
        self.counts += np.bincount(out.ravel(), minlength=N_CLASSES)[:N_CLASSES]
        self.dst.write(out, 1, window=win)
        self.pending = [rest] if len(rest) else []
        self.buffered -= n
        self.start += n


def map_profile(src) -> dict[str, Any]:
    """The map's creation options: one uint8 band on ``src``'s grid (CRS and transform only when it has them)."""
    profile: dict[str, Any] = {"driver": "GTiff", "height": src.height, "width": src.width, "count": 1,
                               "dtype": "uint8", "nodata": NO_DATA, "tiled": True, "blockxsize": BLOCK,
                               "blockysize": BLOCK, "compress": "deflate", "predictor": 2}
    if src.crs is not None:
        profile["crs"] = src.crs
    if not src.transform.is_identity:
        profile["transform"] = src.transform
    return profile


def predict_geotiff(image: str | Path, out: str | Path, predictor, *, window: int, overlap: int, batch: int,
                    tags: dict[str, str] | None = None, name: str | None = None) -> tuple[TileStats, np.ndarray]:
    """Predict the map of one image tile into ``out``. ``predictor``: a :class:`tmf.evaluate.saved_model.Predictor`
    (or anything with ``__call__``, ``class_ids`` and ``device``). Returns the tile's :class:`TileStats` and the
    map's pixels per id 0–15. ``name``: the image as the user knows it (in errors)."""
    import rasterio
    from rasterio.windows import Window

    name = name or str(image)
    with open_raster(Path(image), name) as src:
        if src.count < 3:
            raise ValueError(f"{name}: {src.count} band(s); the model reads RGB (3 bands)")
        if src.dtypes[0] != "uint8":
            raise ValueError(f"{name}: dtype {src.dtypes[0]}; the model reads uint8 RGB")
        if src.count > 3:
            log.warning("%s: %d bands, bands 1-3 read as RGB", name, src.count)

        def read_rows(r0: int, r1: int) -> np.ndarray:
            return src.read((1, 2, 3), window=Window(0, r0, src.width, r1 - r0))

        with atomic_path(out, suffix=".tif") as tmp:
            with warnings.catch_warnings():  # a map without georeference, as its image
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                dst = rasterio.open(tmp, "w", **map_profile(src))
            with dst:
                dst.write_colormap(1, {i: (*map(int, rgb), 255) for i, rgb in enumerate(colour_table())})
                dst.set_band_description(1, "MiniFrance class id (0: no information)")
                dst.update_tags(**(tags or {}))
                rows = _BlockRows(dst, src, BLOCK)
                stats = predict_tile(read_rows, rows, src.height, src.width, predictor, predictor.class_ids,
                                     window=window, overlap=overlap, batch=batch, device=predictor.device)
                rows.close()
    return stats, rows.counts
