"""Checks of one tile's rasters (image, label, RGEALTI elevation), each decoded block by block (SPEC.md §1, §7).

Every raster is read in full, in bands of rows aligned to its internal blocks (never the whole raster at
once), so a truncated or corrupt file is found at index time and not by a later stage. Errors are
ValueErrors whose message starts with the file as the user gave it (``name``; see
:func:`tmf.data.layout.user_path`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from tmf.data.minifrance import DEM_NODATA, N_CLASSES

ROWS_PER_READ = 1024  # rows decoded at once (a 10,000 px RGB tile: ~30 MB per read)


def open_raster(path: Path, name: str | None = None):
    import rasterio

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except Exception as e:  # rasterio raises RasterioIOError and friends
        raise ValueError(f"{name or path}: unreadable raster ({e})") from None


def _decode(src, name: str, check=None) -> None:
    """Read every pixel of ``src`` in row bands aligned to its blocks; ``check(block, r0, h)`` on each."""
    from rasterio.windows import Window

    block_h = max(1, src.block_shapes[0][0])
    step = max(block_h, ROWS_PER_READ // block_h * block_h)
    for r0 in range(0, src.height, step):
        h = min(step, src.height - r0)
        try:
            block = src.read(window=Window(0, r0, src.width, h))
        except Exception as e:
            raise ValueError(f"{name}: unreadable rows {r0}–{r0 + h} ({e}); the file is truncated or corrupt") from None
        if check is not None:
            check(block, r0, h)


def grid_of(src) -> dict:
    return {"height": src.height, "width": src.width, "crs": src.crs, "transform": src.transform,
            "bounds": src.bounds}


def check_image(path: Path, name: str | None = None) -> dict:
    """An image tile: 3 bands, uint8, every block decodable. Returns its grid (``crs`` None when it has none;
    whether that is allowed is the caller's decision)."""
    name = name or str(path)
    with open_raster(path, name) as src:
        if src.count != 3:
            raise ValueError(f"{name}: {src.count} band(s), expected 3 (RGB)")
        if any(dt != "uint8" for dt in src.dtypes):
            raise ValueError(f"{name}: dtype {src.dtypes[0]}, expected uint8")
        grid = grid_of(src)
        _decode(src, name)
    return grid


def _same_grid(src, grid: dict, name: str, what: str) -> None:
    if (src.height, src.width) != (grid["height"], grid["width"]):
        raise ValueError(f"{name}: shape {src.height}x{src.width} differs from the "
                         f"{grid['height']}x{grid['width']}{what}")
    if src.crs != grid["crs"]:
        raise ValueError(f"{name}: CRS {src.crs} differs from {grid['crs']}{what}")
    if not src.transform.almost_equals(grid["transform"], precision=1e-6):
        raise ValueError(f"{name}: geotransform {tuple(src.transform)[:6]} differs from "
                         f"{tuple(grid['transform'])[:6]}{what}")


def check_label(path: Path, grid: dict | None = None, image: str | None = None, name: str | None = None) -> None:
    """A label raster: CRS (when its image has one), 1 band, uint8, ids only in 0–15 (read in row blocks),
    and, given the image's ``grid``, the same shape, transform and CRS."""
    name = name or str(path)
    with open_raster(path, name) as src:
        if src.crs is None and (grid is None or grid["crs"] is not None):
            raise ValueError(f"{name}: no CRS (expected EPSG:2154, Lambert-93)")
        if src.count != 1:
            raise ValueError(f"{name}: {src.count} bands, expected 1 (label ids)")
        if src.dtypes[0] != "uint8":
            raise ValueError(f"{name}: dtype {src.dtypes[0]}, expected uint8 label ids")
        if grid is not None:
            _same_grid(src, grid, name, f" of image {image}" if image else "")

        def ids(block, r0, h):
            top = int(block.max()) if block.size else 0
            if top >= N_CLASSES:
                raise ValueError(f"{name}: label id {top} in rows {r0}–{r0 + h}; MiniFrance ids are 0–{N_CLASSES - 1}")

        _decode(src, name, ids)


def check_dem(path: Path, grid: dict, image: str, name: str | None = None) -> None:
    """An RGEALTI elevation raster (DFC2022): one float32 band, −99999 as no-data (when it declares one), a CRS
    equal to its image's, and a footprint equal to the image's within one DEM pixel (a 1 m grid over a 0.5 m
    image). Without georeference (DFC2022's test partition) its shape must be the image's or half of it.
    Every block is decoded."""
    name = name or str(path)
    what = f" of image {image}"
    with open_raster(path, name) as src:
        if src.count != 1 or src.dtypes[0] != "float32":
            raise ValueError(f"{name}: {src.count} band(s) of {src.dtypes[0]}, expected one float32 band "
                             "(RGEALTI elevation in metres)")
        if src.nodata is not None and src.nodata != DEM_NODATA:
            raise ValueError(f"{name}: no-data value {src.nodata:g}, expected {DEM_NODATA:g} (RGEALTI)")
        if grid["crs"] is None:
            ok = any(abs(src.height - grid["height"] / k) <= 1 and abs(src.width - grid["width"] / k) <= 1
                     for k in (1, 2))
            if not ok:
                raise ValueError(f"{name}: {src.height}x{src.width} px does not match the {grid['height']}x"
                                 f"{grid['width']} px{what} (expected the same size or half: 1 m vs 0.5 m)")
        else:
            if src.crs is None:
                raise ValueError(f"{name}: no CRS (expected {grid['crs']}, the CRS{what})")
            if src.crs != grid["crs"]:
                raise ValueError(f"{name}: CRS {src.crs} differs from {grid['crs']}{what}")
            tol = max(abs(src.transform.a), abs(src.transform.e))
            d, i = src.bounds, grid["bounds"]
            if d.left > i.left + tol or d.bottom > i.bottom + tol or d.right < i.right - tol or d.top < i.top - tol:
                raise ValueError(f"{name}: does not cover its image tile: bounds {_b(d)} vs {_b(i)}{what}")
            if d.left < i.left - tol or d.bottom < i.bottom - tol or d.right > i.right + tol or d.top > i.top + tol:
                raise ValueError(f"{name}: footprint {_b(d)} exceeds {_b(i)}{what} by more than a pixel")
        _decode(src, name)


def _b(b) -> str:
    return f"({b.left:.1f}, {b.bottom:.1f}, {b.right:.1f}, {b.top:.1f})"
