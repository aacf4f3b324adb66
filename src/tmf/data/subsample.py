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
from tmf.data.elevation import DEM_COLUMNS
from tmf.data.minifrance import CLASSES, DEM_DIR, DEM_NODATA, DEM_SUFFIX, N_CLASSES, SPLITS, city_rank
from tmf.data.packed import COUNT_COLUMNS, DEM_ARRAYS, MANIFEST_COLUMNS, array_path, read_manifest

log = logging.getLogger(__name__)

# carried by select_subtiles' frame for the writer, never written to manifest.csv
SOURCE_COLUMNS = ["source_image", "source_label", "source_dem"]


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
                "source_dem": t["dem"] if isinstance(t.get("dem"), str) else "",
            })
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS + SOURCE_COLUMNS)
    return _sort_manifest(df)


def _sort_manifest(df: pd.DataFrame) -> pd.DataFrame:
    order_split = {s: i for i, s in enumerate(SPLITS)}
    df = df.assign(_s=df["split"].map(order_split), _c=df["city"].map(city_rank))
    df = df.sort_values(["_s", "_c", "tile", "row_off", "col_off"], kind="stable")
    return df.drop(columns=["_s", "_c"]).reset_index(drop=True)


def dem_crop_path(row: dict) -> str:
    """``<split>/<City>/RGEALTI/<id>_RGEALTI.tif``: where a sub-tile's elevation crop is written."""
    return f"{row['split']}/{row['city']}/{DEM_DIR}/{row['id']}{DEM_SUFFIX}.tif"


def _crop_city(rows: list[dict], raw_root: str, out_root: str, dem: bool = False) -> list[tuple[str, list[int], dict]]:
    """Write the crops of one city's rows (windowed reads only); return (id, class counts, DEM columns) per row.
    With ``dem``, a row whose tile has an RGEALTI DEM also gets its elevation on the sub-tile's grid
    (:func:`tmf.data.elevation.dem_under`: masked bilinear), written as a float32 GeoTIFF with −99999 where it is
    not valid."""
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

    def write(src, arr: np.ndarray, dst_rel: str, win: Window, **extra) -> None:
        prof = dict(driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
                    dtype=arr.dtype.name, crs=src.crs, compress="deflate",
                    transform=src.transform @ Affine.translation(win.col_off, win.row_off), **extra)
        if arr.shape[0] == 3:
            prof["photometric"] = "RGB"
        dst = out / dst_rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst, suffix=".tif") as tmp, rasterio.open(tmp, "w", **prof) as ds:
            ds.write(arr)

    def crop(src_rel: str, dst_rel: str, win: Window) -> np.ndarray:
        src = src_of(src_rel)
        try:
            arr = src.read(window=win)
        except Exception as e:  # a file changed or damaged since `tmf index` checked it
            raise ValueError(f"{raw / src_rel}: unreadable window {win} ({e}); run `tmf index` again") from None
        write(src, arr, dst_rel, win)
        return arr

    open_dem: dict[str, object] = {}  # the DEM of the tile being cropped (rows come tile by tile)

    def crop_dem(r: dict, win: Window) -> dict:
        from tmf.data.checks import open_raster
        from tmf.data.elevation import dem_stats, dem_under

        image = src_of(r["source_image"])
        if r["source_dem"] not in open_dem:
            for ds in open_dem.values():
                ds.close()
            open_dem.clear()
            open_dem[r["source_dem"]] = open_raster(raw / r["source_dem"])
        try:
            values, valid = dem_under(image, open_dem[r["source_dem"]], r["row_off"], r["col_off"], r["height"],
                                      r["width"])
        except Exception as e:
            raise ValueError(f"{raw / r['source_dem']}: unreadable elevation under {r['id']} ({e}); run "
                             "`tmf index` again") from None
        rel = dem_crop_path(r)
        write(image, np.where(valid, values, np.float32(DEM_NODATA))[None].astype(np.float32), rel, win,
              nodata=DEM_NODATA)
        return {"dem": rel, "has_dem": 1, **dem_stats(values, valid)}

    env = rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")
    env.__enter__()
    try:
        # image crops first (then each elevation, which maps through its image's grid), then labels: one source
        # raster open at a time
        dems: dict[str, dict] = {}
        for r in rows:
            win = Window(r["col_off"], r["row_off"], r["width"], r["height"])
            crop(r["source_image"], r["image"], win)
            if dem:
                dems[r["id"]] = crop_dem(r, win) if r["source_dem"] else _no_dem()
        for r in rows:
            counts = [0] * N_CLASSES
            if r["has_label"]:
                win = Window(r["col_off"], r["row_off"], r["width"], r["height"])
                lab = crop(r["source_label"], r["label"], win)
                bc = np.bincount(lab.ravel(), minlength=N_CLASSES)
                if len(bc) > N_CLASSES:
                    raise ValueError(f"{raw / r['source_label']}: label id {len(bc) - 1} > {N_CLASSES - 1}")
                counts = [int(x) for x in bc]
            results.append((r["id"], counts, dems.get(r["id"], {})))
    finally:
        for ds in [*open_src.values(), *open_dem.values()]:
            ds.close()
        env.__exit__(None, None, None)
    return results


def _no_dem() -> dict:
    """The DEM columns of a sub-tile whose tile has no elevation model."""
    nan = float("nan")
    return {"dem": "", "has_dem": 0, "dem_min": nan, "dem_mean": nan, "dem_max": nan, "dem_valid": 0.0}


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
                         workers: int = 1, dem: bool = False) -> pd.DataFrame:
    """Crop the sub-tiles, count their classes, write ``manifest.csv`` and ``class_shares.csv``.

    Windowed reads only (a whole 10,000 px tile is never in memory); each crop is a GeoTIFF whose transform
    is the source transform shifted to the window. Cities are processed in parallel by a process pool of
    ``workers`` processes (1: in this process). With ``dem`` the elevation of every sub-tile whose tile has one is
    cropped too and the manifest gets the columns of :data:`tmf.data.elevation.DEM_COLUMNS` (``has_dem`` 0 and
    NaN statistics where a tile has no DEM); without it the manifest has exactly :data:`MANIFEST_COLUMNS`.
    Returns the manifest with its counts (and elevation statistics) filled in.
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
    results: dict[str, tuple[list[int], dict]] = {}
    if workers == 1 or len(groups) == 1:
        for city, rows in groups:
            results.update((i, (c, d)) for i, c, d in _crop_city(rows, str(raw_root), str(out_root), dem))
            log.info("cropped %d sub-tiles of %s", len(rows), city)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(groups))) as pool:
            futures = {city: pool.submit(_crop_city, rows, str(raw_root), str(out_root), dem)
                       for city, rows in groups}
            for city, fut in futures.items():
                results.update((i, (c, d)) for i, c, d in fut.result())
                log.info("cropped sub-tiles of %s", city)
    out = manifest.copy()
    out[COUNT_COLUMNS] = np.array([results[i][0] for i in out["id"]], dtype=np.int64)
    columns = list(MANIFEST_COLUMNS)
    if dem:
        out = out.assign(**{c: [results[i][1][c] for i in out["id"]] for c in DEM_COLUMNS})
        columns += DEM_COLUMNS
        if not out["has_dem"].any():
            log.warning("no tile has an elevation model (RGEALTI/<stem>_RGEALTI.tif): has_dem is 0 everywhere")
    out = _sort_manifest(out)
    write_csv(out_root / "manifest.csv", out[columns])
    write_csv(out_root / "class_shares.csv", class_shares(out))
    return out


def _read_crop(p: Path, shape: tuple[int, ...], dtype) -> np.ndarray:
    import rasterio

    try:
        with rasterio.open(p) as src:
            arr = src.read()
    except Exception as e:
        raise ValueError(f"{p}: unreadable crop ({e})") from None
    if arr.shape != shape or arr.dtype != dtype:
        raise ValueError(f"{p}: shape {arr.shape} {arr.dtype}, expected {shape} {np.dtype(dtype).name}")
    return arr


def _pack_rows(paths: dict[str, str], base: str, rows: list[tuple[int, str, str, int, str]], h: int, w: int) -> None:
    """Fill rows of the packed arrays ``paths`` (name → .npy, opened as memory maps) from the crops."""
    import rasterio

    arrays = {name: np.load(p, mmap_mode="r+") for name, p in paths.items()}
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        for i, image, label, has_label, dem in rows:
            arrays["images"][i] = np.moveaxis(_read_crop(Path(base) / image, (3, h, w), np.uint8), 0, -1)
            arrays["labels"][i] = _read_crop(Path(base) / label, (1, h, w), np.uint8)[0] if has_label else 0
            if "dem" in arrays:
                z = _read_crop(Path(base) / dem, (1, h, w), np.float32)[0] if dem else np.zeros((h, w), np.float32)
                valid = z != np.float32(DEM_NODATA) if dem else np.zeros((h, w), bool)
                arrays["dem"][i] = np.where(valid, z, 0.0)
                arrays["dem_valid"][i] = valid
    for arr in arrays.values():
        arr.flush()


def pack(manifest_path: str | Path, out_dir: str | Path, workers: int = 1) -> tuple[Path, ...]:
    """Stack the crops into ``images.npy`` (uint8 (N, S, S, 3)) and ``labels.npy`` (uint8 (N, S, S), 0 where a
    sub-tile has no label) and, when the manifest has the elevation columns, ``dem.npy`` (float32 (N, S, S),
    metres, 0 where not valid) and ``dem_valid.npy`` (uint8 0/1); rows in manifest order, written through memory
    maps (never all in memory) by ``workers`` processes filling disjoint row ranges. Returns the paths written
    (images, labels, then dem and dem_valid when written)."""
    from concurrent.futures import ProcessPoolExecutor
    from contextlib import ExitStack

    from tmf.data.packed import ARRAYS, has_dem_columns
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
    with_dem = has_dem_columns(df)
    rows = [(i, r.image, r.label, int(r.has_label), r.dem if with_dem and int(r.has_dem) else "")
            for i, r in enumerate(df.itertuples(index=False))]
    specs = [*ARRAYS, *(DEM_ARRAYS if with_dem else ())]
    out = {spec.name: array_path(out_dir, spec.name) for spec in specs}
    with ExitStack() as stack:
        tmp = {spec.name: str(stack.enter_context(atomic_path(out[spec.name], suffix=".npy"))) for spec in specs}
        for spec in specs:
            np.lib.format.open_memmap(tmp[spec.name], mode="w+", dtype=spec.dtype,
                                      shape=spec.shape(len(df), h)).flush()
        base = str(manifest_path.parent)
        if workers == 1:
            _pack_rows(tmp, base, rows, h, w)
        else:
            chunks = [rows[k::workers] for k in range(workers)]
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for f in [pool.submit(_pack_rows, tmp, base, c, h, w) for c in chunks if c]:
                    f.result()
    return tuple(out.values())
