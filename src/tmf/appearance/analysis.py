"""Steps 3–4 over all t-SNE seeds of one encoder: surfaces, coverage tables and the summary the report reads.

The file layout is documented in ``docs/appearance.md``; this module only composes the pure functions of
``surfaces`` and ``coverage`` and writes their results atomically.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tmf.appearance.coverage import (
    SPLIT_PAIRS,
    aggregate_seeds,
    coverage_matrices,
    matrices_to_long,
    split_coverage,
    split_surfaces,
)
from tmf.appearance.surfaces import appearance_surfaces
from tmf.data.minifrance import CITY_BY_NAME, cities_in
from tmf.io import atomic_path, write_csv, write_json

log = logging.getLogger(__name__)

COVERAGE_COLUMNS = ["seed", "train", "test", "iou", "iot"]
SPLIT_COLUMNS = ["seed", "train_split", "test_split", "iou", "iot"]


def city_splits(manifest: pd.DataFrame) -> dict[str, str]:
    """city → split, as the manifest says. A city whose sub-tiles lie in several splits (``data.missing_label:
    unlabeled`` indexes the label-less tiles of a labeled city in the unlabeled split) takes the split of most of
    them (the first of ``SPLITS`` on a tie), with a warning: its surface is the city's, drawn from all its
    sub-tiles."""
    from tmf.data.minifrance import SPLITS

    counts = manifest.groupby(["city", "split"], sort=False).size()
    out = {}
    for city, by_split in counts.groupby(level=0, sort=False):
        n = by_split.droplevel(0)
        split = max(n.index, key=lambda s: (int(n[s]), -SPLITS.index(s) if s in SPLITS else -len(SPLITS)))
        if len(n) > 1:
            log.warning("city %s has sub-tiles in the splits %s; the appearance analysis takes it as %s",
                        city, {s: int(k) for s, k in n.items()}, split)
        out[city] = split
    return out


def _ordered(cities: list[str], split: str) -> list[str]:
    """Cities of ``split`` present in the data: Table 2.4 order first, then unknown names sorted."""
    known = [c for c in cities_in(split) if c in cities]
    return known + sorted(c for c in cities if c not in CITY_BY_NAME)


def score_seed(
    embedding: np.ndarray, manifest: pd.DataFrame, seed: int, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Surfaces, train × test heatmaps and split coverage of one embedding (one t-SNE seed)."""
    if len(embedding) != len(manifest):
        raise ValueError(f"embedding of seed {seed} has {len(embedding)} rows, the manifest {len(manifest)}")
    svm = cfg["svm"]
    cities = manifest["city"].to_numpy()
    surfaces, grid, skipped = appearance_surfaces(
        embedding, cities, cfg["grid_resolution"], svm["kernel"], svm["nu"], svm["gamma"], cfg["min_points"],
        margin=cfg.get("grid_margin", 0.05),
    )
    splits = city_splits(manifest)
    train = [c for c in splits if splits[c] in ("labeled", "unlabeled")]
    train = _ordered([c for c in train if splits[c] == "labeled"], "labeled") + _ordered(
        [c for c in train if splits[c] == "unlabeled"], "unlabeled")
    test = _ordered([c for c in splits if splits[c] == "test"], "test")
    m_iou, m_iot = coverage_matrices(surfaces, train, test)
    split_surf = split_surfaces(surfaces, splits, cfg["split_surface"], embedding, cities, grid,
                                svm["kernel"], svm["nu"], svm["gamma"])
    return {
        "seed": seed, "surfaces": surfaces, "grid": grid, "skipped": skipped, "split_surfaces": split_surf,
        "coverage": matrices_to_long(m_iou, m_iot, seed), "split_coverage": split_coverage(split_surf, seed),
    }


def save_surfaces(path: str | Path, result: dict[str, Any]) -> None:
    """``surfaces_seed<k>.npz``: cities (str), surfaces (bool C×R×R), splits (str), split_surfaces
    (bool S×R×R), bounds (xmin, xmax, ymin, ymax), resolution."""
    cities = list(result["surfaces"])
    splits = [k for k, v in result["split_surfaces"].items() if v is not None]
    r = result["grid"].resolution
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                cities=np.array(cities, dtype=str),
                surfaces=np.stack([result["surfaces"][c] for c in cities]) if cities else np.zeros((0, r, r), bool),
                splits=np.array(splits, dtype=str),
                split_surfaces=np.stack([result["split_surfaces"][s] for s in splits]) if splits
                else np.zeros((0, r, r), bool),
                bounds=np.array(result["grid"].bounds, dtype=np.float64),
                resolution=np.int64(r),
            )


def load_surfaces(path: str | Path) -> dict[str, Any]:
    with np.load(path) as z:
        return {
            "surfaces": dict(zip(z["cities"].tolist(), z["surfaces"], strict=True)),
            "split_surfaces": dict(zip(z["splits"].tolist(), z["split_surfaces"], strict=True)),
            "bounds": tuple(float(b) for b in z["bounds"]),
            "resolution": int(z["resolution"]),
        }


def _stat(mean: float, std: float, n: int) -> dict[str, float | None]:
    def clean(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    return {"mean": clean(mean), "std": clean(0.0 if n == 1 else std)}


def _summary_scores(cov_agg: pd.DataFrame, split_agg: pd.DataFrame) -> dict[str, Any]:
    split = {}
    for a, b in SPLIT_PAIRS:
        row = split_agg[(split_agg["train_split"] == a) & (split_agg["test_split"] == b)]
        if len(row):
            r = row.iloc[0]
            split[f"{a}_vs_{b}"] = {m: _stat(r[f"{m}_mean"], r[f"{m}_std"], int(r["n_seeds"])) for m in ("iou", "iot")}
    cities = {}
    for r in cov_agg.itertuples(index=False):
        cities.setdefault(r.train, {})[r.test] = {
            "iou": _stat(r.iou_mean, r.iou_std, r.n_seeds), "iot": _stat(r.iot_mean, r.iot_std, r.n_seeds)}
    return {"split_coverage": split, "city_coverage": cities}


def run_scores(
    manifest: pd.DataFrame,
    embeddings: dict[int, np.ndarray],
    cfg: dict[str, Any],
    out_dir: str | Path,
    encoder: str,
    encoder_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every seed's embedding and write surfaces, coverage tables and ``summary.json`` under ``out_dir``."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    cov, spl, skipped = [], [], {}
    for seed, emb in sorted(embeddings.items()):
        res = score_seed(emb, manifest, seed, cfg)
        save_surfaces(out_dir / f"surfaces_seed{seed}.npz", res)
        cov.append(res["coverage"])
        spl.append(res["split_coverage"])
        for city, reason in res["skipped"].items():
            skipped.setdefault(city, reason)
    cov_df = pd.concat(cov, ignore_index=True)
    spl_df = pd.concat(spl, ignore_index=True)
    cov_agg = aggregate_seeds(cov_df, ["train", "test"])
    spl_agg = aggregate_seeds(spl_df, ["train_split", "test_split"])
    write_csv(out_dir / "coverage.csv", cov_df)
    write_csv(out_dir / "coverage_summary.csv", cov_agg)
    write_csv(out_dir / "split_coverage.csv", spl_df)
    write_csv(out_dir / "split_coverage_summary.csv", spl_agg)
    summary = {
        "encoder": encoder,
        "status": "ok",
        "reason": "",
        "n_subtiles": int(len(manifest)),
        "cities": {c: int(n) for c, n in manifest["city"].value_counts(sort=False).items()},
        "seeds": sorted(int(s) for s in embeddings),
        "skipped_cities": skipped,
        "parameters": cfg,
        "encoder_info": encoder_info or {},
        "score_seconds": round(time.perf_counter() - t0, 3),
        **_summary_scores(cov_agg, spl_agg),
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def skipped_outputs(out_dir: str | Path, encoder: str, reason: str, seeds: list[int], cfg: dict[str, Any],
                    resolution: int = 8) -> dict[str, Any]:
    """For an encoder that could not run (e.g. missing weights): every declared output exists, empty, and
    ``summary.json`` says ``status: skipped`` with the reason, so the report can say so."""
    out_dir = Path(out_dir)
    empty_grid = {"surfaces": {}, "split_surfaces": {}, "grid": _EmptyGrid(resolution)}
    for seed in seeds:
        save_surfaces(out_dir / f"surfaces_seed{seed}.npz", empty_grid)
    write_csv(out_dir / "coverage.csv", pd.DataFrame(columns=COVERAGE_COLUMNS))
    write_csv(out_dir / "split_coverage.csv", pd.DataFrame(columns=SPLIT_COLUMNS))
    agg_cols = ["iou_mean", "iou_std", "iot_mean", "iot_std", "n_seeds"]
    write_csv(out_dir / "coverage_summary.csv", pd.DataFrame(columns=["train", "test", *agg_cols]))
    write_csv(out_dir / "split_coverage_summary.csv", pd.DataFrame(columns=["train_split", "test_split", *agg_cols]))
    summary = {"encoder": encoder, "status": "skipped", "reason": reason, "seeds": seeds, "parameters": cfg,
               "split_coverage": {}, "city_coverage": {}, "skipped_cities": {}}
    write_json(out_dir / "summary.json", summary)
    log.warning("appearance: encoder %s skipped: %s", encoder, reason)
    return summary


class _EmptyGrid:
    def __init__(self, resolution: int):
        self.resolution = resolution
        self.bounds = (0.0, 1.0, 0.0, 1.0)
