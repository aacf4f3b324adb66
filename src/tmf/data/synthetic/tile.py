"""One synthetic tile, as a chain of small steps: the tile's class mix, its parcels and their classes, the parcel
map, the textures, roads, a cloud, and the regional radiometry (docs/synthetic.md).

Every step draws from the tile's one random stream in a fixed order, so a tile is a pure function of the seed,
the city and its index (the generated files are byte-identical from run to run).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from tmf.data.minifrance import N_CLASSES
from tmf.data.synthetic.looks import HAZE_COLOUR, LOOKS, REGIONS, Look, region_prior
from tmf.data.synthetic.textures import TEXTURES, Noise, Pixels, rgb

_CITY_CONCENTRATION = 300.0  # Dirichlet concentration of a city's mix around its prior (cities of a region alike)
_TILE_CONCENTRATION = 25.0  # ... of a tile's mix around its city's (tiles differ: centre vs countryside)
_SHARE_NO_INFO = 0.006  # parcels labelled 0 ("no information"), drawn with any texture
_P_CLOUDY_TILE = 0.12  # chance that a tile holds a cloud and its shadow (id 15)
_IDS = np.arange(N_CLASSES)


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator derived from the seed and string/int keys only (stable across runs and orders)."""
    h = hashlib.sha256(("\x1f".join([str(seed), *map(str, keys)])).encode()).digest()
    return np.random.default_rng(np.frombuffer(h, dtype=np.uint32).tolist())


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
    S = int(size)
    # textures are sized for sub-tiles of 1/8 of a 512 px tile and grow slowly with bigger tiles
    scale = max(1.0, S / 512.0) ** 0.5
    mix = _tile_mix(style, rng)
    seeds, label_cls, look_cls = _parcels(mix, rng, S, 70.0 * style.look.field_scale * scale)
    pid, border = _parcel_map(seeds, rng, S)
    img, label = _paint(style.look, pid, border, label_cls, look_cls, rng, scale)
    _add_roads(img, label, rng, scale)
    img = _add_cloud(img, label, rng)
    return _radiometry(img, style, rng), label


def _tile_mix(style: _CityStyle, rng: np.random.Generator) -> np.ndarray:
    """The tile's class mix: a Dirichlet draw around its city's."""
    nz = style.mix > 0
    mix = np.zeros(N_CLASSES)
    mix[nz] = rng.dirichlet(np.maximum(_TILE_CONCENTRATION * style.mix[nz], 0.05))
    return mix


def _parcels(mix: np.ndarray, rng: np.random.Generator, S: int, cell: float):
    """Parcel seeds (n, 2), their labels and the class whose texture they get (that of a class of the mix for the
    "no information" parcels: labels, not images, are missing)."""
    from scipy.spatial import cKDTree

    n_fine = max(4, int(round(S * S / cell**2)))
    n_coarse = max(2, n_fine // 8)
    fine = rng.uniform(0, S, (n_fine, 2))
    coarse = rng.uniform(0, S, (n_coarse, 2))
    coarse_cls = rng.choice(_IDS, size=n_coarse, p=mix)
    _, zone = cKDTree(coarse).query(fine)
    fine_cls = np.where(rng.random(n_fine) < 0.7, coarse_cls[zone], rng.choice(_IDS, size=n_fine, p=mix))
    fine_cls = np.where(rng.random(n_fine) < _SHARE_NO_INFO, 0, fine_cls)
    look_cls = np.where(fine_cls == 0, rng.choice(_IDS, size=n_fine, p=mix), fine_cls)
    return fine, fine_cls, look_cls


def _parcel_map(seeds: np.ndarray, rng: np.random.Generator, S: int) -> tuple[np.ndarray, np.ndarray]:
    """Parcel id of every pixel (Voronoi cells of the seeds on warped coordinates, computed at half resolution)
    and the parcel borders (2 px wide), both (S, S)."""
    from scipy.spatial import cKDTree

    h2 = (S + 1) // 2
    hy, hx = np.meshgrid(np.arange(h2, dtype=np.float32) * 2, np.arange(h2, dtype=np.float32) * 2,
                         indexing="ij")
    hy, hx = hy.ravel(), hx.ravel()
    warp = 0.05 * S
    wy = hy + warp * Noise(rng, S, S / 4)(hy, hx) + 3 * Noise(rng, S, 6)(hy, hx)
    wx = hx + warp * Noise(rng, S, S / 4)(hy, hx) + 3 * Noise(rng, S, 6)(hy, hx)
    _, pid_half = cKDTree(seeds).query(np.stack([wy, wx], axis=1))
    pid = np.repeat(np.repeat(pid_half.reshape(h2, h2), 2, 0), 2, 1)[:S, :S]
    border = np.zeros((S, S), dtype=bool)
    border[1:, :] |= pid[1:, :] != pid[:-1, :]
    border[:, 1:] |= pid[:, 1:] != pid[:, :-1]
    border[:-1, :] |= border[1:, :].copy()
    border[:, :-1] |= border[:, 1:].copy()
    return pid, border


def _paint(look: Look, pid: np.ndarray, border: np.ndarray, label_cls: np.ndarray, look_cls: np.ndarray,
           rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The image (S, S, 3) float32, each class's parcels painted by its texture, and the label map (S, S)."""
    S = pid.shape[0]
    n = len(label_cls)
    angle = rng.uniform(0, np.pi, n).astype(np.float32)
    u1 = rng.random(n).astype(np.float32)
    u2 = rng.random(n).astype(np.float32)
    pid_flat = pid.ravel()
    label = label_cls[pid_flat].astype(np.uint8)
    look_px = look_cls[pid_flat]
    order = np.argsort(look_px, kind="stable")
    classes, starts = np.unique(look_px[order], return_index=True)
    img = np.empty((S * S, 3), dtype=np.float32)
    for cid, idx in zip(classes, np.split(order, starts[1:]), strict=True):
        q = pid_flat[idx]
        pts = Pixels(rng, S, look, (idx // S).astype(np.float32), (idx % S).astype(np.float32), q, angle[q], u1[q],
                     u2[q], border.ravel()[idx], scale)
        img[idx] = TEXTURES[int(cid)](pts)
    return img.reshape(S, S, 3), label.reshape(S, S)


def _add_roads(img: np.ndarray, label: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """Roads (transport units, id 2): straight asphalt bands with a centre line, in place."""
    S = img.shape[0]
    for _ in range(rng.poisson(0.8)):
        a = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(0, S, 2)
        d = np.subtract.outer((np.arange(S) - cy) * -np.cos(a), (np.arange(S) - cx) * -np.sin(a))
        road = np.abs(d) < rng.uniform(2.5, 5.0) * scale
        img[road] = rgb((0.36, 0.36, 0.37)) + 0.02 * rng.standard_normal((int(road.sum()), 1), dtype=np.float32)
        img[road & (np.abs(d) < 0.5)] = (0.85, 0.85, 0.8)
        label[road] = 2


def _add_cloud(img: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """On some tiles a cloud and its shadow (id 15; labels in place); returns the image."""
    if rng.random() >= _P_CLOUDY_TILE:
        return img
    S = img.shape[0]
    cy, cx = rng.uniform(0, S, 2)
    r = rng.uniform(0.04, 0.09) * S
    y0, y1 = int(max(0, cy - 2 * r)), int(min(S, cy + 2 * r))
    x0, x1 = int(max(0, cx - 2 * r)), int(min(S, cx + 2 * r))
    by, bx = np.meshgrid(np.arange(y0, y1, dtype=np.float32), np.arange(x0, x1, dtype=np.float32), indexing="ij")
    blob = np.hypot(by - cy, bx - cx) / r + 0.35 * Noise(rng, S, r / 2)(by, bx)
    cloud = np.zeros((S, S), dtype=np.float32)
    cloud[y0:y1, x0:x1] = np.clip(1.6 - blob, 0, 1)
    sy, sx = int(0.8 * r), int(0.5 * r)
    shadow = np.zeros_like(cloud)
    shadow[sy:, sx:] = cloud[: S - sy, : S - sx]
    img *= 1 - 0.55 * shadow[..., None]
    img = img * (1 - cloud[..., None]) + 0.93 * cloud[..., None]
    label[(cloud > 0.5) | (shadow > 0.5)] = 15
    return img


def _radiometry(img: np.ndarray, style: _CityStyle, rng: np.random.Generator) -> np.ndarray:
    """Regional radiometry (colour cast, contrast, brightness, haze), the city's jitter and sensor noise → uint8."""
    lk = style.look
    gain = rgb(lk.cast) * style.gain * (1 - lk.haze) * lk.contrast * 255.0
    bias = ((0.5 - 0.5 * lk.contrast + lk.brightness + style.offset) * rgb(lk.cast) * style.gain
            * (1 - lk.haze) + lk.haze * HAZE_COLOUR) * 255.0 + 0.5
    img = img * gain + bias
    img += rng.standard_normal((img.shape[0], img.shape[1], 1), dtype=np.float32) * 2.0
    return np.clip(img, 0, 255).astype(np.uint8)
