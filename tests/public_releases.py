"""Scaled-down fixtures shaped like the public releases (SPEC.md §1, §7; TorchGeo's DFC2022 loader and its
test-data generator): seeded, deterministic, about a second each.

DFC2022 (:func:`make_dfc2022_release`): the three archives ``labeled_train.zip``, ``unlabeled_train.zip``,
``val.zip`` with the release's folder and file names, each archive's members under its split folder::

    labeled_train/Nice/BDORTHO/06-2014-1040-6300-LA93-0M50-E080.tif        RGB uint8, 0.5 m, EPSG:2154
    labeled_train/Nice/RGEALTI/06-2014-1040-6300-LA93-0M50-E080_RGEALTI.tif  float32, 1 m, no-data -99999
    labeled_train/Nice/UrbanAtlas/06-2014-1040-6300-LA93-0M50-E080_UA2012.tif  uint8 ids 0-15 (labeled_train only)

all 16 cities (labeled_train: Nice, Nantes_Saint-Nazaire; unlabeled_train: the 6 unlabeled cities; val: the 8
test cities, RGB + DEM, no masks), ``tiles_per_city`` tiles each of odd sizes (prime numbers of pixels, so
multiples of nothing), some JPEG-compressed (YCbCr in the unlabeled cities), the last tile of Marseille_Martigues in a second CRS
(EPSG:32631, an off-specification tile: a warning, not a stop), no-data corners (RGB 0, label 0) and
−99999 patches in the DEMs. With ``test_partition=True`` also ``test.zip``: ``test/<area>/BDORTHO`` and
``RGEALTI`` for three areas without any georeference. The real test partition's area and file names are not
documented anywhere we could read; ``TestArea_A`` … and ``<area>-<k>`` are placeholders in its layout.

MiniFrance (:func:`make_minifrance_release`): one archive (``MiniFrance.zip`` or ``.tar.gz``) with a top folder
``MiniFrance/`` holding ``labeled/``, ``unlabeled/``, ``test/``; labels only for the labeled cities (the
public release withholds those of the unlabeled and test cities), no DEM.

Both return a :class:`Release`::

    rel = make_dfc2022_release(tmp_path / "dfc", seed=0)
    rel.archives   # {"labeled_train.zip": Path, "unlabeled_train.zip": Path, "val.zip": Path}
    rel.checksums  # {"labeled_train.zip": "md5:<hex>", ...}
    rel.url()      # data.url: [{"url": "<path>", "checksum": "md5:<hex>"}, ...] for every archive
    rel.tiles      # {"labeled_train": 4, "unlabeled_train": 12, "val": 16}: tiles per split folder
    rel.folder     # the unpacked tree the archives were made from
"""

from __future__ import annotations

import hashlib
import math
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tmf.data.minifrance import CITIES, DEM_NODATA, DFC2022_FOLDERS, City

PRIMES = (67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113)
DFC_SPLIT = dict(zip(("labeled", "unlabeled", "test"), DFC2022_FOLDERS, strict=True))
TEST_AREAS = ("TestArea_A", "TestArea_B", "TestArea_C")
SECOND_CRS = "EPSG:32631"
LABEL_IDS = np.array([1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15])
_ZIP_DATE = (2022, 1, 3, 0, 0, 0)


@dataclass
class Release:
    archives: dict[str, Path]
    checksums: dict[str, str]
    tiles: dict[str, int]
    folder: Path
    files: list[str] = field(default_factory=list)  # every file, relative to ``folder``

    def url(self, names: list[str] | None = None) -> list[dict]:
        """``data.url`` for these archives (all by default), each with its MD5."""
        return [{"url": str(self.archives[n]), "checksum": self.checksums[n]} for n in (names or self.archives)]


def md5_of(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


def _write(path: Path, bands: np.ndarray, transform: Affine | None, crs: str | None, **opts) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0],
                dtype=bands.dtype.name, **opts)
    if transform is not None:
        prof["transform"] = transform
    if crs is not None:
        prof["crs"] = CRS.from_string(crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(bands)


def _tile_arrays(rng: np.random.Generator, h: int, w: int, corner: bool):
    """RGB (3, h, w) uint8, label (h, w) uint8 in blocks of classes, no-data corner (RGB 0, label 0)."""
    cells = rng.choice(LABEL_IDS, size=(math.ceil(h / 16), math.ceil(w / 16)),
                       p=np.r_[np.full(12, 0.995 / 12), 0.005])
    label = np.kron(cells, np.ones((16, 16), dtype=np.int64))[:h, :w].astype(np.uint8)
    base = rng.integers(40, 200, size=(3, 16), dtype=np.int64)
    rgb = base[:, label] + rng.integers(-25, 26, size=(3, h, w))
    rgb = np.clip(rgb, 1, 255).astype(np.uint8)
    if corner:
        yy, xx = np.mgrid[:h, :w]
        mask = yy + xx < min(h, w) // 3
        rgb[:, mask] = 0
        label[mask] = 0
    return rgb, label


def _dem(rng: np.random.Generator, h: int, w: int, patch: bool) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    z = 50 + 0.3 * yy + 0.1 * xx + rng.normal(0, 0.5, (h, w))
    if patch:
        z[h // 2: h // 2 + 5, w // 3: w // 3 + 7] = DEM_NODATA
    return z.astype(np.float32)[None]


def _tiles(out: Path, rng, split_folder: str, city: str, stems: list[str], origins, crs: list[str | None],
           labels: bool, dem: bool, ycbcr: bool, files: list[str]) -> None:
    """Write the tiles of one city: tile ``k`` at ``origins[k]`` in ``crs[k]`` (None: no georeference); odd
    tiles JPEG-compressed (YCbCr when ``ycbcr``), the first with a no-data corner and a DEM no-data patch."""
    for k, (stem, (x0, y0), tile_crs) in enumerate(zip(stems, origins, crs, strict=True)):
        h, w = (int(v) for v in rng.choice(PRIMES, 2))
        rgb, label = _tile_arrays(rng, h, w, corner=k == 0)
        t_img = Affine(0.5, 0, x0, 0, -0.5, y0) if tile_crs else None
        jpeg = {"compress": "JPEG", "photometric": "YCBCR" if ycbcr else "RGB"} if k % 2 else {"compress": "deflate"}
        base = out / split_folder / city
        paths = {f"BDORTHO/{stem}.tif": (rgb, t_img, jpeg)}
        if labels:
            paths[f"UrbanAtlas/{stem}_UA2012.tif"] = (label[None], t_img, {"compress": "deflate"})
        if dem:
            t_dem = Affine(1.0, 0, x0, 0, -1.0, y0) if tile_crs else None
            paths[f"RGEALTI/{stem}_RGEALTI.tif"] = (_dem(rng, math.ceil(h / 2), math.ceil(w / 2), patch=k == 0),
                                                    t_dem, {"compress": "deflate", "nodata": DEM_NODATA})
        for rel, (arr, t, opts) in paths.items():
            _write(base / rel, arr, t, tile_crs, **opts)
            files.append(f"{split_folder}/{city}/{rel}")


def _zip(folder: Path, top: str, archive: Path) -> None:
    """A zip of ``folder/top`` with members under ``top/`` (folders included), fixed timestamps."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in [folder / top, *sorted((folder / top).rglob("*"))]:
            name = p.relative_to(folder).as_posix() + ("/" if p.is_dir() else "")
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = (0o40755 if p.is_dir() else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, b"" if p.is_dir() else p.read_bytes())


def _stems(city, n: int) -> tuple[list[str], list[tuple[float, float]]]:
    stems = [f"{city.dept}-2013-{city.x_km + k:04d}-{city.y_km - k:04d}-LA93-0M50-E080" for k in range(n)]
    return stems, [((city.x_km + k) * 1000.0, (city.y_km - k) * 1000.0) for k in range(n)]


def make_dfc2022_release(out: str | Path, seed: int = 0, tiles_per_city: int = 2,
                         test_partition: bool = False, extra_cities: tuple[City, ...] = ()) -> Release:
    """Write DFC2022's archives under ``out`` (see the module docstring); return a :class:`Release`.
    ``extra_cities``: cities that are not one of MiniFrance's 16, written into the archive of their split
    (labels when labeled), e.g. ``City("Toulon", "labeled", 0, "83", 940, 6240)``."""
    out = Path(out)
    tree = out / "tree"
    rng = np.random.default_rng(seed)
    files: list[str] = []
    tiles = dict.fromkeys(DFC2022_FOLDERS, 0)
    for city in (*CITIES, *extra_cities):
        folder = DFC_SPLIT[city.split]
        stems, origins = _stems(city, tiles_per_city)
        crs: list[str | None] = ["EPSG:2154"] * tiles_per_city
        if city.name == "Marseille_Martigues":  # last tile in a second CRS: origin in UTM 31N
            origins[-1], crs[-1] = (690000.0, 4800000.0), SECOND_CRS
        _tiles(tree, rng, folder, city.name, stems, origins, crs, labels=city.split == "labeled", dem=True,
               ycbcr=city.split == "unlabeled", files=files)
        tiles[folder] += tiles_per_city
    names = list(DFC2022_FOLDERS)
    if test_partition:
        for area in TEST_AREAS:
            stems = [f"{area}-{k}" for k in range(tiles_per_city)]
            _tiles(tree, rng, "test", area, stems, [(0.0, 0.0)] * tiles_per_city, [None] * tiles_per_city,
                   labels=False, dem=True, ycbcr=False, files=files)
        tiles["test"] = len(TEST_AREAS) * tiles_per_city
        names.append("test")
    archives = {}
    for name in names:
        archives[f"{name}.zip"] = out / f"{name}.zip"
        _zip(tree, name, archives[f"{name}.zip"])
    return Release(archives, {n: md5_of(p) for n, p in archives.items()}, tiles, tree, files)


def make_minifrance_release(out: str | Path, seed: int = 0, tiles_per_city: int = 2, fmt: str = "zip") -> Release:
    """Write one MiniFrance archive (``MiniFrance.zip`` or ``MiniFrance.tar.gz``) without the labels of the
    unlabeled and test cities; return a :class:`Release`."""
    import tarfile

    out = Path(out)
    tree = out / "tree"
    rng = np.random.default_rng(seed)
    files: list[str] = []
    tiles = {"labeled": 0, "unlabeled": 0, "test": 0}
    for city in CITIES:
        stems, origins = _stems(city, tiles_per_city)
        _tiles(tree / "MiniFrance", rng, city.split, city.name, stems, origins, ["EPSG:2154"] * tiles_per_city,
               labels=city.split == "labeled", dem=False, ycbcr=city.split == "test", files=files)
        tiles[city.split] += tiles_per_city
    name = f"MiniFrance.{fmt}"
    archive = out / name
    if fmt == "zip":
        _zip(tree, "MiniFrance", archive)
    elif fmt == "tar.gz":
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(tree / "MiniFrance", arcname="MiniFrance")
    else:
        raise ValueError(f"fmt must be zip or tar.gz, got {fmt!r}")
    return Release({name: archive}, {name: md5_of(archive)}, tiles, tree / "MiniFrance", files)
