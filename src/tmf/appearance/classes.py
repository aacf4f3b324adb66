"""Class representativeness (seed 004 §2.4.2, Figs. 2.14–2.16) and per-channel colour histograms (§2.2, Fig. 2.4).

Everything here reads the manifest's per-sub-tile label counts (``count_0 … count_15``) or the packed images;
no model is involved. The 12 classes analysed are ``REPRESENTATIVENESS_IDS`` (ids 1–7 and 10–14: "we do not
consider complex and mixed cultivation patterns, orchards … nor clouds and shadows", §2.4.2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tmf.data.minifrance import CITY_NAMES, REPRESENTATIVENESS_IDS, SPLITS
from tmf.data.packed import COUNT_COLUMNS


def _check_counts(manifest: pd.DataFrame) -> None:
    missing = [c for c in ("city", "split", *COUNT_COLUMNS) if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing} (docs/file-formats.md)")


def _histograms(manifest: pd.DataFrame, by: str, order: list[str]) -> pd.DataFrame:
    _check_counts(manifest)
    cols = [f"count_{i}" for i in REPRESENTATIVENESS_IDS]
    sums = manifest.groupby(by, sort=False)[cols].sum().astype(np.float64)
    sums = sums.reindex([k for k in order if k in sums.index])
    total = sums.sum(axis=1)
    shares = 100.0 * sums.div(total.where(total > 0), axis=0)  # NaN row for a group without labels
    shares.columns = [int(c.split("_")[1]) for c in cols]
    shares.insert(0, "labelled_pixels", total.astype(np.int64))
    shares.index.name = by
    return shares


def city_class_histograms(manifest: pd.DataFrame) -> pd.DataFrame:
    """Fig. 2.14: per city, the % of each of the 12 classes among the city's pixels of those 12 classes.

    ``share(city, c) = 100 · Σ_tiles count_c / Σ_tiles Σ_{c' ∈ 12 classes} count_c'``. Index: city (order of
    Table 2.4); columns: ``labelled_pixels`` then the 12 class ids. A city without labels has a NaN row."""
    order = [c for c in CITY_NAMES] + sorted(set(manifest["city"]) - set(CITY_NAMES))
    return _histograms(manifest, "city", order)


def split_class_histograms(manifest: pd.DataFrame) -> pd.DataFrame:
    """Fig. 2.16: the same shares aggregated by split (labeled, unlabeled, test)."""
    return _histograms(manifest, "split", list(SPLITS))


def classes_present(hist: pd.DataFrame, threshold: float = 0.0) -> pd.Series:
    """How many of the 12 classes each row holds with a share above ``threshold`` % (§2.4.2: "Nantes … and
    Marseille … exhibit 10 of the classes")."""
    ids = [c for c in hist.columns if c != "labelled_pixels"]
    return (hist[ids] > threshold).sum(axis=1)


def subtile_class_shares(manifest: pd.DataFrame) -> np.ndarray:
    """Fig. 2.15: float ``(N, 12)``, the fraction of each sub-tile's pixels occupied by each of the 12 classes
    (count_c / Σ_{all 16 ids} count). Rows without a label are NaN."""
    _check_counts(manifest)
    counts = manifest[list(COUNT_COLUMNS)].to_numpy(dtype=np.float64)
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts[:, list(REPRESENTATIVENESS_IDS)] / np.where(total > 0, total, np.nan)
    return shares


def colour_histograms(images: np.ndarray, groups: np.ndarray, chunk: int = 256) -> pd.DataFrame:
    """Fig. 2.4: per group (split) and channel, the density of each 8-bit value over all pixels.

    Tidy rows ``group, channel (R/G/B), value (0–255), density`` with Σ_value density = 1 per group and channel.
    Reads ``images`` (uint8 ``(N, S, S, 3)``, memory-mapped is fine) in chunks."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 (N, S, S, 3), got {images.dtype} {images.shape}")
    groups = np.asarray(groups)
    if len(groups) != len(images):
        raise ValueError(f"{len(groups)} group labels for {len(images)} images")
    names = [g for g in SPLITS if g in set(groups.tolist())] + sorted(set(groups.tolist()) - set(SPLITS))
    rows = []
    for g in names:
        idx = np.flatnonzero(groups == g)
        counts = np.zeros((3, 256), dtype=np.int64)
        for s in range(0, len(idx), chunk):
            block = np.asarray(images[idx[s : s + chunk]])
            for ch in range(3):
                counts[ch] += np.bincount(block[..., ch].ravel(), minlength=256)
        dens = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        for ch, name in enumerate("RGB"):
            rows.append(pd.DataFrame({"group": g, "channel": name, "value": np.arange(256), "density": dens[ch]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["group", "channel", "value", "density"])
