"""One reader for the MiniFrance and DFC2022 layouts (SPEC.md §1): index and check every tile.

Layout: ``<root>/<split>/<City>/BDORTHO/<stem>.tif`` with labels at ``UrbanAtlas/<stem>_UA2012.tif``
(possibly missing, e.g. for the unlabeled cities). DFC2022 names its split folders ``labeled_train``,
``unlabeled_train`` and ``val``; they map onto the splits of Table 2.4. Its ``RGEALTI`` elevation folder is
ignored. Every raster is opened and checked (readable, CRS present, image 3 × uint8, label 1 × uint8 with
ids 0–15 read window by window, image and label on the same grid); errors name the offending file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tmf.data.minifrance import CITY_BY_NAME, CITY_NAMES, N_CLASSES, SPLITS

TILES_COLUMNS = ["city", "split", "tile", "image", "label", "height", "width", "crs", "x_res"]

# split folder names of the public releases → split of Table 2.4
SPLIT_FOLDERS: dict[str, str] = {
    "labeled": "labeled",
    "unlabeled": "unlabeled",
    "test": "test",
    "labeled_train": "labeled",
    "unlabeled_train": "unlabeled",
    "val": "test",
}
IMAGE_DIR, LABEL_DIR = "BDORTHO", "UrbanAtlas"
LABEL_SUFFIX = "_UA2012"
_ROWS_PER_READ = 1024  # label rows read at once while checking ids (a 10,000 px tile: ~10 MB per read)


def label_path_for(image: Path) -> Path:
    """``<City>/BDORTHO/<stem>.tif`` → ``<City>/UrbanAtlas/<stem>_UA2012.tif``."""
    return image.parent.parent / LABEL_DIR / f"{image.stem}{LABEL_SUFFIX}.tif"


def _open(path: Path):
    import rasterio

    try:
        return rasterio.open(path)
    except Exception as e:  # rasterio raises RasterioIOError and friends
        raise ValueError(f"{path}: unreadable raster ({e})") from None


def _crs_name(crs) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def check_image(path: Path) -> dict:
    """Open an image tile and check it: CRS present, 3 bands, uint8. Returns its grid description."""
    with _open(path) as src:
        if src.crs is None:
            raise ValueError(f"{path}: no CRS (expected EPSG:2154, Lambert-93)")
        if src.count != 3:
            raise ValueError(f"{path}: {src.count} band(s), expected 3 (RGB)")
        if any(dt != "uint8" for dt in src.dtypes):
            raise ValueError(f"{path}: dtype {src.dtypes[0]}, expected uint8")
        return {"height": src.height, "width": src.width, "crs": src.crs, "transform": src.transform}


def check_label(path: Path, grid: dict | None = None, image: Path | None = None) -> None:
    """Check a label raster: CRS, 1 band, uint8, ids only in 0–15 (read in row blocks, never the whole
    raster), and, given the image's ``grid``, the same shape, transform and CRS."""
    from rasterio.windows import Window

    with _open(path) as src:
        if src.crs is None:
            raise ValueError(f"{path}: no CRS (expected EPSG:2154, Lambert-93)")
        if src.count != 1:
            raise ValueError(f"{path}: {src.count} bands, expected 1 (label ids)")
        if src.dtypes[0] != "uint8":
            raise ValueError(f"{path}: dtype {src.dtypes[0]}, expected uint8 label ids")
        if grid is not None:
            what = f" of image {image}" if image else ""
            if (src.height, src.width) != (grid["height"], grid["width"]):
                raise ValueError(f"{path}: shape {src.height}x{src.width} differs from the "
                                 f"{grid['height']}x{grid['width']}{what}")
            if src.crs != grid["crs"]:
                raise ValueError(f"{path}: CRS {src.crs} differs from {grid['crs']}{what}")
            if not src.transform.almost_equals(grid["transform"], precision=1e-6):
                raise ValueError(f"{path}: geotransform {tuple(src.transform)[:6]} differs from "
                                 f"{tuple(grid['transform'])[:6]}{what}")
        for r0 in range(0, src.height, _ROWS_PER_READ):
            h = min(_ROWS_PER_READ, src.height - r0)
            try:
                block = src.read(1, window=Window(0, r0, src.width, h))
            except Exception as e:
                raise ValueError(f"{path}: unreadable rows {r0}–{r0 + h} ({e})") from None
            top = int(block.max()) if block.size else 0
            if top >= N_CLASSES:
                raise ValueError(f"{path}: label id {top} in rows {r0}–{r0 + h}; MiniFrance ids are 0–{N_CLASSES - 1}")


def _check_tile(img: Path, root: Path) -> dict:
    """Check one tile (image and, when present, its label); return its row of the index (without city/split)."""
    grid = check_image(img)
    lab = label_path_for(img)
    if lab.exists():
        check_label(lab, grid, img)
        lab_rel = lab.relative_to(root).as_posix()
    else:
        lab_rel = ""
    return {"tile": img.stem, "image": img.relative_to(root).as_posix(), "label": lab_rel,
            "height": grid["height"], "width": grid["width"], "crs": _crs_name(grid["crs"]),
            "x_res": float(grid["transform"].a)}


def _check_many(args: list[tuple[str, str]]) -> list[dict]:
    return [_check_tile(Path(i), Path(r)) for i, r in args]


def index_tiles(root: str | Path, workers: int = 1) -> pd.DataFrame:
    """Index and check every tile under ``root`` (MiniFrance or DFC2022 layout).

    Returns one row per tile with the columns of ``data/tiles.csv`` (docs/file-formats.md): ``city, split,
    tile, image, label, height, width, crs, x_res``; paths relative to ``root`` (``label`` empty when the
    tile has none). Rows sorted by split (Table 2.4 order), city (order of ``CITIES``), tile stem. The checks
    run in ``workers`` processes (the label scan of the real 10,000 px tiles dominates).
    Raises ValueError / FileNotFoundError naming the folder or file at fault.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}")
    found: list[tuple[str, str, Path]] = []
    split_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not split_dirs:
        raise FileNotFoundError(f"{root}: no split folder (expected {', '.join(SPLITS)}, or DFC2022's "
                                "labeled_train, unlabeled_train, val)")
    for sdir in split_dirs:
        if sdir.name not in SPLIT_FOLDERS:
            raise ValueError(f"{sdir}: unknown split folder; expected one of {sorted(SPLIT_FOLDERS)}")
        split = SPLIT_FOLDERS[sdir.name]
        for cdir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if cdir.name not in CITY_BY_NAME:
                raise ValueError(f"{cdir}: unknown city folder; MiniFrance cities are {', '.join(CITY_NAMES)}")
            if CITY_BY_NAME[cdir.name].split != split:
                raise ValueError(f"{cdir}: {cdir.name} belongs to split {CITY_BY_NAME[cdir.name].split!r} "
                                 f"(Table 2.4), not {split!r}")
            img_dir = cdir / IMAGE_DIR
            if not img_dir.is_dir():
                raise FileNotFoundError(f"{img_dir}: missing image folder")
            images = sorted(img_dir.glob("*.tif"))
            if not images:
                raise FileNotFoundError(f"{img_dir}: no .tif tile")
            found.extend((cdir.name, split, img) for img in images)
    if workers > 1 and len(found) > 1:
        from concurrent.futures import ProcessPoolExecutor

        chunks = [[(str(f[2]), str(root)) for f in found[k::workers]] for k in range(workers)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = [fut.result() for fut in [pool.submit(_check_many, c) for c in chunks]]
        checked = [None] * len(found)
        for k, part in enumerate(parts):
            checked[k::workers] = part
    else:
        checked = [_check_tile(img, root) for _, _, img in found]
    rows = [{"city": city, "split": split, **row} for (city, split, _), row in zip(found, checked, strict=True)]
    df = pd.DataFrame(rows, columns=TILES_COLUMNS)
    dup = df.duplicated(["city", "tile"])
    if dup.any():
        r = df[dup].iloc[0]
        raise ValueError(f"{root}: tile {r['tile']} of {r['city']} found twice")
    order_city = {c: i for i, c in enumerate(CITY_NAMES)}
    order_split = {s: i for i, s in enumerate(SPLITS)}
    df = df.assign(_s=df["split"].map(order_split), _c=df["city"].map(order_city))
    return df.sort_values(["_s", "_c", "tile"], kind="stable").drop(columns=["_s", "_c"]).reset_index(drop=True)


def read_tiles_csv(path: str | Path) -> pd.DataFrame:
    """Read ``data/tiles.csv`` back (labels as strings, empty when absent) and check its columns."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tile index not found: {path}")
    df = pd.read_csv(path, dtype={"label": str, "image": str, "tile": str, "city": str, "split": str},
                     keep_default_na=False)
    missing = [c for c in TILES_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return df


def read_window(path: str | Path, row_off: int, col_off: int, h: int, w: int) -> np.ndarray:
    """Read one window of a raster: ``(h, w, bands)`` for multi-band images, ``(h, w)`` for one band.

    Only the window is read (rasterio windowed read); a window outside the raster is an error.
    """
    from rasterio.windows import Window

    path = Path(path)
    with _open(path) as src:
        if row_off < 0 or col_off < 0 or row_off + h > src.height or col_off + w > src.width:
            raise ValueError(f"{path}: window rows {row_off}+{h}, cols {col_off}+{w} outside the "
                             f"{src.height}x{src.width} raster")
        arr = src.read(window=Window(col_off, row_off, w, h))
    return arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
