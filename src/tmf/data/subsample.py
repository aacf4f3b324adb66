"""tinyMiniFrance: sub-tiles drawn inside the MiniFrance tiles (SPEC.md §2; seed 004 §2.3.2, Table 2.6).

Rules of seed 004 §2.3.2: (1) each region's (= city's) share of the sub-tiles is proportional to its tile
count; (2) sub-tiles are chosen at random inside the tiles and every tile gives at least one; (3) splits stay
as in Table 2.4. Our choices where the text is silent (SPEC.md §2): windows on each tile's non-overlapping
grid of ``size`` px; quotas by largest-remainder rounding; one window per tile first, then the rest of the
city's quota uniformly without replacement among its remaining windows; a per-city random stream derived
from (seed, city name), so a city's draw does not depend on the other cities or on execution order.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tmf.config import ParamsError
from tmf.data.minifrance import CLASSES, N_CLASSES, SPLITS, city_rank
from tmf.data.packed import COUNT_COLUMNS, MANIFEST_COLUMNS, array_path, read_manifest

log = logging.getLogger(__name__)

# carried by select_subtiles' frame for the writer, never written to manifest.csv
SOURCE_COLUMNS = ["source_image", "source_label"]


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` summing to ``total`` (Hamilton / largest-remainder method).

    q_i = floor(total · w_i / Σw) plus one for the ``total − Σ floor`` largest remainders (ties: lower index).
    """
    w = np.asarray(weights, dtype=np.float64)
    if total < 0 or (w < 0).any() or w.sum() <= 0:
        raise ValueError("largest_remainder needs non-negative weights with a positive sum and total >= 0")
    exact = total * w / w.sum()
    q = np.floor(exact).astype(np.int64)
    rem = exact - q
    short = int(total - q.sum())
    order = np.argsort(-rem, kind="stable")
    q[order[:short]] += 1
    return q


def city_rng(seed: int, city: str) -> np.random.Generator:
    """The random stream of one city: a function of (seed, city name) only."""
    digest = hashlib.sha256(f"tinyminifrance\x1f{seed}\x1f{city}".encode()).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32).tolist())


def subtile_id(city: str, tile: str, row_off: int, col_off: int) -> str:
    return f"{city}__{tile}__r{row_off}_c{col_off}"


def select_subtiles(tiles_df: pd.DataFrame, n_subtiles: int, size: int, seed: int) -> pd.DataFrame:
    """Choose the tinyMiniFrance windows (pure: no I/O).

    ``tiles_df``: the tile index (``data/tiles.csv`` columns). Returns the manifest frame: the columns of
    ``manifest.csv`` (counts still 0; :func:`write_tinyminifrance` fills them) plus ``source_image`` and
    ``source_label`` (paths of the source tile relative to the raw root). Quotas: largest remainder of
    ``n_subtiles`` proportionally to the tiles present per city (Table 2.4 rule 1).
    """
    if len(tiles_df) == 0:
        raise ValueError("select_subtiles: the tile index is empty")
    if size < 1:
        raise ParamsError(f"subsample.size must be positive, got {size}")
    n_tiles = len(tiles_df)
    if n_subtiles < n_tiles:
        raise ParamsError(f"subsample.n_subtiles = {n_subtiles} is less than the {n_tiles} tiles in the index; "
                          "every tile must give at least one sub-tile (seed 004 §2.3.2)")
    small = tiles_df[(tiles_df["height"] < size) | (tiles_df["width"] < size)]
    if len(small):
        r = small.iloc[0]
        raise ParamsError(f"subsample.size = {size} px exceeds tile {r['tile']} of {r['city']} "
                          f"({r['height']}x{r['width']} px)")
    # every city present, MiniFrance's 16 in Table 2.4 order, then any other city folder (quotas alike)
    cities = sorted(set(tiles_df["city"]), key=city_rank)
    counts = np.array([(tiles_df["city"] == c).sum() for c in cities])
    quotas = largest_remainder(counts, n_subtiles)
    rows = []
    for city, quota in zip(cities, quotas, strict=True):
        tiles = tiles_df[tiles_df["city"] == city].sort_values("tile", kind="stable")
        n_r = (tiles["height"].to_numpy() // size).astype(np.int64)
        n_c = (tiles["width"].to_numpy() // size).astype(np.int64)
        n_cand = n_r * n_c
        if quota > n_cand.sum():
            raise ParamsError(f"subsample.n_subtiles = {n_subtiles} asks {quota} sub-tiles of {city}, which has "
                              f"only {int(n_cand.sum())} windows of {size} px")
        rng = city_rng(seed, city)
        first = np.floor(rng.random(len(tiles)) * n_cand).astype(np.int64)  # one window per tile
        offsets = np.concatenate([[0], np.cumsum(n_cand)[:-1]])
        taken = np.zeros(int(n_cand.sum()), dtype=bool)
        taken[offsets + first] = True
        rest = rng.choice(np.flatnonzero(~taken), size=int(quota - len(tiles)), replace=False)
        chosen = np.sort(np.concatenate([offsets + first, rest]))
        t_idx = np.searchsorted(offsets, chosen, side="right") - 1
        local = chosen - offsets[t_idx]
        records = tiles.to_dict("records")
        for ti, k in zip(t_idx, local, strict=True):
            t = records[int(ti)]
            r0 = int(k // n_c[ti]) * size
            c0 = int(k % n_c[ti]) * size
            sid = subtile_id(city, t["tile"], r0, c0)
            has_label = isinstance(t["label"], str) and t["label"] != ""
            rows.append({
                "id": sid, "city": city, "split": t["split"], "tile": t["tile"], "row_off": r0, "col_off": c0,
                "height": size, "width": size,
                "image": f"{t['split']}/{city}/BDORTHO/{sid}.tif",
                "label": f"{t['split']}/{city}/UrbanAtlas/{sid}_UA2012.tif" if has_label else "",
                "has_label": int(has_label), **dict.fromkeys(COUNT_COLUMNS, 0),
                "source_image": t["image"], "source_label": t["label"] if has_label else "",
            })
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS + SOURCE_COLUMNS)
    return _sort_manifest(df)


def _sort_manifest(df: pd.DataFrame) -> pd.DataFrame:
    order_split = {s: i for i, s in enumerate(SPLITS)}
    df = df.assign(_s=df["split"].map(order_split), _c=df["city"].map(city_rank))
    df = df.sort_values(["_s", "_c", "tile", "row_off", "col_off"], kind="stable")
    return df.drop(columns=["_s", "_c"]).reset_index(drop=True)


def _crop_city(rows: list[dict], raw_root: str, out_root: str) -> list[tuple[str, list[int]]]:
    """Write the crops of one city's rows (windowed reads only); return (id, class counts) per row."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from tmf.io import atomic_path

    raw, out = Path(raw_root), Path(out_root)
    results = []
    open_src: dict[str, object] = {}

    def src_of(rel: str):
        if rel not in open_src:
            for ds in open_src.values():
                ds.close()
            open_src.clear()
            try:
                open_src[rel] = rasterio.open(raw / rel)
            except Exception as e:
                raise ValueError(f"{raw / rel}: unreadable raster ({e})") from None
        return open_src[rel]

    def crop(src_rel: str, dst_rel: str, win: Window) -> np.ndarray:
        src = src_of(src_rel)
        try:
            arr = src.read(window=win)
        except Exception as e:  # a file changed or damaged since `tmf index` checked it
            raise ValueError(f"{raw / src_rel}: unreadable window {win} ({e}); run `tmf index` again") from None
        prof = dict(driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
                    dtype=arr.dtype.name, crs=src.crs, compress="deflate",
                    transform=src.transform @ Affine.translation(win.col_off, win.row_off))
        if arr.shape[0] == 3:
            prof["photometric"] = "RGB"
        dst = out / dst_rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst, suffix=".tif") as tmp, rasterio.open(tmp, "w", **prof) as ds:
            ds.write(arr)
        return arr

    env = rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")
    env.__enter__()
    try:
        # image crops first, then labels: one source raster open at a time
        for r in rows:
            win = Window(r["col_off"], r["row_off"], r["width"], r["height"])
            crop(r["source_image"], r["image"], win)
        for r in rows:
            counts = [0] * N_CLASSES
            if r["has_label"]:
                win = Window(r["col_off"], r["row_off"], r["width"], r["height"])
                lab = crop(r["source_label"], r["label"], win)
                bc = np.bincount(lab.ravel(), minlength=N_CLASSES)
                if len(bc) > N_CLASSES:
                    raise ValueError(f"{raw / r['source_label']}: label id {len(bc) - 1} > {N_CLASSES - 1}")
                counts = [int(x) for x in bc]
            results.append((r["id"], counts))
    finally:
        for ds in open_src.values():
            ds.close()
        env.__exit__(None, None, None)
    return results


def class_shares(manifest: pd.DataFrame) -> pd.DataFrame:
    """Class shares (% of labeled pixels, ids 1–15; id 0 "no information" is left out as in Tables 2.5/2.6)
    of the sub-tiles, next to Table 2.5 (MiniFrance) and Table 2.6 (tinyMiniFrance) of seed 004."""
    counts = manifest.loc[manifest["has_label"] == 1, COUNT_COLUMNS].to_numpy(dtype=np.float64).sum(axis=0)
    known = counts[1:].sum()
    ours = [float("nan")] + [100.0 * c / known if known else float("nan") for c in counts[1:]]
    return pd.DataFrame({
        "id": [c.id for c in CLASSES],
        "name": [c.name for c in CLASSES],
        "share_ours": np.round(ours, 4),
        "share_table_2_5": [c.share_minifrance for c in CLASSES],
        "share_table_2_6": [c.share_tiny for c in CLASSES],
    })


def write_tinyminifrance(manifest: pd.DataFrame, raw_root: str | Path, out_root: str | Path,
                         workers: int = 1) -> pd.DataFrame:
    """Crop the sub-tiles, count their classes, write ``manifest.csv`` and ``class_shares.csv``.

    Windowed reads only (a whole 10,000 px tile is never in memory); each crop is a GeoTIFF whose transform
    is the source transform shifted to the window. Cities are processed in parallel by a process pool of
    ``workers`` processes (1: in this process). Returns the manifest with its counts filled in.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tmf.io import write_csv

    missing = [c for c in MANIFEST_COLUMNS + SOURCE_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"write_tinyminifrance: manifest lacks column(s) {missing} (use select_subtiles)")
    if workers < 1:
        raise ParamsError(f"--workers must be >= 1, got {workers}")
    raw_root, out_root = Path(raw_root), Path(out_root)
    if not raw_root.is_dir():
        raise FileNotFoundError(f"raw data root not found: {raw_root}")
    groups = [(city, g.to_dict("records")) for city, g in manifest.groupby("city", sort=False)]
    counts: dict[str, list[int]] = {}
    if workers == 1 or len(groups) == 1:
        for city, rows in groups:
            counts.update(_crop_city(rows, str(raw_root), str(out_root)))
            log.info("cropped %d sub-tiles of %s", len(rows), city)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(groups))) as pool:
            futures = {city: pool.submit(_crop_city, rows, str(raw_root), str(out_root)) for city, rows in groups}
            for city, fut in futures.items():
                counts.update(fut.result())
                log.info("cropped sub-tiles of %s", city)
    out = manifest.copy()
    out[COUNT_COLUMNS] = np.array([counts[i] for i in out["id"]], dtype=np.int64)
    out = _sort_manifest(out)
    write_csv(out_root / "manifest.csv", out[MANIFEST_COLUMNS])
    write_csv(out_root / "class_shares.csv", class_shares(out))
    return out


def _pack_rows(images_path: str, labels_path: str, base: str, rows: list[tuple[int, str, str, int]],
               h: int, w: int) -> None:
    """Fill rows of the packed arrays (opened as memory maps) from the crops."""
    import rasterio

    images = np.load(images_path, mmap_mode="r+")
    labels = np.load(labels_path, mmap_mode="r+")
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        for i, image, label, has_label in rows:
            p = Path(base) / image
            try:
                with rasterio.open(p) as src:
                    arr = src.read()
            except Exception as e:
                raise ValueError(f"{p}: unreadable crop ({e})") from None
            if arr.shape != (3, h, w) or arr.dtype != np.uint8:
                raise ValueError(f"{p}: shape {arr.shape} {arr.dtype}, expected (3, {h}, {w}) uint8")
            images[i] = np.moveaxis(arr, 0, -1)
            if has_label:
                p = Path(base) / label
                try:
                    with rasterio.open(p) as src:
                        lab = src.read(1)
                except Exception as e:
                    raise ValueError(f"{p}: unreadable crop ({e})") from None
                if lab.shape != (h, w):
                    raise ValueError(f"{p}: shape {lab.shape}, expected ({h}, {w})")
                labels[i] = lab
            else:
                labels[i] = 0
    images.flush()
    labels.flush()


def pack(manifest_path: str | Path, out_dir: str | Path, workers: int = 1) -> tuple[Path, Path]:
    """Stack the crops into ``images.npy`` (uint8 (N, S, S, 3)) and ``labels.npy`` (uint8 (N, S, S), 0 where a
    sub-tile has no label), rows in manifest order, written through memory maps (never all in memory) by
    ``workers`` processes filling disjoint row ranges."""
    from concurrent.futures import ProcessPoolExecutor

    from tmf.io import atomic_path

    if workers < 1:
        raise ParamsError(f"--workers must be >= 1, got {workers}")
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    df = read_manifest(manifest_path)
    if len(df) == 0:
        raise ValueError(f"{manifest_path}: no sub-tile")
    sizes = set(zip(df["height"], df["width"], strict=True))
    if len(sizes) != 1:
        raise ValueError(f"{manifest_path}: sub-tiles of several sizes {sorted(sizes)}; pack needs one size")
    h, w = (int(v) for v in sizes.pop())
    rows = [(i, r.image, r.label, int(r.has_label)) for i, r in enumerate(df.itertuples(index=False))]
    images_path, labels_path = array_path(out_dir, "images"), array_path(out_dir, "labels")
    with atomic_path(images_path, suffix=".npy") as ti, atomic_path(labels_path, suffix=".npy") as tl:
        np.lib.format.open_memmap(ti, mode="w+", dtype=np.uint8, shape=(len(df), h, w, 3)).flush()
        np.lib.format.open_memmap(tl, mode="w+", dtype=np.uint8, shape=(len(df), h, w)).flush()
        args = (str(ti), str(tl), str(manifest_path.parent))
        if workers == 1:
            _pack_rows(*args, rows, h, w)
        else:
            chunks = [rows[k::workers] for k in range(workers)]
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for f in [pool.submit(_pack_rows, *args, c, h, w) for c in chunks if c]:
                    f.result()
    return images_path, labels_path
