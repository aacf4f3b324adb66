"""One reader for the MiniFrance and DFC2022 layouts (SPEC.md §1, §7): index and check every tile.

Layout: ``<root>/<split>/<City>/BDORTHO/<stem>.tif``, labels at ``UrbanAtlas/<stem>_UA2012.tif`` (missing for
the unlabeled and, in the public releases, the test cities), DFC2022's elevation at
``RGEALTI/<stem>_RGEALTI.tif``. Split folders map onto Table 2.4's splits
(:data:`tmf.data.minifrance.SPLIT_FOLDERS`). Every raster is decoded block by block and checked
(:mod:`tmf.data.checks`); errors name the file as the user gave it (archive member or folder under
``data.url``). Decisions for data unlike the specification:

- a city folder that is not one of MiniFrance's 16 is indexed as its own city, in the split its folder names,
  with a warning (``minifrance_city = 0``);
- a tile whose CRS is not Lambert-93 or whose resolution is not 0.5 m is indexed with a warning naming it
  (``off_spec`` says why);
- a tile without georeference is accepted only in DFC2022's test partition, which has none by design: a
  ``test`` folder beside DFC2022's ``labeled_train`` / ``unlabeled_train`` / ``val`` folders
  (``georeferenced = 0``, one warning); anywhere else a missing CRS is an error;
- a tile of a labeled split without its label is an error, unless ``data.missing_label: unlabeled`` moves
  such tiles to the unlabeled split;
- a broken or looping symbolic link among the split and city folders is an error.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from tmf.data.checks import check_dem, check_image, check_label, open_raster
from tmf.data.layout import user_path
from tmf.data.minifrance import (
    CITY_BY_NAME,
    DEM_DIR,
    DEM_SUFFIX,
    DFC2022_FOLDERS,
    IMAGE_DIR,
    LABEL_DIR,
    LABEL_SUFFIX,
    SPLIT_FOLDERS,
    SPLITS,
    TILE_CRS,
    TILE_RES,
    city_rank,
)

log = logging.getLogger(__name__)

TILES_COLUMNS = ["city", "split", "tile", "image", "label", "dem", "height", "width", "crs", "x_res",
                 "minifrance_city", "georeferenced", "off_spec"]
MISSING_LABEL = ("error", "unlabeled")
_SHOW = 8  # tiles named in one warning line


def label_path_for(image: Path) -> Path:
    """``<City>/BDORTHO/<stem>.tif`` → ``<City>/UrbanAtlas/<stem>_UA2012.tif``."""
    return image.parent.parent / LABEL_DIR / f"{image.stem}{LABEL_SUFFIX}.tif"


def dem_path_for(image: Path) -> Path:
    """``<City>/BDORTHO/<stem>.tif`` → ``<City>/RGEALTI/<stem>_RGEALTI.tif``."""
    return image.parent.parent / DEM_DIR / f"{image.stem}{DEM_SUFFIX}.tif"


@lru_cache(maxsize=4096)
def _shown(root: str, path: str) -> str:
    return user_path(root, path)


def _crs_name(crs) -> str:
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def _check_tile(img: Path, root: Path, allow_no_crs: bool) -> dict:
    """Check one tile (image, and its label and DEM when present); its row of the index (without city/split)."""
    r = str(root)
    name = _shown(r, str(img))
    grid = check_image(img, name)
    if grid["crs"] is None and not allow_no_crs:
        raise ValueError(f"{name}: no CRS (expected {TILE_CRS}, Lambert-93); tiles without georeference are "
                         "accepted only in DFC2022's test partition (a test folder beside labeled_train, "
                         "unlabeled_train and val)")
    row = {"tile": img.stem, "image": img.relative_to(root).as_posix(), "label": "", "dem": "",
           "height": grid["height"], "width": grid["width"], "crs": _crs_name(grid["crs"]),
           "georeferenced": int(grid["crs"] is not None)}
    lab, dem = label_path_for(img), dem_path_for(img)
    if lab.exists():
        check_label(lab, grid, name, _shown(r, str(lab)))
        row["label"] = lab.relative_to(root).as_posix()
    if dem.exists():
        check_dem(dem, grid, name, _shown(r, str(dem)))
        row["dem"] = dem.relative_to(root).as_posix()
    off = []
    if grid["crs"] is None:
        row["x_res"] = float("nan")
        off.append("no georeference")
    else:
        t = grid["transform"]
        row["x_res"] = float(t.a)
        if row["crs"] != TILE_CRS:
            off.append(f"CRS {row['crs']}")
        if abs(t.a - TILE_RES) > 1e-6 or abs(-t.e - TILE_RES) > 1e-6:
            off.append(f"{t.a:g} x {-t.e:g} m/px")
    row["off_spec"] = "; ".join(off)
    return row


def _check_many(args: list[tuple[str, str, bool]]) -> list[dict]:
    import rasterio

    # no folder listing per open (big folders); a small block cache: every block is read once
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_CACHEMAX=64):
        return [_check_tile(Path(i), Path(r), ok) for i, r, ok in args]


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` (not hidden), sorted; a broken or looping symbolic link is an error."""
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        p = Path(entry.path)
        if entry.is_symlink():
            try:
                os.stat(p)  # follows the link: ELOOP / ENOENT when it loops or dangles
            except OSError as e:
                raise ValueError(f"{p}: symbolic link that cannot be followed ({e.strerror}: "
                                 f"{os.readlink(p)!r}); fix or remove it") from None
        if p.is_dir():
            out.append(p)
    return out


def _warn_tiles(what: str, names: list[str]) -> None:
    if names:
        more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
        log.warning("%d tile(s) %s: %s%s", len(names), what, ", ".join(names[:_SHOW]), more)


def index_tiles(root: str | Path, workers: int = 1, missing_label: str = "error") -> pd.DataFrame:
    """Index and check every tile under ``root`` (MiniFrance or DFC2022 layout).

    Returns one row per tile with the columns of ``data/tiles.csv`` (docs/file-formats.md, :data:`TILES_COLUMNS`);
    paths relative to ``root`` (``label`` / ``dem`` empty when absent). Rows sorted by split (Table 2.4 order),
    city (order of ``CITIES``, then other city folders by name), tile stem. The checks run in ``workers``
    processes. ``missing_label``: what a labeled-split tile without label does (``error`` | ``unlabeled``).
    Raises ValueError / FileNotFoundError naming the folder or file at fault.
    """
    if missing_label not in MISSING_LABEL:
        raise ValueError(f"data.missing_label must be one of {MISSING_LABEL}, got {missing_label!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}")
    split_dirs = _subdirs(root)
    if not split_dirs:
        raise FileNotFoundError(f"{root}: no split folder (expected {', '.join(SPLITS)}, or DFC2022's "
                                f"{', '.join(DFC2022_FOLDERS)})")
    dfc2022 = any(d.name in DFC2022_FOLDERS for d in split_dirs)
    found: list[tuple[str, str, Path, bool]] = []
    for sdir in split_dirs:
        if sdir.name not in SPLIT_FOLDERS:
            raise ValueError(f"{sdir}: unknown split folder; expected one of {sorted(SPLIT_FOLDERS)}")
        split = SPLIT_FOLDERS[sdir.name]
        no_crs_ok = dfc2022 and sdir.name == "test"
        for cdir in _subdirs(sdir):
            city = CITY_BY_NAME.get(cdir.name)
            if city is None:
                log.warning("%s: %s is not one of MiniFrance's 16 cities; indexed as its own city in split %r "
                            "(minifrance_city = 0 in tiles.csv)", cdir, cdir.name, split)
            elif city.split != split:
                raise ValueError(f"{cdir}: {cdir.name} belongs to split {city.split!r} (Table 2.4), not {split!r}")
            img_dir = cdir / IMAGE_DIR
            if not img_dir.is_dir():
                raise FileNotFoundError(f"{img_dir}: missing image folder")
            images = sorted(img_dir.glob("*.tif"))
            if not images:
                raise FileNotFoundError(f"{img_dir}: no .tif tile")
            found.extend((cdir.name, split, img, no_crs_ok) for img in images)

    unlabeled = [i for i, (_, split, img, _) in enumerate(found)
                 if split == "labeled" and not label_path_for(img).exists()]
    if unlabeled and missing_label == "error":
        img = found[unlabeled[0]][2]
        raise ValueError(f"{_shown(str(root), str(img))}: tile of a labeled split without its label "
                         f"{label_path_for(img).relative_to(root)} ({len(unlabeled)} such tile(s)); set "
                         "`data.missing_label: unlabeled` to index such tiles in the unlabeled split")
    for i in unlabeled:
        found[i] = (found[i][0], "unlabeled", *found[i][2:])
    _warn_tiles("of a labeled split without label moved to the unlabeled split (data.missing_label)",
                [found[i][2].stem for i in unlabeled])

    args = [(str(img), str(root), ok) for _, _, img, ok in found]
    if workers > 1 and len(found) > 1:
        from concurrent.futures import ProcessPoolExecutor

        chunks = [args[k::workers] for k in range(workers)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = [fut.result() for fut in [pool.submit(_check_many, c) for c in chunks if c]]
        checked: list = [None] * len(found)
        for k, part in enumerate(parts):
            checked[k::workers] = part
    else:
        checked = _check_many(args)
    rows = [{"city": city, "split": split, "minifrance_city": int(city in CITY_BY_NAME), **row}
            for (city, split, _, _), row in zip(found, checked, strict=True)]
    df = pd.DataFrame(rows, columns=TILES_COLUMNS)
    dup = df.duplicated(["city", "tile"])
    if dup.any():
        r = df[dup].iloc[0]
        raise ValueError(f"{root}: tile {r['tile']} of {r['city']} found twice")
    no_geo = df["georeferenced"] == 0
    if no_geo.any():
        log.warning("%d tile(s) of DFC2022's test partition have no georeference (by design): indexed with "
                    "georeferenced = 0, read on their pixel grid", int(no_geo.sum()))
    _warn_tiles(f"not in {TILE_CRS} (Lambert-93)", list(df.loc[df["off_spec"].str.contains("CRS"), "image"]))
    _warn_tiles(f"not at {TILE_RES} m/px", list(df.loc[df["off_spec"].str.contains("m/px"), "image"]))
    return sort_tiles(df)


def sort_tiles(df: pd.DataFrame) -> pd.DataFrame:
    """Rows by split (Table 2.4 order), city (:func:`tmf.data.minifrance.city_rank`), tile stem."""
    order_split = {s: i for i, s in enumerate(SPLITS)}
    keys = df.assign(_s=df["split"].map(order_split), _c=df["city"].map(city_rank))
    return keys.sort_values(["_s", "_c", "tile"], kind="stable").drop(columns=["_s", "_c"]).reset_index(drop=True)


def read_tiles_csv(path: str | Path) -> pd.DataFrame:
    """Read ``data/tiles.csv`` back (paths as strings, empty when absent; ``x_res`` NaN without georeference)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tile index not found: {path}")
    text = {c: str for c in ("label", "image", "dem", "tile", "city", "split", "crs", "off_spec")}
    df = pd.read_csv(path, dtype=text, keep_default_na=False, na_values={"x_res": [""]})
    missing = [c for c in TILES_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (written by an older `tmf index`: run it again)")
    return df


def read_window(path: str | Path, row_off: int, col_off: int, h: int, w: int) -> np.ndarray:
    """Read one window of a raster: ``(h, w, bands)`` for multi-band images, ``(h, w)`` for one band.

    Only the window is read (rasterio windowed read); a window outside the raster is an error.
    """
    from rasterio.windows import Window

    path = Path(path)
    with open_raster(path) as src:
        if row_off < 0 or col_off < 0 or row_off + h > src.height or col_off + w > src.width:
            raise ValueError(f"{path}: window rows {row_off}+{h}, cols {col_off}+{w} outside the "
                             f"{src.height}x{src.width} raster")
        arr = src.read(window=Window(col_off, row_off, w, h))
    return arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
