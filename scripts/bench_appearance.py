"""Time the appearance analysis for one t-SNE seed at the thesis' scale (3,500 sub-tiles, SPEC.md §3).

3,500 random-but-clustered 512-d feature vectors (one centre per designed region of tmf.data.synthetic.REGIONS,
a city offset and per-sub-tile noise; cities sized like Table 2.4) → PCA + openTSNE (FFT) → one one-class SVM per city on the
grid → IoU / IoT matrices and split coverage. Prints the seconds of each step; the target is ≤ 60 s on 2 CPU
cores (record the figure in docs/benchmarks.md, "Appearance analysis"). Not a test: timings depend on the machine.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/bench_appearance.py [--n 3500] [--n-jobs 1] [--method fft|bh]
        [--params FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

from tmf.appearance.analysis import score_seed
from tmf.appearance.embedding import tsne_embed
from tmf.config import load_params
from tmf.data.minifrance import CITIES
from tmf.data.subsample import largest_remainder
from tmf.data.synthetic import REGIONS


def clustered_features(n: int, dim: int = 512, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = largest_remainder(np.array([c.tiles for c in CITIES], dtype=float), n)
    regions = sorted(set(REGIONS.values()))
    centres = dict(zip(regions, rng.normal(0, 0.15, (len(regions), dim)), strict=True))
    rows, feats = [], []
    for c, m in zip(CITIES, counts, strict=True):
        centre = centres[REGIONS[c.name]] + rng.normal(0, 0.05, dim)
        feats.append(centre + rng.normal(0, 1, (int(m), dim)))
        rows += [{"city": c.name, "split": c.split}] * int(m)
    return pd.DataFrame(rows), np.concatenate(feats).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3500)
    ap.add_argument("--n-jobs", type=int, default=None, help="openTSNE threads (default: appearance.tsne.n_jobs)")
    ap.add_argument("--method", default=None, choices=["fft", "bh"],
                    help="t-SNE repulsive forces (default: appearance.tsne.negative_gradient_method)")
    ap.add_argument("--params", default=None, help="params YAML (default: the schema's defaults)")
    args = ap.parse_args()
    cfg = load_params(args.params)["appearance"]
    if args.n_jobs:
        cfg["tsne"]["n_jobs"] = args.n_jobs
    if args.method:
        cfg["tsne"]["negative_gradient_method"] = args.method
    manifest, feats = clustered_features(args.n)
    c0, t0 = time.process_time(), time.perf_counter()
    emb = tsne_embed(feats, 0, **cfg["tsne"])
    t1 = time.perf_counter()
    res = score_seed(emb, manifest, 0, cfg)
    c2, t2 = time.process_time(), time.perf_counter()
    lab = res["split_coverage"].set_index("train_split")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f}")
    print(f"sub-tiles: {len(feats)}, features: {feats.shape[1]}-d, tsne: {cfg['tsne']}, svm: {cfg['svm']}, "
          f"grid: {cfg['grid_resolution']}")
    print(f"t-SNE (PCA + openTSNE, {cfg['tsne']['negative_gradient_method']}): {t1 - t0:.1f} s")
    print(f"surfaces ({len(res['surfaces'])} one-class SVMs) + scores: {t2 - t1:.1f} s")
    print(f"total for one seed: {t2 - t0:.1f} s wall, {c2 - c0:.1f} s CPU (target ≤ 60 s on 2 cores)")
    print(f"labeled→test IoT {lab.loc['labeled', 'iot']:.2f}, unlabeled→test IoT {lab.loc['unlabeled', 'iot']:.2f}")


if __name__ == "__main__":
    main()
