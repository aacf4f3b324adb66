"""Textures of the synthetic tiles: smooth value noise and one painter per land-use id (striped fields, canopy
blobs, block grids, ...). Each painter returns an (n, 3) float32 colour for the n pixels of one class's parcels, in
[0, 1] before the regional radiometry (docs/synthetic.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmf.data.synthetic.looks import Look


class Noise:
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


def rgb(c) -> np.ndarray:
    """A colour as a float32 array."""
    return np.asarray(c, dtype=np.float32)


@dataclass
class Pixels:
    """The pixels of one class's parcels in a tile, with their parcel's attributes, and the tile's random stream."""

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
        return Noise(self.rng, self.size, cell)(self.y, self.x)

    def grain(self, amp: float) -> np.ndarray:
        """Pixel-level sensor/ground grain, (n, 1)."""
        return (amp * self.rng.standard_normal(self.y.shape[0], dtype=np.float32))[:, None]

    def rot(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return self.x * c + self.y * s, -self.x * s + self.y * c


def _tex_arable(p: Pixels) -> np.ndarray:
    lk = p.look
    # per parcel crop state: ploughed soil, young green crop, ripe cereal, stubble
    states = np.stack([rgb(lk.soil), rgb(lk.veg) * 1.08, rgb(lk.ripe), (rgb(lk.soil) + rgb(lk.ripe)) / 2])
    base = states[np.minimum((p.u1 * 4).astype(np.int64), 3)]
    u, _ = p.rot()
    period = (4.0 + 5.0 * p.u2) * p.scale
    stripes = np.sin(2 * np.pi * u / period)
    low = 0.05 * p.noise(40 * p.scale)
    return base * (1 + 0.13 * stripes + low)[:, None] + p.grain(0.02)


def _tex_pasture(p: Pixels) -> np.ndarray:
    lk = p.look
    base = rgb(lk.veg) * (0.95 + 0.12 * p.u1[:, None])
    img = base * (1 + 0.07 * p.noise(14 * p.scale))[:, None] + p.grain(0.015)
    if lk.hedges > 0:  # bocage: dark tree lines along a share of the field borders
        hedge = p.border & (p.u2 < lk.hedges)
        tree = rgb(lk.tree) * (0.9 + 0.2 * p.noise(2))[:, None]
        img = np.where(hedge[:, None], tree, img)
    return img


def _tex_forest(p: Pixels) -> np.ndarray:
    lk = p.look
    crowns = p.noise(3.0 * p.scale) + 0.5 * p.noise(1.5 * p.scale)
    img = rgb(lk.tree) * np.clip(0.75 + 0.35 * crowns, 0.2, 1.4)[:, None]
    if lk.canopy_gap > 0:
        gaps = p.noise(6.0 * p.scale) > (1.6 - 2.6 * lk.canopy_gap)
        img = np.where(gaps[:, None], rgb(lk.soil) * 0.9 + p.grain(0.03), img)
    return img


def _tex_herbaceous(p: Pixels) -> np.ndarray:
    lk = p.look
    mix = np.clip(0.5 + 0.5 * p.noise(7 * p.scale), 0, 1)[:, None]
    img = rgb(lk.veg) * (1 - mix) + rgb(lk.soil) * 0.95 * mix
    shrubs = p.noise(2.0 * p.scale) > 1.3
    return np.where(shrubs[:, None], rgb(lk.tree), img) + p.grain(0.03)


def _lots(p: Pixels, block: np.ndarray):
    """Block grid in the parcel's orientation: fractional position in the block and a hash of the lot."""
    u, v = p.rot()
    bu, bv = np.floor(u / block), np.floor(v / block)
    fu, fv = u / block - bu, v / block - bv
    h = (bu.astype(np.int64) * 73856093) ^ (bv.astype(np.int64) * 19349663) ^ (p.pid.astype(np.int64) * 83492791)
    return u, fu, fv, np.abs(h)


def _tex_urban(p: Pixels) -> np.ndarray:
    lk = p.look
    _, fu, fv, h = _lots(p, (10.0 + 8.0 * p.u2) * p.scale)
    street = (fu < 0.18) | (fv < 0.18)
    roofs = np.asarray(lk.roofs, dtype=np.float32)
    roof = roofs[h % len(roofs)] * (0.92 + 0.04 * ((h // 7) % 5))[:, None]
    ridge = np.where((fu > 0.59) ^ ((h // 3) % 2 == 0), 0.85, 1.0).astype(np.float32)[:, None]
    garden = (h // 11) % 10 < 3
    img = np.where(garden[:, None], rgb(lk.veg) * 0.95, roof * ridge)
    img = np.where(street[:, None], rgb((0.42, 0.42, 0.43)), img)
    return img + p.grain(0.02)


def _tex_industrial(p: Pixels) -> np.ndarray:
    u, fu, fv, h = _lots(p, (28.0 + 20.0 * p.u2) * p.scale)
    flat = np.asarray([(0.80, 0.81, 0.82), (0.66, 0.68, 0.72), (0.90, 0.90, 0.88), (0.55, 0.58, 0.62)],
                      dtype=np.float32)
    img = flat[(h // 3) % 4]
    parking = h % 3 == 2  # else a flat roof
    marks = (np.abs(np.sin(np.pi * u / 3.0)) < 0.12) & (fv % 0.5 < 0.35)
    lot = np.where(marks[:, None], rgb((0.85, 0.85, 0.85)), rgb((0.30, 0.30, 0.32)))
    img = np.where(parking[:, None], lot, img)
    street = (fu < 0.1) | (fv < 0.1)
    img = np.where(street[:, None], rgb((0.38, 0.38, 0.39)), img)
    return img * (1 + 0.04 * p.noise(20))[:, None] + p.grain(0.015)


def _tex_mine(p: Pixels) -> np.ndarray:
    light = rgb(p.look.soil) * 1.15 + 0.05
    u, _ = p.rot()
    tracks = (np.abs(np.sin(2 * np.pi * u / (25 * p.scale))) < 0.06)[:, None]
    img = light * (1 + 0.10 * p.noise(5 * p.scale))[:, None]
    return np.where(tracks, light * 0.75, img) + p.grain(0.04)


def _tex_green_urban(p: Pixels) -> np.ndarray:
    lk = p.look
    lawn = np.clip(rgb(lk.veg) * rgb((0.95, 1.25, 0.9)), 0, 1)
    img = lawn * (1 + 0.04 * p.noise(10))[:, None]
    trees = p.noise(4 * p.scale) > 1.0
    img = np.where(trees[:, None], rgb(lk.tree), img)
    u, _ = p.rot()
    paths = np.abs(np.sin(2 * np.pi * u / (45 * p.scale))) < 0.04
    img = np.where(paths[:, None], rgb((0.78, 0.74, 0.66)), img)
    return img + p.grain(0.015)


def _tex_permanent(p: Pixels) -> np.ndarray:
    lk = p.look
    u, v = p.rot()
    per = (5.0 + 2.0 * p.u2) * p.scale
    du = np.abs((u / per) % 1 - 0.5)
    dv = np.abs((v / (per * (0.5 + 0.5 * p.u1))) % 1 - 0.5)
    plant = (du < 0.22) & (dv < 0.3)
    return np.where(plant[:, None], rgb(lk.tree) * 1.1, rgb(lk.soil)) + p.grain(0.03)


def _tex_open(p: Pixels) -> np.ndarray:
    n = p.noise(2 * p.scale) + 0.5 * p.noise(8 * p.scale)
    return rgb((0.78, 0.76, 0.72)) * (1 + 0.12 * n)[:, None]


def _tex_wetland(p: Pixels) -> np.ndarray:
    lk = p.look
    pools = p.noise(6 * p.scale) > 0.5
    reeds = (rgb(lk.veg) * 0.8 + rgb((0.05, 0.05, 0.1))) * (1 + 0.12 * p.noise(1.5))[:, None]
    return np.where(pools[:, None], rgb(lk.water) * 1.1, reeds)


def _tex_water(p: Pixels) -> np.ndarray:
    u, _ = p.rot()
    waves = np.sin(2 * np.pi * u / ((7 + 5 * p.u2) * p.scale))
    return rgb(p.look.water) * (1 + 0.04 * waves + 0.05 * p.noise(60))[:, None] + p.grain(0.006)


# The painter of each land-use id (ids 0, 8, 9 and 15 have none: "no information" parcels borrow a class's look,
# 8 and 9 do not occur in MiniFrance, clouds are drawn over the tile).
TEXTURES = {
    1: _tex_urban, 2: _tex_industrial, 3: _tex_mine, 4: _tex_green_urban, 5: _tex_arable, 6: _tex_permanent,
    7: _tex_pasture, 10: _tex_forest, 11: _tex_herbaceous, 12: _tex_open, 13: _tex_wetland, 14: _tex_water,
}
