"""Evaluation data: label pools, nested label fractions and targets over the rows of tinyMiniFrance.

The manifest and the packed arrays are opened and checked by :func:`tmf.data.packed.open_packed`; the pools here
are row numbers of its manifest (``split``, ``city``, ``has_label`` and ``count_0 … count_15``).

Splits follow SPEC.md §5 (seed 004 §2.3): supervision from the labeled split only, the unlabeled split for
semi-supervised terms; what is scored is the job's test set (:mod:`tmf.evaluate.testsets`). Pools go by the
manifest's ``split`` column, so a city folder that is not one of MiniFrance's 16 counts in the split it was found
in. The "oracle" baseline (seed 004 Table 3.1) also takes the labels of the unlabeled cities, which exist for the
synthetic data but not in the public MiniFrance and DFC2022 releases (:class:`MissingLabels`).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from tmf.data.minifrance import IGNORE_INDEX, SCORED_IDS, city_rank, scored_label_map

SCORED_COUNT_COLUMNS = tuple(f"count_{i}" for i in SCORED_IDS)


def scored_pixels(frame: pd.DataFrame) -> np.ndarray:
    """Number of scored pixels (ids 1–14) of each manifest row."""
    return frame[list(SCORED_COUNT_COLUMNS)].to_numpy().sum(1)


def dominant_class(frame: pd.DataFrame) -> np.ndarray:
    """Dominant scored id of each row (the scene-level probe's target); ties go to the smaller id."""
    counts = frame[list(SCORED_COUNT_COLUMNS)].to_numpy()
    return np.asarray(SCORED_IDS)[counts.argmax(1)]


class MissingLabels(ValueError):
    """The labels a method needs are not in the data (the oracle on the public releases): its jobs are skipped."""


def scoreable(frame: pd.DataFrame) -> np.ndarray:
    """Rows that may supervise or be scored: ``has_label = 1`` and at least one scored pixel (bool mask)."""
    return (frame["has_label"].astype(int).to_numpy() == 1) & (scored_pixels(frame) > 0)


def label_pool(frame: pd.DataFrame, which: str = "labeled", exclude: np.ndarray | None = None) -> np.ndarray:
    """Row indices that may supervise training, in manifest order.

    ``labeled``: labeled sub-tiles of the labeled split (its cities: Nice, Nantes_Saint-Nazaire and any other city
    folder of that split) with at least one scored pixel. ``oracle``: the same over the labeled and unlabeled
    splits (all eight training cities); :class:`MissingLabels` when an unlabeled city has no labels (the public
    releases do not publish them). ``exclude``: a bool mask of rows that never supervise (held-out tiles, the
    scored city of a cross-city fold).
    """
    splits = {"labeled": ("labeled",), "oracle": ("labeled", "unlabeled")}.get(which)
    if splits is None:
        raise ValueError(f"unknown label pool {which!r}; expected 'labeled' or 'oracle'")
    in_split = frame["split"].isin(splits).to_numpy()
    if which == "oracle":
        has = frame["has_label"].astype(int).to_numpy() == 1
        unl = frame["split"].to_numpy() == "unlabeled"
        cities = frame["city"].to_numpy()
        lacking = sorted(set(cities[unl]) - set(cities[unl & has]), key=city_rank)
        if lacking:
            raise MissingLabels(f"method 'oracle' needs labels for every training city, but the manifest has none "
                                f"for {lacking} (the public MiniFrance and DFC2022 releases publish no labels for "
                                "the unlabeled cities)")
    ok = in_split & scoreable(frame)
    if exclude is not None:
        ok &= ~np.asarray(exclude, dtype=bool)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        raise ValueError(f"no labeled sub-tile with scored pixels in the splits {list(splits)}"
                         + (" outside the held-out / scored sub-tiles" if exclude is not None else ""))
    return idx


def unlabeled_pool(frame: pd.DataFrame) -> np.ndarray:
    """Row indices of the unlabeled split's sub-tiles (images only; for semi-supervised terms)."""
    idx = np.flatnonzero(frame["split"].to_numpy() == "unlabeled")
    if len(idx) == 0:
        raise ValueError("the manifest has no sub-tile of the unlabeled cities (needed by the semi-supervised methods)")
    return idx


def scoring_pool(frame: pd.DataFrame, max_per_city: int = 0, rows: np.ndarray | None = None) -> np.ndarray:
    """Row indices scored by a job, in manifest order: ``rows`` (default: the test split's labeled sub-tiles with
    at least one scored pixel), of which ``max_per_city`` > 0 keeps at most that many per city.

    The subset is a fixed one: a permutation seeded by the city's name, independent of the job's seed and of the
    other cities, so every job scores the same sub-tiles. 0 keeps them all (the real study); the embedded default
    uses it to bound CPU time.
    """
    if rows is None:
        rows = np.flatnonzero((frame["split"].to_numpy() == "test") & scoreable(frame))
        if len(rows) == 0:
            raise ValueError("the manifest has no labeled test sub-tile with scored pixels")
    idx = np.sort(np.asarray(rows, dtype=np.int64))
    if max_per_city > 0 and len(idx):
        cities = frame["city"].to_numpy()[idx]
        keep = []
        for city in dict.fromkeys(cities):
            sel = idx[cities == city]
            if len(sel) > max_per_city:
                sel = np.sort(city_stream("scoring", city).permutation(sel)[:max_per_city])
            keep.append(sel)
        idx = np.sort(np.concatenate(keep))
    return idx


def city_stream(purpose: str, city: str, seed: int = 0) -> np.random.Generator:
    """A random stream that is a function of (purpose, seed, city name) only, whatever the other cities."""
    digest = hashlib.sha256(f"{purpose}\x1f{seed}\x1f{city}".encode()).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32).tolist())


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
    "IGNORE_INDEX", "MissingLabels", "scored_pixels", "scoreable", "dominant_class", "label_pool", "unlabeled_pool",
    "scoring_pool", "city_stream", "fraction_count", "nested_fraction", "targets", "ids_from_targets",
]
