"""Elevation under a sub-tile: the tile's RGEALTI DEM (DFC2022; 1 m, float32, −99999 no-data) resampled onto the
sub-tile's 0.5 m image grid, and the statistics ``manifest.csv`` records of it.

TorchGeo's ``DFC2022`` reads the whole DEM resampled bilinearly to the image's shape (``out_shape``), no-data
included. We resample bilinearly too, but (1) by georeference: an image pixel centre goes through the image's
geotransform and the inverse of the DEM's (for DFC2022's test partition, which has none, through the ratio of the
two pixel grids, as TorchGeo does), so a sub-tile window reads only the DEM pixels under it (a windowed read);
(2) masked: −99999 is never averaged in. The value×validity and the validity are resampled separately with the
same bilinear weights (``scipy.ndimage.map_coordinates``, order 1, border pixels repeated) and divided, so a pixel
is the weighted mean of its valid neighbours only; it is valid when at least half of its bilinear weight falls
on valid DEM pixels (:data:`MIN_VALID_WEIGHT`), else no-data.
"""

from __future__ import annotations

import math

import numpy as np

from tmf.data.minifrance import DEM_NODATA

DEM_COLUMNS = ["dem", "has_dem", "dem_min", "dem_mean", "dem_max", "dem_valid"]
MIN_VALID_WEIGHT = 0.5


def image_to_dem(image, dem):
    """The affine map from image pixel coordinates (col, row) to DEM pixel coordinates of two open rasterio
    datasets: through the geotransforms when the image is georeferenced, else by the ratio of their sizes."""
    from affine import Affine

    if image.crs is None:
        return Affine.scale(dem.width / image.width, dem.height / image.height)
    return ~dem.transform @ image.transform


def masked_bilinear(values: np.ndarray, valid: np.ndarray, rows: np.ndarray, cols: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of ``values`` at fractional pixel-centre coordinates (``rows``, ``cols``: 0 is the centre
    of the first pixel) from the ``valid`` pixels only: Σ w·v·valid / Σ w·valid, border pixels repeated outside.
    Returns (float32 values, 0 where not valid; bool validity, Σ w·valid ≥ :data:`MIN_VALID_WEIGHT`)."""
    from scipy.ndimage import map_coordinates

    ok = valid.astype(np.float64)
    coords = np.stack([rows, cols])
    num = map_coordinates(np.where(valid, values, 0.0).astype(np.float64), coords, order=1, mode="nearest")
    den = map_coordinates(ok, coords, order=1, mode="nearest")
    good = den >= MIN_VALID_WEIGHT
    out = np.where(good, num / np.where(good, den, 1.0), 0.0).astype(np.float32)
    return out, good


def dem_under(image, dem, row_off: int, col_off: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The elevation (float32 (height, width), 0 where not valid) and its validity (bool) of the window of the
    open ``image`` at (row_off, col_off), resampled from the open ``dem`` (one float32 band; −99999, a declared
    no-data value and non-finite values are no-data). Reads only the DEM pixels under the window."""
    from rasterio.windows import Window

    m = image_to_dem(image, dem)
    r = np.arange(height, dtype=np.float64) + row_off + 0.5
    c = np.arange(width, dtype=np.float64) + col_off + 0.5
    cc, rr = np.meshgrid(c, r)
    u = m.a * cc + m.b * rr + m.c - 0.5  # DEM column, 0 = first pixel's centre
    v = m.d * cc + m.e * rr + m.f - 0.5
    c0 = max(0, min(dem.width - 1, math.floor(u.min())))
    r0 = max(0, min(dem.height - 1, math.floor(v.min())))
    c1 = max(c0 + 1, min(dem.width, math.floor(u.max()) + 2))
    r1 = max(r0 + 1, min(dem.height, math.floor(v.max()) + 2))
    block = dem.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float64)
    valid = np.isfinite(block) & (block != DEM_NODATA)
    if dem.nodata is not None:
        valid &= block != dem.nodata
    return masked_bilinear(block, valid, v - r0, u - c0)


def dem_stats(values: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """``dem_min``, ``dem_mean``, ``dem_max`` (m, rounded to mm; NaN without a valid pixel) and ``dem_valid`` (the
    valid share) of one sub-tile: its columns of ``manifest.csv``."""
    share = float(valid.mean()) if valid.size else 0.0
    if not valid.any():
        return {"dem_min": float("nan"), "dem_mean": float("nan"), "dem_max": float("nan"), "dem_valid": share}
    v = values[valid].astype(np.float64)
    return {"dem_min": round(float(v.min()), 3), "dem_mean": round(float(v.mean()), 3),
            "dem_max": round(float(v.max()), 3), "dem_valid": round(share, 6)}
