"""A seeded, deterministic MiniFrance-like data set in the public on-disk layout (SPEC.md §1).

The real MiniFrance needs a login to download; the embedded workflow runs on this synthetic stand-in. It keeps
what the science depends on (design documented in ``docs/synthetic.md``):

- the layout, file names, CRS (EPSG:2154), resolution (0.5 m/px), dtypes and label ids of the public data;
- the 16 cities with their split (Table 2.4), tile counts proportional to Table 2.4 (``tile_scale``);
- land-use classes rendered with class-specific textures (striped fields, canopy blobs, block grids, ...), in
  proportions drawn around regional priors that follow the spirit of Table 2.6 (arable land and pastures
  dominant, forests ~16 %, urban fabric ~10 %, ids 8 and 9 absent, a little of ids 0 and 15);
- a regional appearance (palette, brightness, haze, field size, hedges) so that cities of one region
  (``REGIONS``) look alike and regions differ, as the appearance analysis of seed 004 §2.4–2.6 found for the
  real conurbations (Nice ~ Marseille, the Breton cities alike, Cherbourg mostly pastures);
- an elevation model per tile in DFC2022's RGEALTI layout and format (1 m, float32, −99999 no-data), its relief
  tied to region and land use (``relief``).

Modules: ``looks`` (regions, class priors, regional looks), ``textures`` (noise and one painter per class),
``tile`` (one tile as a chain of steps), ``relief`` (its elevation); this one writes the data set. Everything is a pure function of the
parameters: the random streams are derived from the seed and the city
name / tile index (never from execution order), and the GeoTIFFs are written with fixed options (deflate,
no timestamps), so the same parameters give byte-identical files.
"""


from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tmf.data.minifrance import CITIES, DEM_DIR, DEM_NODATA, DEM_SUFFIX, City
from tmf.data.synthetic.looks import LOOKS, REGIONS, region_prior
from tmf.data.synthetic.relief import render_dem
from tmf.data.synthetic.tile import _rng, city_style, render_tile


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def n_tiles(city: City, tile_scale: float, min_tiles: int) -> int:
    """Tiles of one synthetic city: max(min_tiles, round(tile_scale × Table 2.4 count)), halves rounded up."""
    return max(int(min_tiles), _round_half_up(tile_scale * city.tiles))



def _tile_origins(city: City, n: int, tile_size: int) -> list[tuple[int, int]]:
    """Upper-left (x_km, y_km) of the city's tiles on a square grid centred on the conurbation."""
    step = max(1, math.ceil(tile_size * 0.5 / 1000.0))
    m = math.ceil(math.sqrt(n))
    x0 = city.x_km - (m * step) // 2
    y0 = city.y_km + (m * step) // 2
    return [(x0 + (k % m) * step, y0 - (k // m) * step) for k in range(n)]


def city_year(city: str, seed: int) -> int:
    return int(_rng(seed, "year", city).choice([2012, 2013, 2014]))


_PROFILE = dict(driver="GTiff", compress="deflate", predictor=2, tiled=True, blockxsize=256, blockysize=256,
                interleave="pixel")


def _write_tif(path: Path, arr: np.ndarray, transform, photometric: str | None = None) -> None:
    import rasterio
    from rasterio.crs import CRS

    from tmf.io import atomic_path

    bands = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    h, w = bands.shape[1:]
    prof = dict(_PROFILE, height=h, width=w, count=bands.shape[0], dtype="uint8", crs=CRS.from_epsg(2154),
                transform=transform)
    if h < 256 or w < 256 or h % 16 or w % 16:
        prof.update(tiled=False)
        prof.pop("blockxsize")
        prof.pop("blockysize")
    if photometric:
        prof["photometric"] = photometric
    with atomic_path(path, suffix=".tif") as tmp, rasterio.open(tmp, "w", **prof) as dst:
        dst.write(bands)


def _write_dem(path: Path, dem: np.ndarray, transform) -> None:
    """An RGEALTI-like raster: one float32 band, EPSG:2154, no-data −99999, deflate (no predictor: float data)."""
    import rasterio
    from rasterio.crs import CRS

    from tmf.io import atomic_path

    prof = dict(driver="GTiff", compress="deflate", height=dem.shape[0], width=dem.shape[1], count=1,
                dtype="float32", crs=CRS.from_epsg(2154), transform=transform, nodata=DEM_NODATA)
    with atomic_path(path, suffix=".tif") as tmp, rasterio.open(tmp, "w", **prof) as dst:
        dst.write(dem[None])


def generate_synthetic(root: str | Path, seed: int = 0, tile_scale: float = 0.05, min_tiles: int = 2,
                       tile_size: int = 512, dem: bool = True) -> list[Path]:
    """Write the synthetic data set under ``root`` in the public layout; return the image paths written.

    ``<root>/<split>/<City>/BDORTHO/<dept>-<year>-<x_km>-<y_km>-LA93-0M50-E080.tif`` (RGB uint8, EPSG:2154,
    0.5 m/px), ``UrbanAtlas/<stem>_UA2012.tif`` (ids 0–15) and, with ``dem``, ``RGEALTI/<stem>_RGEALTI.tif``
    (float32 metres, 1 m/px, −99999 no-data; DFC2022's layout) for the 16 cities of Table 2.4, each with
    max(min_tiles, round(tile_scale × its MiniFrance tile count)) tiles of ``tile_size`` px. The images and labels
    do not depend on ``dem``. Tiles left in these folders by an earlier run with other parameters are removed.
    """
    from affine import Affine

    from tmf.config import ParamsError

    if not 0 < tile_scale <= 1:
        raise ParamsError(f"data.synthetic.tile_scale must be in (0, 1], got {tile_scale}")
    if min_tiles < 1:
        raise ParamsError(f"data.synthetic.min_tiles must be >= 1, got {min_tiles}")
    if tile_size < 32:
        raise ParamsError(f"data.synthetic.tile_size must be >= 32, got {tile_size}")
    root = Path(root)
    written: list[Path] = []
    for city in CITIES:
        style = city_style(city.name, seed)
        year = city_year(city.name, seed)
        n = n_tiles(city, tile_scale, min_tiles)
        for k, (x_km, y_km) in enumerate(_tile_origins(city, n, tile_size)):
            stem = f"{city.dept}-{year}-{x_km:04d}-{y_km:04d}-LA93-0M50-E080"
            image, label = render_tile(style, _rng(seed, "tile", city.name, k), tile_size)
            transform = Affine(0.5, 0.0, x_km * 1000.0, 0.0, -0.5, y_km * 1000.0)  # upper-left corner
            base = root / city.split / city.name
            img_path = base / "BDORTHO" / f"{stem}.tif"
            _write_tif(img_path, image, transform, photometric="RGB")
            _write_tif(base / "UrbanAtlas" / f"{stem}_UA2012.tif", label, transform)
            if dem:  # its own random stream: the image and label above are the same without it
                _write_dem(base / DEM_DIR / f"{stem}{DEM_SUFFIX}.tif", render_dem(label, city.name, _rng(
                    seed, "dem", city.name, k)), Affine(1.0, 0.0, x_km * 1000.0, 0.0, -1.0, y_km * 1000.0))
            written.append(img_path)
    # tiles of an earlier run with other parameters would be indexed with these: remove them
    keep = set(written) | {p.parent.parent / "UrbanAtlas" / f"{p.stem}_UA2012.tif" for p in written}
    if dem:
        keep |= {p.parent.parent / DEM_DIR / f"{p.stem}{DEM_SUFFIX}.tif" for p in written}
    for city in CITIES:
        for sub in ("BDORTHO", "UrbanAtlas", DEM_DIR):
            for stale in sorted((root / city.split / city.name / sub).glob("*.tif")):
                if stale not in keep:
                    stale.unlink()
    return written


__all__ = ["REGIONS", "LOOKS", "generate_synthetic", "render_tile", "render_dem", "city_style", "region_prior",
           "n_tiles", "city_year"]
