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
  real conurbations (Nice ~ Marseille, the Breton cities alike, Cherbourg mostly pastures).

Everything is a pure function of the parameters: the random streams are derived from the seed and the city
name / tile index (never from execution order), and the GeoTIFFs are written with fixed options (deflate,
no timestamps), so the same parameters give byte-identical files.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tmf.data.minifrance import CITIES, N_CLASSES, City

# ---------------------------------------------------------------------------------------------------------
# Regions and priors

REGIONS: dict[str, str] = {
    "Nice": "mediterranean",
    "Marseille_Martigues": "mediterranean",
    "Brest": "brittany",
    "Lorient": "brittany",
    "Saint-Brieuc": "brittany",
    "Quimper": "brittany",
    "Vannes": "brittany",
    "Rennes": "brittany",
    "Nantes_Saint-Nazaire": "loire",
    "Angers": "loire",
    "LeMans": "loire",
    "Caen": "normandy",
    "Cherbourg": "normandy",
    "Calais_Dunkerque": "north",
    "Lille_Arras_Lens_Douai_Henin": "north",
    "Clermont-Ferrand": "massif",
}

# Class priors (% of the labeled pixels, ids 1..14 without the absent 8 and 9) per region. Weighted by the
# tile counts of Table 2.4 they give roughly the shares of Table 2.6 (checked in tests/test_synthetic.py).
#                    1     2     3    4     5     6    7     10    11    12   13   14
_PRIOR_IDS = (1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14)
_REGION_PRIORS: dict[str, tuple[float, ...]] = {
    "mediterranean": (17.0, 10.0, 1.0, 1.8, 6.0, 4.0, 6.0, 33.0, 15.0, 0.5, 0.7, 2.5),
    "brittany": (8.0, 5.0, 0.3, 0.7, 32.0, 0.2, 38.0, 13.0, 2.5, 0.05, 0.6, 0.6),
    "loire": (9.0, 7.0, 0.5, 0.9, 36.0, 1.5, 28.0, 13.0, 2.0, 0.05, 1.0, 1.2),
    "normandy": (7.0, 5.0, 0.4, 0.7, 28.0, 0.3, 44.0, 12.0, 2.5, 0.05, 0.7, 0.5),
    "north": (13.0, 9.0, 0.7, 1.0, 44.0, 0.1, 16.0, 10.0, 2.0, 0.05, 0.5, 0.6),
    "massif": (8.0, 6.0, 0.5, 0.7, 20.0, 1.0, 33.0, 24.0, 6.0, 0.2, 0.1, 0.2),
}
# Cities whose mix differs from their region's (seed 004 §2.4.2: Cherbourg holds 6 classes, ~70 % pastures).
_CITY_PRIORS: dict[str, tuple[float, ...]] = {
    "Cherbourg": (6.0, 4.0, 0.0, 0.0, 8.0, 0.0, 70.0, 9.0, 0.0, 0.0, 0.0, 3.0),
}
_CITY_CONCENTRATION = 300.0  # Dirichlet concentration of a city's mix around its prior (cities of a region alike)
_TILE_CONCENTRATION = 25.0  # ... of a tile's mix around its city's (tiles differ: centre vs countryside)
_SHARE_NO_INFO = 0.006  # parcels labelled 0 ("no information"), drawn with any texture
_P_CLOUDY_TILE = 0.12  # chance that a tile holds a cloud and its shadow (id 15)


def region_prior(city: str) -> np.ndarray:
    """(16,) class probabilities (sum 1) of one city's prior: its region's, or its own where it has one."""
    if city not in REGIONS:
        raise ValueError(f"unknown city {city!r}")
    raw = _CITY_PRIORS.get(city, _REGION_PRIORS[REGIONS[city]])
    p = np.zeros(N_CLASSES)
    p[list(_PRIOR_IDS)] = raw
    return p / p.sum()


# ---------------------------------------------------------------------------------------------------------
# Regional appearance


@dataclass(frozen=True)
class Look:
    veg: tuple[float, float, float]  # grass / crops
    tree: tuple[float, float, float]  # canopy
    soil: tuple[float, float, float]  # bare soil, ploughed fields
    ripe: tuple[float, float, float]  # ripe cereals
    roofs: tuple[tuple[float, float, float], ...]  # roof palette of urban fabric
    water: tuple[float, float, float]
    brightness: float  # added after the contrast stretch
    contrast: float
    cast: tuple[float, float, float]  # per-channel gain (acquisition colour balance)
    haze: float  # mix towards a grey veil
    field_scale: float  # parcel size multiplier
    hedges: float  # share of field borders lined with hedges (bocage)
    canopy_gap: float  # share of bare ground between tree crowns


LOOKS: dict[str, Look] = {
    "mediterranean": Look(
        veg=(0.50, 0.52, 0.33), tree=(0.27, 0.32, 0.18), soil=(0.80, 0.70, 0.55), ripe=(0.88, 0.80, 0.58),
        roofs=((0.80, 0.44, 0.30), (0.84, 0.52, 0.36), (0.72, 0.38, 0.28), (0.88, 0.84, 0.76)),
        water=(0.08, 0.30, 0.48), brightness=0.07, contrast=1.10, cast=(1.06, 1.00, 0.90), haze=0.0,
        field_scale=0.75, hedges=0.0, canopy_gap=0.35),
    "brittany": Look(
        veg=(0.28, 0.44, 0.24), tree=(0.10, 0.20, 0.11), soil=(0.42, 0.34, 0.27), ripe=(0.70, 0.64, 0.40),
        roofs=((0.28, 0.30, 0.35), (0.33, 0.35, 0.40), (0.24, 0.26, 0.30), (0.74, 0.74, 0.72)),
        water=(0.10, 0.24, 0.27), brightness=-0.04, contrast=1.00, cast=(0.94, 1.00, 1.06), haze=0.0,
        field_scale=0.65, hedges=0.9, canopy_gap=0.05),
    "loire": Look(
        veg=(0.40, 0.50, 0.31), tree=(0.18, 0.28, 0.16), soil=(0.64, 0.57, 0.46), ripe=(0.80, 0.73, 0.50),
        roofs=((0.32, 0.34, 0.39), (0.82, 0.80, 0.74), (0.38, 0.38, 0.42), (0.66, 0.46, 0.36)),
        water=(0.30, 0.38, 0.38), brightness=0.02, contrast=0.95, cast=(1.00, 1.00, 1.00), haze=0.04,
        field_scale=1.0, hedges=0.25, canopy_gap=0.1),
    "normandy": Look(
        veg=(0.38, 0.57, 0.26), tree=(0.16, 0.31, 0.13), soil=(0.60, 0.50, 0.36), ripe=(0.80, 0.74, 0.44),
        roofs=((0.62, 0.40, 0.32), (0.56, 0.36, 0.30), (0.76, 0.73, 0.64), (0.50, 0.47, 0.45)),
        water=(0.17, 0.30, 0.36), brightness=0.02, contrast=1.05, cast=(0.95, 1.07, 0.88), haze=0.0,
        field_scale=0.85, hedges=0.7, canopy_gap=0.05),
    "north": Look(
        veg=(0.42, 0.47, 0.36), tree=(0.24, 0.30, 0.22), soil=(0.56, 0.51, 0.45), ripe=(0.74, 0.70, 0.55),
        roofs=((0.56, 0.30, 0.25), (0.48, 0.28, 0.24), (0.40, 0.38, 0.38), (0.62, 0.36, 0.30)),
        water=(0.28, 0.33, 0.36), brightness=0.0, contrast=0.80, cast=(1.00, 1.00, 1.02), haze=0.18,
        field_scale=1.5, hedges=0.0, canopy_gap=0.1),
    "massif": Look(
        veg=(0.26, 0.40, 0.32), tree=(0.12, 0.22, 0.18), soil=(0.35, 0.30, 0.29), ripe=(0.62, 0.58, 0.44),
        roofs=((0.54, 0.34, 0.28), (0.34, 0.32, 0.33), (0.44, 0.40, 0.40), (0.60, 0.58, 0.56)),
        water=(0.08, 0.20, 0.30), brightness=-0.05, contrast=1.12, cast=(0.92, 0.98, 1.10), haze=0.0,
        field_scale=1.1, hedges=0.2, canopy_gap=0.15),
}
_HAZE_COLOUR = np.array([0.72, 0.74, 0.78], dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# Random streams and small helpers


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator derived from the seed and string/int keys only (stable across runs and orders)."""
    h = hashlib.sha256(("\x1f".join([str(seed), *map(str, keys)])).encode()).digest()
    return np.random.default_rng(np.frombuffer(h, dtype=np.uint32).tolist())


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def n_tiles(city: City, tile_scale: float, min_tiles: int) -> int:
    """Tiles of one synthetic city: max(min_tiles, round(tile_scale × Table 2.4 count)), halves rounded up."""
    return max(int(min_tiles), _round_half_up(tile_scale * city.tiles))


class _Noise:
    """Smooth value noise: unit-variance values on a grid every ``cell`` px, smoothstep-interpolated at any
    point. Evaluated only at the pixels that need it (vectorised gathers), never on the whole tile."""

    def __init__(self, rng: np.random.Generator, size: int, cell: float):
        self.cell = max(float(cell), 1.0)
        n = int(size / self.cell) + 3
        self.grid = rng.standard_normal((n, n)).astype(np.float32)
        self.shift = rng.uniform(0, 1, 2).astype(np.float32)

    def __call__(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        ty = y * np.float32(1 / self.cell) + self.shift[0]
        tx = x * np.float32(1 / self.cell) + self.shift[1]
        iy = ty.astype(np.int32)
        ix = tx.astype(np.int32)
        fy = ty - iy
        fx = tx - ix
        fy = fy * fy * (3 - 2 * fy)
        fx = fx * fx * (3 - 2 * fx)
        n = self.grid.shape[1]
        k = iy * n + ix
        g = self.grid.ravel()
        top = g.take(k) * (1 - fx) + g.take(k + 1) * fx
        bot = g.take(k + n) * (1 - fx) + g.take(k + n + 1) * fx
        return top * (1 - fy) + bot * fy


def _col(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# Textures: each returns an (n, 3) float32 colour for the n pixels of ``pts`` (the pixels of the parcels of
# one class), in [0, 1] before the regional radiometry.


@dataclass
class _Pts:
    rng: np.random.Generator
    size: int
    look: Look
    y: np.ndarray  # (n,) row coordinate
    x: np.ndarray  # (n,) column coordinate
    pid: np.ndarray  # (n,) parcel id
    angle: np.ndarray  # (n,) parcel orientation (rad)
    u1: np.ndarray  # (n,) parcel uniform attribute
    u2: np.ndarray  # (n,) second parcel uniform attribute
    border: np.ndarray  # (n,) bool, parcel boundary pixels
    scale: float  # texture scale multiplier

    def noise(self, cell: float) -> np.ndarray:
        return _Noise(self.rng, self.size, cell)(self.y, self.x)

    def grain(self, amp: float) -> np.ndarray:
        """Pixel-level sensor/ground grain, (n, 1)."""
        return (amp * self.rng.standard_normal(self.y.shape[0], dtype=np.float32))[:, None]

    def rot(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return self.x * c + self.y * s, -self.x * s + self.y * c


def _tex_arable(p: _Pts) -> np.ndarray:
    lk = p.look
    # per parcel crop state: ploughed soil, young green crop, ripe cereal, stubble
    states = np.stack([_col(lk.soil), _col(lk.veg) * 1.08, _col(lk.ripe), (_col(lk.soil) + _col(lk.ripe)) / 2])
    base = states[np.minimum((p.u1 * 4).astype(np.int64), 3)]
    u, _ = p.rot()
    period = (4.0 + 5.0 * p.u2) * p.scale
    stripes = np.sin(2 * np.pi * u / period)
    low = 0.05 * p.noise(40 * p.scale)
    return base * (1 + 0.13 * stripes + low)[:, None] + p.grain(0.02)


def _tex_pasture(p: _Pts) -> np.ndarray:
    lk = p.look
    base = _col(lk.veg) * (0.95 + 0.12 * p.u1[:, None])
    img = base * (1 + 0.07 * p.noise(14 * p.scale))[:, None] + p.grain(0.015)
    if lk.hedges > 0:  # bocage: dark tree lines along a share of the field borders
        hedge = p.border & (p.u2 < lk.hedges)
        tree = _col(lk.tree) * (0.9 + 0.2 * p.noise(2))[:, None]
        img = np.where(hedge[:, None], tree, img)
    return img


def _tex_forest(p: _Pts) -> np.ndarray:
    lk = p.look
    crowns = p.noise(3.0 * p.scale) + 0.5 * p.noise(1.5 * p.scale)
    img = _col(lk.tree) * np.clip(0.75 + 0.35 * crowns, 0.2, 1.4)[:, None]
    if lk.canopy_gap > 0:
        gaps = p.noise(6.0 * p.scale) > (1.6 - 2.6 * lk.canopy_gap)
        img = np.where(gaps[:, None], _col(lk.soil) * 0.9 + p.grain(0.03), img)
    return img


def _tex_herbaceous(p: _Pts) -> np.ndarray:
    lk = p.look
    mix = np.clip(0.5 + 0.5 * p.noise(7 * p.scale), 0, 1)[:, None]
    img = _col(lk.veg) * (1 - mix) + _col(lk.soil) * 0.95 * mix
    shrubs = p.noise(2.0 * p.scale) > 1.3
    return np.where(shrubs[:, None], _col(lk.tree), img) + p.grain(0.03)


def _lots(p: _Pts, block: np.ndarray):
    """Block grid in the parcel's orientation: fractional position in the block and a hash of the lot."""
    u, v = p.rot()
    bu, bv = np.floor(u / block), np.floor(v / block)
    fu, fv = u / block - bu, v / block - bv
    h = (bu.astype(np.int64) * 73856093) ^ (bv.astype(np.int64) * 19349663) ^ (p.pid.astype(np.int64) * 83492791)
    return u, fu, fv, np.abs(h)


def _tex_urban(p: _Pts) -> np.ndarray:
    lk = p.look
    _, fu, fv, h = _lots(p, (10.0 + 8.0 * p.u2) * p.scale)
    street = (fu < 0.18) | (fv < 0.18)
    roofs = np.asarray(lk.roofs, dtype=np.float32)
    roof = roofs[h % len(roofs)] * (0.92 + 0.04 * ((h // 7) % 5))[:, None]
    ridge = np.where((fu > 0.59) ^ ((h // 3) % 2 == 0), 0.85, 1.0).astype(np.float32)[:, None]
    garden = (h // 11) % 10 < 3
    img = np.where(garden[:, None], _col(lk.veg) * 0.95, roof * ridge)
    img = np.where(street[:, None], _col((0.42, 0.42, 0.43)), img)
    return img + p.grain(0.02)


def _tex_industrial(p: _Pts) -> np.ndarray:
    u, fu, fv, h = _lots(p, (28.0 + 20.0 * p.u2) * p.scale)
    flat = np.asarray([(0.80, 0.81, 0.82), (0.66, 0.68, 0.72), (0.90, 0.90, 0.88), (0.55, 0.58, 0.62)],
                      dtype=np.float32)
    img = flat[(h // 3) % 4]
    parking = h % 3 == 2  # else a flat roof
    marks = (np.abs(np.sin(np.pi * u / 3.0)) < 0.12) & (fv % 0.5 < 0.35)
    lot = np.where(marks[:, None], _col((0.85, 0.85, 0.85)), _col((0.30, 0.30, 0.32)))
    img = np.where(parking[:, None], lot, img)
    street = (fu < 0.1) | (fv < 0.1)
    img = np.where(street[:, None], _col((0.38, 0.38, 0.39)), img)
    return img * (1 + 0.04 * p.noise(20))[:, None] + p.grain(0.015)


def _tex_mine(p: _Pts) -> np.ndarray:
    light = _col(p.look.soil) * 1.15 + 0.05
    u, _ = p.rot()
    tracks = (np.abs(np.sin(2 * np.pi * u / (25 * p.scale))) < 0.06)[:, None]
    img = light * (1 + 0.10 * p.noise(5 * p.scale))[:, None]
    return np.where(tracks, light * 0.75, img) + p.grain(0.04)


def _tex_green_urban(p: _Pts) -> np.ndarray:
    lk = p.look
    lawn = np.clip(_col(lk.veg) * _col((0.95, 1.25, 0.9)), 0, 1)
    img = lawn * (1 + 0.04 * p.noise(10))[:, None]
    trees = p.noise(4 * p.scale) > 1.0
    img = np.where(trees[:, None], _col(lk.tree), img)
    u, _ = p.rot()
    paths = np.abs(np.sin(2 * np.pi * u / (45 * p.scale))) < 0.04
    img = np.where(paths[:, None], _col((0.78, 0.74, 0.66)), img)
    return img + p.grain(0.015)


def _tex_permanent(p: _Pts) -> np.ndarray:
    lk = p.look
    u, v = p.rot()
    per = (5.0 + 2.0 * p.u2) * p.scale
    du = np.abs((u / per) % 1 - 0.5)
    dv = np.abs((v / (per * (0.5 + 0.5 * p.u1))) % 1 - 0.5)
    plant = (du < 0.22) & (dv < 0.3)
    return np.where(plant[:, None], _col(lk.tree) * 1.1, _col(lk.soil)) + p.grain(0.03)


def _tex_open(p: _Pts) -> np.ndarray:
    n = p.noise(2 * p.scale) + 0.5 * p.noise(8 * p.scale)
    return _col((0.78, 0.76, 0.72)) * (1 + 0.12 * n)[:, None]


def _tex_wetland(p: _Pts) -> np.ndarray:
    lk = p.look
    pools = p.noise(6 * p.scale) > 0.5
    reeds = (_col(lk.veg) * 0.8 + _col((0.05, 0.05, 0.1))) * (1 + 0.12 * p.noise(1.5))[:, None]
    return np.where(pools[:, None], _col(lk.water) * 1.1, reeds)


def _tex_water(p: _Pts) -> np.ndarray:
    u, _ = p.rot()
    waves = np.sin(2 * np.pi * u / ((7 + 5 * p.u2) * p.scale))
    return _col(p.look.water) * (1 + 0.04 * waves + 0.05 * p.noise(60))[:, None] + p.grain(0.006)


_TEXTURES = {
    1: _tex_urban, 2: _tex_industrial, 3: _tex_mine, 4: _tex_green_urban, 5: _tex_arable, 6: _tex_permanent,
    7: _tex_pasture, 10: _tex_forest, 11: _tex_herbaceous, 12: _tex_open, 13: _tex_wetland, 14: _tex_water,
}


# ---------------------------------------------------------------------------------------------------------
# One tile


@dataclass(frozen=True)
class _CityStyle:
    look: Look
    mix: np.ndarray  # (16,) class probabilities of the city
    gain: np.ndarray  # (3,) per-city radiometric jitter (acquisition year)
    offset: float


def city_style(city: str, seed: int) -> _CityStyle:
    """The city's class mix (Dirichlet around its prior) and its small radiometric jitter."""
    rng = _rng(seed, "style", city)
    prior = region_prior(city)
    mix = np.zeros(N_CLASSES)
    nz = prior > 0
    mix[nz] = rng.dirichlet(_CITY_CONCENTRATION * prior[nz])
    gain = 1 + rng.uniform(-0.03, 0.03, 3)
    offset = float(rng.uniform(-0.02, 0.02))
    return _CityStyle(LOOKS[REGIONS[city]], mix, gain.astype(np.float32), offset)


def render_tile(style: _CityStyle, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One tile: ``(image (S, S, 3) uint8, label (S, S) uint8)``.

    Parcels are the cells of a Voronoi diagram on domain-warped coordinates (irregular borders); fine
    parcels inherit the class of the coarse zone they fall in with probability 0.7 (spatial clustering of
    land use), else draw from the tile's mix. Roads (id 2) cross some tiles, a cloud and its shadow (id 15)
    cover a few, and a small share of parcels is labelled 0 ("no information") while keeping a texture.
    """
    from scipy.spatial import cKDTree

    S = int(size)
    lk = style.look
    # textures are sized for sub-tiles of 1/8 of a 512 px tile and grow slowly with bigger tiles
    scale = max(1.0, S / 512.0) ** 0.5
    nz = style.mix > 0
    tile_mix = np.zeros(N_CLASSES)
    tile_mix[nz] = rng.dirichlet(np.maximum(_TILE_CONCENTRATION * style.mix[nz], 0.05))
    ids = np.arange(N_CLASSES)

    # parcels: Voronoi cells of the fine seeds on warped coordinates, computed at half resolution
    fine_cell = 70.0 * lk.field_scale * scale
    n_fine = max(4, int(round(S * S / fine_cell**2)))
    n_coarse = max(2, n_fine // 8)
    fine = rng.uniform(0, S, (n_fine, 2))
    coarse = rng.uniform(0, S, (n_coarse, 2))
    coarse_cls = rng.choice(ids, size=n_coarse, p=tile_mix)
    _, zone = cKDTree(coarse).query(fine)
    fine_cls = np.where(rng.random(n_fine) < 0.7, coarse_cls[zone], rng.choice(ids, size=n_fine, p=tile_mix))
    fine_cls = np.where(rng.random(n_fine) < _SHARE_NO_INFO, 0, fine_cls)
    # "no information" parcels keep the texture of a class drawn from the mix (labels, not images, missing)
    look_cls = np.where(fine_cls == 0, rng.choice(ids, size=n_fine, p=tile_mix), fine_cls)

    h2 = (S + 1) // 2
    hy, hx = np.meshgrid(np.arange(h2, dtype=np.float32) * 2, np.arange(h2, dtype=np.float32) * 2,
                         indexing="ij")
    hy, hx = hy.ravel(), hx.ravel()
    warp = 0.05 * S
    wy = hy + warp * _Noise(rng, S, S / 4)(hy, hx) + 3 * _Noise(rng, S, 6)(hy, hx)
    wx = hx + warp * _Noise(rng, S, S / 4)(hy, hx) + 3 * _Noise(rng, S, 6)(hy, hx)
    _, pid_half = cKDTree(fine).query(np.stack([wy, wx], axis=1))
    pid = np.repeat(np.repeat(pid_half.reshape(h2, h2), 2, 0), 2, 1)[:S, :S]
    border = np.zeros((S, S), dtype=bool)
    border[1:, :] |= pid[1:, :] != pid[:-1, :]
    border[:, 1:] |= pid[:, 1:] != pid[:, :-1]
    border[:-1, :] |= border[1:, :].copy()
    border[:, :-1] |= border[:, 1:].copy()

    angle = rng.uniform(0, np.pi, n_fine).astype(np.float32)
    u1 = rng.random(n_fine).astype(np.float32)
    u2 = rng.random(n_fine).astype(np.float32)

    pid_flat = pid.ravel()
    label = fine_cls[pid_flat].astype(np.uint8)
    look_px = look_cls[pid_flat]
    order = np.argsort(look_px, kind="stable")
    classes, starts = np.unique(look_px[order], return_index=True)
    img = np.empty((S * S, 3), dtype=np.float32)
    for cid, idx in zip(classes, np.split(order, starts[1:]), strict=True):
        q = pid_flat[idx]
        pts = _Pts(rng, S, lk, (idx // S).astype(np.float32), (idx % S).astype(np.float32), q, angle[q], u1[q],
                   u2[q], border.ravel()[idx], scale)
        img[idx] = _TEXTURES[int(cid)](pts)
    img = img.reshape(S, S, 3)
    label = label.reshape(S, S)

    # roads (transport units, id 2): straight asphalt bands with a centre line
    for _ in range(rng.poisson(0.8)):
        a = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(0, S, 2)
        d = np.subtract.outer((np.arange(S) - cy) * -np.cos(a), (np.arange(S) - cx) * -np.sin(a))
        road = np.abs(d) < rng.uniform(2.5, 5.0) * scale
        img[road] = _col((0.36, 0.36, 0.37)) + 0.02 * rng.standard_normal((int(road.sum()), 1), dtype=np.float32)
        img[road & (np.abs(d) < 0.5)] = (0.85, 0.85, 0.8)
        label[road] = 2

    # a cloud and its shadow (id 15)
    if rng.random() < _P_CLOUDY_TILE:
        cy, cx = rng.uniform(0, S, 2)
        r = rng.uniform(0.04, 0.09) * S
        y0, y1 = int(max(0, cy - 2 * r)), int(min(S, cy + 2 * r))
        x0, x1 = int(max(0, cx - 2 * r)), int(min(S, cx + 2 * r))
        by, bx = np.meshgrid(np.arange(y0, y1, dtype=np.float32), np.arange(x0, x1, dtype=np.float32),
                             indexing="ij")
        blob = np.hypot(by - cy, bx - cx) / r + 0.35 * _Noise(rng, S, r / 2)(by, bx)
        cloud = np.zeros((S, S), dtype=np.float32)
        cloud[y0:y1, x0:x1] = np.clip(1.6 - blob, 0, 1)
        sy, sx = int(0.8 * r), int(0.5 * r)
        shadow = np.zeros_like(cloud)
        shadow[sy:, sx:] = cloud[: S - sy, : S - sx]
        img *= 1 - 0.55 * shadow[..., None]
        img = img * (1 - cloud[..., None]) + 0.93 * cloud[..., None]
        label[(cloud > 0.5) | (shadow > 0.5)] = 15

    # regional radiometry, then the city's jitter and sensor noise
    gain = _col(lk.cast) * style.gain * (1 - lk.haze) * lk.contrast * 255.0
    bias = ((0.5 - 0.5 * lk.contrast + lk.brightness + style.offset) * _col(lk.cast) * style.gain
            * (1 - lk.haze) + lk.haze * _HAZE_COLOUR) * 255.0 + 0.5
    img = img * gain + bias
    img += rng.standard_normal((S, S, 1), dtype=np.float32) * 2.0
    out = np.clip(img, 0, 255).astype(np.uint8)
    return out, label


# ---------------------------------------------------------------------------------------------------------
# Writing the data set


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


def generate_synthetic(root: str | Path, seed: int = 0, tile_scale: float = 0.05, min_tiles: int = 2,
                       tile_size: int = 512) -> list[Path]:
    """Write the synthetic data set under ``root`` in the public layout; return the image paths written.

    ``<root>/<split>/<City>/BDORTHO/<dept>-<year>-<x_km>-<y_km>-LA93-0M50-E080.tif`` (RGB uint8, EPSG:2154,
    0.5 m/px) and ``UrbanAtlas/<stem>_UA2012.tif`` (ids 0–15) for the 16 cities of Table 2.4, each with
    max(min_tiles, round(tile_scale × its MiniFrance tile count)) tiles of ``tile_size`` px. Tiles left in
    these folders by an earlier run with other parameters are removed.
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
            written.append(img_path)
    # tiles of an earlier run with other parameters would be indexed with these: remove them
    keep = set(written) | {p.parent.parent / "UrbanAtlas" / f"{p.stem}_UA2012.tif" for p in written}
    for city in CITIES:
        for sub in ("BDORTHO", "UrbanAtlas"):
            for stale in sorted((root / city.split / city.name / sub).glob("*.tif")):
                if stale not in keep:
                    stale.unlink()
    return written


__all__ = ["REGIONS", "LOOKS", "generate_synthetic", "render_tile", "city_style", "region_prior", "n_tiles",
           "city_year"]
