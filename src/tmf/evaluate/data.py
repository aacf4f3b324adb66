"""Evaluation data: label pools, nested label fractions and targets over the rows of tinyMiniFrance.

The manifest and the packed arrays are opened and checked by :func:`tmf.data.packed.open_packed`; the pools here
are row numbers of its manifest (``split``, ``city``, ``has_label`` and ``count_0 … count_15``).

Splits follow SPEC.md §5 (seed 004 §2.3): supervision from the labeled cities only, the unlabeled cities for
semi-supervised terms, scores on the test cities. The "oracle" baseline (seed 004 Table 3.1) also takes the labels
of the unlabeled cities, which exist for the synthetic data but not for the public MiniFrance release.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tmf.data.minifrance import IGNORE_INDEX, SCORED_IDS, cities_in, scored_label_map

SCORED_COUNT_COLUMNS = tuple(f"count_{i}" for i in SCORED_IDS)


def scored_pixels(frame: pd.DataFrame) -> np.ndarray:
    """Number of scored pixels (ids 1–14) of each manifest row."""
    return frame[list(SCORED_COUNT_COLUMNS)].to_numpy().sum(1)


def dominant_class(frame: pd.DataFrame) -> np.ndarray:
    """Dominant scored id of each row (the scene-level probe's target); ties go to the smaller id."""
    counts = frame[list(SCORED_COUNT_COLUMNS)].to_numpy()
    return np.asarray(SCORED_IDS)[counts.argmax(1)]


def label_pool(frame: pd.DataFrame, which: str = "labeled") -> np.ndarray:
    """Row indices that may supervise training, in manifest order.

    ``labeled``: sub-tiles of the labeled cities with at least one scored pixel. ``oracle``: the same over all
    eight training cities (labeled + unlabeled splits); a clear error when an unlabeled city has no labels
    (the public MiniFrance does not release them).
    """
    if which == "labeled":
        cities = cities_in("labeled")
    elif which == "oracle":
        cities = cities_in("labeled") + cities_in("unlabeled")
        present = set(frame["city"])
        lacking = [c for c in cities_in("unlabeled") if c in present
                   and not (frame.loc[frame["city"] == c, "has_label"].astype(int) == 1).any()]
        if lacking:
            raise ValueError(f"method 'oracle' needs labels for every training city, but the manifest has none for "
                             f"{lacking} (real MiniFrance publishes no labels for its unlabeled cities)")
    else:
        raise ValueError(f"unknown label pool {which!r}; expected 'labeled' or 'oracle'")
    ok = frame["city"].isin(cities).to_numpy() & (frame["has_label"].astype(int).to_numpy() == 1)
    ok &= scored_pixels(frame) > 0
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        raise ValueError(f"no labeled sub-tile with scored pixels in the cities {list(cities)}")
    return idx


def unlabeled_pool(frame: pd.DataFrame) -> np.ndarray:
    """Row indices of the unlabeled cities' sub-tiles (images only; for semi-supervised terms)."""
    idx = np.flatnonzero(frame["city"].isin(cities_in("unlabeled")).to_numpy())
    if len(idx) == 0:
        raise ValueError("the manifest has no sub-tile of the unlabeled cities (needed by the semi-supervised methods)")
    return idx


def scoring_pool(frame: pd.DataFrame, max_per_city: int = 0) -> np.ndarray:
    """Row indices of the test cities' labeled sub-tiles with at least one scored pixel, in manifest order.

    ``max_per_city`` > 0 keeps at most that many per test city: a fixed subset (a permutation seeded by the
    city's name, independent of the job's seed, so every job scores the same sub-tiles). 0 keeps them all
    (the real study); the embedded default uses it to bound CPU time.
    """
    ok = frame["city"].isin(cities_in("test")).to_numpy() & (frame["has_label"].astype(int).to_numpy() == 1)
    idx = np.flatnonzero(ok & (scored_pixels(frame) > 0))
    if len(idx) == 0:
        raise ValueError("the manifest has no labeled test sub-tile with scored pixels")
    if max_per_city > 0:
        cities = frame["city"].to_numpy()[idx]
        keep = []
        for k, city in enumerate(cities_in("test")):
            rows = idx[cities == city]
            if len(rows) > max_per_city:
                rows = np.sort(np.random.default_rng([k, 0x5C0E]).permutation(rows)[:max_per_city])
            keep.append(rows)
        idx = np.sort(np.concatenate(keep))
    return idx


def fraction_count(n: int, fraction: float) -> int:
    """Number of sub-tiles kept for a label fraction: ceil(fraction·n), at least 1, at most n."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    return int(min(n, max(1, math.ceil(fraction * n - 1e-9))))


def nested_fraction(pool: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The seeded, nested selection of a label fraction (000 Table 4.2 protocol; our rule).

    One permutation of ``pool`` per seed; a fraction keeps its first ``fraction_count`` entries, so for one seed the
    1 % set ⊂ 10 % set ⊂ 100 % set. Returned sorted (manifest order).
    """
    pool = np.asarray(pool)
    order = np.random.default_rng([int(seed), 0x7A3F]).permutation(len(pool))
    return np.sort(pool[order[: fraction_count(len(pool), fraction)]])


def targets(labels: np.ndarray) -> np.ndarray:
    """MiniFrance ids → training targets 0..13 (int64), ``IGNORE_INDEX`` for ids 0 and 15."""
    return scored_label_map()[np.asarray(labels)]


def ids_from_targets(t: np.ndarray) -> np.ndarray:
    """Training targets 0..13 → MiniFrance ids."""
    return np.asarray(SCORED_IDS, dtype=np.uint8)[np.asarray(t)]


__all__ = [
    "IGNORE_INDEX", "scored_pixels", "dominant_class", "label_pool", "unlabeled_pool",
    "scoring_pool", "fraction_count", "nested_fraction", "targets", "ids_from_targets",
]
