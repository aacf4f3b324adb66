"""Step 4 of the appearance analysis: similarity and coverage of appearance maps (seed 004 §2.4.1 "Step 4",
Fig. 2.13; §2.5, Fig. 2.17, Table 2.7).

For surfaces S1 (training) and S2 (test), as sets of grid cells:

    IoU(S1, S2) = |S1 ∩ S2| / |S1 ∪ S2|        IoT(S1, S2) = |S1 ∩ S2| / |S2|   ("intersection over test")

The train × test heatmaps get an extra row (the union of all training surfaces) and an extra column (the union
of all test surfaces). A split's surface is the union of its cities' surfaces (SPEC.md §3.5, the default) or
one SVM fitted on the split's pooled points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

UNION_TRAIN = "union (training)"
UNION_TEST = "union (test)"
# Table 2.7 rows, plus the union of both training splits (Fig. 2.17: "the union of labeled and unlabeled does").
SPLIT_PAIRS: tuple[tuple[str, str], ...] = (("labeled", "test"), ("unlabeled", "test"), ("training", "test"))


def iou(s1: np.ndarray, s2: np.ndarray) -> float:
    """|S1 ∩ S2| / |S1 ∪ S2| of two bool grids (seed 004 §2.4.1 (i)); NaN when both are empty."""
    s1, s2 = _pair(s1, s2)
    union = np.logical_or(s1, s2).sum()
    return float(np.logical_and(s1, s2).sum() / union) if union else float("nan")


def intersection_over_test(s_train: np.ndarray, s_test: np.ndarray) -> float:
    """IoT = |S1 ∩ S2| / |S2| with S2 the test surface (seed 004 §2.4.1 (ii)); NaN when S2 is empty."""
    s1, s2 = _pair(s_train, s_test)
    area = s2.sum()
    return float(np.logical_and(s1, s2).sum() / area) if area else float("nan")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"surfaces on different grids: {a.shape} vs {b.shape}")
    return a, b


def union_surface(surfaces: Iterable[np.ndarray]) -> np.ndarray | None:
    """Cell-wise OR of the given surfaces; None when there are none."""
    out = None
    for s in surfaces:
        out = np.array(s, dtype=bool) if out is None else out | s
    return out


def coverage_matrices(
    surfaces: Mapping[str, np.ndarray], train_cities: list[str], test_cities: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IoU and IoT heatmaps (Fig. 2.13): rows = training cities + ``UNION_TRAIN``, columns = test cities +
    ``UNION_TEST``. A city without a surface (too few points) gives a NaN row/column and is left out of the
    unions."""
    rows = {c: surfaces.get(c) for c in train_cities}
    cols = {c: surfaces.get(c) for c in test_cities}
    rows[UNION_TRAIN] = union_surface(s for s in rows.values() if s is not None)
    cols[UNION_TEST] = union_surface(s for s in cols.values() if s is not None)
    m_iou = pd.DataFrame(np.nan, index=list(rows), columns=list(cols))
    m_iot = m_iou.copy()
    for r, s1 in rows.items():
        for c, s2 in cols.items():
            if s1 is None or s2 is None:
                continue
            m_iou.loc[r, c] = iou(s1, s2)
            m_iot.loc[r, c] = intersection_over_test(s1, s2)
    return m_iou, m_iot


def matrices_to_long(m_iou: pd.DataFrame, m_iot: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Tidy rows ``seed, train, test, iou, iot`` from the two heatmaps."""
    rows = [
        {"seed": seed, "train": r, "test": c, "iou": m_iou.loc[r, c], "iot": m_iot.loc[r, c]}
        for r in m_iou.index for c in m_iou.columns
    ]
    return pd.DataFrame(rows, columns=["seed", "train", "test", "iou", "iot"])


def split_surfaces(
    surfaces: Mapping[str, np.ndarray],
    city_split: Mapping[str, str],
    method: str = "union",
    embedding: np.ndarray | None = None,
    cities: np.ndarray | None = None,
    grid=None,
    kernel: str = "rbf",
    nu: float = 0.1,
    gamma: float | str = 200.0,
) -> dict[str, np.ndarray | None]:
    """One surface per split (labeled, unlabeled, test) and for ``training`` = labeled ∪ unlabeled (Fig. 2.17).

    ``union`` (default, SPEC.md §3.5): the OR of the split's city surfaces. ``pooled``: one one-class SVM
    fitted on all the split's points (needs ``embedding``, ``cities`` and ``grid``)."""
    members = {
        "labeled": ["labeled"], "unlabeled": ["unlabeled"], "test": ["test"], "training": ["labeled", "unlabeled"],
    }
    out: dict[str, np.ndarray | None] = {}
    if method == "union":
        for name, splits in members.items():
            out[name] = union_surface(s for c, s in surfaces.items() if city_split.get(c) in splits)
    elif method == "pooled":
        if embedding is None or cities is None or grid is None:
            raise ValueError("split_surface = pooled needs the embedding, the city of each point and the grid")
        from tmf.appearance.surfaces import fit_surface

        cities = np.asarray(cities)
        point_split = np.array([city_split.get(c, "") for c in cities])
        for name, splits in members.items():
            pts = np.asarray(embedding)[np.isin(point_split, splits)]
            out[name] = fit_surface(pts, grid, kernel, nu, gamma) if len(pts) >= 2 else None
    else:
        raise ValueError(f"appearance.split_surface: {method!r} is not union or pooled")
    return out


def split_coverage(split_surf: Mapping[str, np.ndarray | None], seed: int) -> pd.DataFrame:
    """Table 2.7: rows ``seed, train_split, test_split, iou, iot`` for labeled–test, unlabeled–test and
    training–test."""
    rows = []
    for a, b in SPLIT_PAIRS:
        s1, s2 = split_surf.get(a), split_surf.get(b)
        ok = s1 is not None and s2 is not None
        rows.append({
            "seed": seed, "train_split": a, "test_split": b,
            "iou": iou(s1, s2) if ok else float("nan"),
            "iot": intersection_over_test(s1, s2) if ok else float("nan"),
        })
    return pd.DataFrame(rows, columns=["seed", "train_split", "test_split", "iou", "iot"])


def aggregate_seeds(frame: pd.DataFrame, keys: list[str], values: tuple[str, ...] = ("iou", "iot")) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof = 1; NaN for a single seed) over seeds, per ``keys``.

    Columns: ``keys…, <v>_mean, <v>_std`` for each value, then ``n_seeds``. Row order follows the first seed's."""
    g = frame.groupby(keys, sort=False)
    out = pd.DataFrame(index=g.size().index)
    for v in values:
        out[f"{v}_mean"] = g[v].mean()
        out[f"{v}_std"] = g[v].std(ddof=1)
    out["n_seeds"] = g["seed"].nunique()
    return out.reset_index()
