"""One map job: every tile of one split (``predict.splits``) predicted by the model of the evaluation job that
``predict.*`` names, written as GeoTIFFs (:mod:`tmf.predict.geotiff`) plus the index ``maps.csv``.

One job per split, not per city: the cities of real data are known only once the tiles are indexed (any city
folder is indexed as its own city, DFC2022's test partition brings three areas), so per-city jobs would need a
Snakemake checkpoint; one job also loads the model once, and keeps one GPU busy on tiles of every city.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tmf.data.minifrance import N_CLASSES
from tmf.io import write_csv

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["split", "city", "tile", "image", "map", "height", "width", "crs", "georeferenced", "model",
                 "window", "overlap", "windows", "peak_floats", "seconds",
                 *(f"count_{i}" for i in range(N_CLASSES))]


def map_name(city: str, tile: str) -> str:
    """A tile's map, relative to the maps folder."""
    return f"{city}/{tile}.tif"


def predict_split(tiles: str | Path, root: str | Path, split: str, model: str | Path, out: str | Path,
                  index: str | Path, cfg: dict[str, Any], device: str = "auto",
                  threads: int | None = None) -> pd.DataFrame:
    """Map every tile of ``split`` in the tile index ``tiles`` (paths relative to ``root``) into ``out``
    (``<City>/<stem>.tif``) and write the index ``index`` (:data:`INDEX_COLUMNS`, docs/file-formats.md; its
    ``map`` column is relative to the index's folder).
    ``cfg``: the ``predict`` section (``window``, ``overlap``, ``batch``)."""
    from tmf.data.layout import user_path
    from tmf.data.reader import read_tiles_csv
    from tmf.device import configure, resolve_device
    from tmf.evaluate.saved_model import load_predictor
    from tmf.predict.geotiff import predict_geotiff

    frame = read_tiles_csv(tiles)
    rows = frame[frame["split"] == split]
    if rows.empty:
        raise ValueError(f"{tiles}: no tile of split {split!r} to map (predict.splits; the splits present are "
                         f"{sorted(set(frame['split']))})")
    dev = resolve_device(device)
    configure(dev, threads)
    predictor = load_predictor(model, dev)
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log.info("mapping %d tile(s) of split %s with %s (%s) on %s: window %d px, overlap %d px, batch %d",
             len(rows), split, predictor.describe(), model, dev, cfg["window"], cfg["overlap"], cfg["batch"])
    tags = {"TMF_MODEL": str(model), "TMF_JOB": predictor.describe()}
    records = []
    t0 = time.perf_counter()
    for k, r in enumerate(rows.itertuples(index=False), 1):
        image = root / r.image
        rel = map_name(r.city, r.tile)
        stats, counts = predict_geotiff(image, out / rel, predictor, window=cfg["window"], overlap=cfg["overlap"],
                                        batch=cfg["batch"], tags=tags, name=user_path(root, image))
        records.append({"split": split, "city": r.city, "tile": r.tile, "image": r.image,
                        "map": os.path.relpath(out / rel, Path(index).parent), "height": r.height, "width": r.width, "crs": r.crs,
                        "georeferenced": int(r.georeferenced), "model": predictor.describe(), "window": cfg["window"],
                        "overlap": cfg["overlap"], "windows": stats.windows, "peak_floats": stats.peak_floats,
                        "seconds": round(stats.seconds, 3),
                        **{f"count_{i}": int(c) for i, c in enumerate(counts)}})
        log.info("[%d/%d] %s/%s: %d x %d px, %d windows, %.1f s", k, len(rows), r.city, r.tile, r.height,
                 r.width, stats.windows, stats.seconds)
    table = pd.DataFrame(records, columns=INDEX_COLUMNS)
    bare = table.loc[table["georeferenced"] == 0, "image"].tolist()
    if bare:
        log.warning("%d tile(s) without georeference predicted on their pixel grid (no CRS written): %s",
                    len(bare), ", ".join(bare))
    write_csv(index, table)
    px = float((table["height"] * table["width"]).sum())
    log.info("split %s: %d maps, %.1f Mpx in %.1f s -> %s, %s", split, len(table), px / 1e6,
             time.perf_counter() - t0, out, index)
    return table


def read_index(path: str | Path) -> pd.DataFrame:
    """Read a ``maps.csv`` back (:data:`INDEX_COLUMNS`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"map index not found: {path}")
    frame = pd.read_csv(path, dtype={"crs": str, "tile": str, "city": str, "image": str, "map": str},
                        keep_default_na=False)
    missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (not written by `tmf predict`?)")
    return frame
