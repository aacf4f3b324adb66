"""The synthetic elevation model of a tile (RGEALTI's layout and format, DFC2022; docs/synthetic.md "Elevation").

Relief is tied to region and land use by design, so that elevation carries information a model can find:
each region has a base altitude and a relief amplitude (flat Calais_Dunkerque and Lille, Clermont-Ferrand on the
Massif Central with volcanic cones, the puys); forests (and the semi-natural classes 11, 12) stand on hills, so
their pixels are high and sloped; water is the lowest and flat (one level per tile), wetlands sit just above it
and the banks slope down to it. The DEM is computed on RGEALTI's 1 m grid; a few tiles get rectangular −99999
no-data patches.

It draws from its own random stream (seed, "dem", city, tile index), never from the tile's, so the RGB images and
labels are the same with or without elevation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmf.data.minifrance import DEM_NODATA
from tmf.data.synthetic.looks import REGIONS
from tmf.data.synthetic.textures import Noise

FOREST_LIKE = (10, 11, 12)  # forests, herbaceous vegetation, open spaces: on the hills
WETLANDS, WATER = 13, 14
_P_NODATA_TILE = 0.15  # chance that a tile holds no-data patches
_NOISE_M = 0.1  # measurement noise (m)


@dataclass(frozen=True)
class Relief:
    base: float  # altitude of the region's plain (m)
    amplitude: float  # rolling relief (m, about the std of the terrain within a tile)
    forest_hill: float  # height of the hills forests stand on (m)
    cones: float = 0.0  # mean number of volcanic cones per tile (the puys of Clermont-Ferrand)


RELIEFS: dict[str, Relief] = {
    "mediterranean": Relief(base=80.0, amplitude=25.0, forest_hill=40.0),
    "brittany": Relief(base=60.0, amplitude=8.0, forest_hill=15.0),
    "loire": Relief(base=40.0, amplitude=5.0, forest_hill=10.0),
    "normandy": Relief(base=70.0, amplitude=10.0, forest_hill=15.0),
    "north": Relief(base=30.0, amplitude=1.0, forest_hill=3.0),
    "massif": Relief(base=420.0, amplitude=35.0, forest_hill=45.0, cones=1.5),
}
# cities whose plain differs from their region's
CITY_BASE: dict[str, float] = {"Calais_Dunkerque": 4.0, "Nice": 120.0}


def _smooth(mask: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(mask.astype(np.float32), sigma=sigma, mode="reflect")


def _grid(S: int) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.meshgrid(np.arange(S, dtype=np.float32), np.arange(S, dtype=np.float32), indexing="ij"))


def _terrain(rng: np.random.Generator, r: Relief, S: int) -> np.ndarray:
    """Rolling terrain: two octaves of value noise, plus volcanic cones (a steep cone with a crater) in the massif."""
    y, x = _grid(S)
    z = r.amplitude * (0.8 * Noise(rng, S, S / 2)(y, x) + 0.4 * Noise(rng, S, S / 6)(y, x))
    for _ in range(rng.poisson(r.cones) if r.cones else 0):
        cy, cx = rng.uniform(0, S, 2)
        radius = rng.uniform(0.15, 0.35) * S
        height = rng.uniform(60.0, 160.0)
        d = np.hypot(y - cy, x - cx) / radius
        z += height * np.clip(1 - d, 0, None) ** 1.5 - 0.25 * height * np.clip(1 - 4 * d, 0, None)
    return z


def render_dem(label: np.ndarray, city: str, rng: np.random.Generator) -> np.ndarray:
    """The elevation (metres, float32) of a tile whose label map (S, S) is ``label``, on RGEALTI's 1 m grid:
    (ceil(S/2), ceil(S/2)), −99999 in the no-data patches. Computed on the 1 m grid, from the label of the 0.5 m
    pixel at the upper left of each 1 m pixel (every other row and column).

    z = plain + tile offset + rolling terrain (+ cones) + forest_hill · smooth(forest-like mask) + rough canopy
    ground; then water pixels are set to one level 2 m below the tile's 2nd percentile of land, the banks slope
    to it and wetlands sit 0.5 m above it; 0.1 m of noise. Lengths are fractions of the tile's side.
    """
    lab = label[::2, ::2]
    n = lab.shape[0]
    r = RELIEFS[REGIONS[city]]
    base = CITY_BASE.get(city, r.base) + rng.uniform(-1.0, 1.0) * max(2 * r.amplitude, 2.0)
    z = base + _terrain(rng, r, n)
    forest = np.isin(lab, FOREST_LIKE)
    z += r.forest_hill * _smooth(forest, n / 24)
    z += 0.15 * r.forest_hill * _smooth(forest, 1.0) * Noise(rng, n, n / 32)(*_grid(n))
    water, wet = lab == WATER, lab == WETLANDS
    if water.all():
        level = base
    elif water.any():
        level = float(np.percentile(z[~water], 2)) - 2.0
    else:
        level = float(np.percentile(z, 5)) - 0.5
    if water.any():
        bank = np.clip(2.5 * _smooth(water, n / 48), 0, 1)
        z = np.where(water, level, z * (1 - bank) + (level + 0.5) * bank)
    if wet.any():  # wetlands 0.5 m above the water, their edges eased in (no cliff)
        w = 0.8 * np.clip(2.0 * _smooth(wet, n / 96), 0, 1)
        z = np.where(water, z, (1 - w) * z + w * (level + 0.5))
    dem = (z + _NOISE_M * rng.standard_normal(z.shape)).astype(np.float32)
    _add_nodata(dem, rng)
    return dem


def _add_nodata(dem: np.ndarray, rng: np.random.Generator) -> None:
    """On some tiles one or two rectangles of −99999 (RGEALTI's no-data), in place."""
    if rng.random() >= _P_NODATA_TILE:
        return
    h = dem.shape[0]
    for _ in range(int(rng.integers(1, 3))):
        ph, pw = (max(1, int(f * h)) for f in rng.uniform(0.04, 0.12, 2))
        r0, c0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, h - pw + 1))
        dem[r0:r0 + ph, c0:c0 + pw] = DEM_NODATA
