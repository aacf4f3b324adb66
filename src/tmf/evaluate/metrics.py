"""Segmentation scores from a confusion matrix (SPEC.md §5; seed 004 §2.3.3 and ch. 3; seed 000 App. A.2, §5).

Everything is computed from one confusion matrix ``cm`` over the 14 scored MiniFrance ids
(``tmf.data.minifrance.SCORED_IDS``): ``cm[i, j]`` counts pixels whose true class is ``ids[i]`` and whose
predicted class is ``ids[j]``. Pixels whose true label is not scored (ids 0 "no information" and 15 "clouds and
shadows", or ``IGNORE_INDEX``) never enter the matrix.

NumPy is used directly (a ``bincount`` over ``true * C + pred``): scikit-learn's ``confusion_matrix`` would do,
but it cannot drop ignored ids while keeping absent classes as rows, and it is much slower on millions of pixels.
The tests check κ against ``sklearn.metrics.cohen_kappa_score``.
"""

from __future__ import annotations

import math

import numpy as np

from tmf.data.minifrance import IGNORE_INDEX, SCORED_IDS, tree_distance_matrix


def _lookup(ids: tuple[int, ...] | list[int]) -> np.ndarray:
    ids = [int(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError(f"confusion_matrix: ids must be distinct, got {ids}")
    if any(i < 0 or i > 255 for i in ids):
        raise ValueError(f"confusion_matrix: ids must lie in 0..255, got {ids}")
    lut = np.full(256, -1, dtype=np.int64)
    lut[ids] = np.arange(len(ids))
    return lut


def confusion_matrix(y_true, y_pred, ids: tuple[int, ...] | list[int] = SCORED_IDS) -> np.ndarray:
    """Confusion matrix ``cm[i, j]`` = #pixels with true class ``ids[i]`` predicted as ``ids[j]``.

    ``y_true`` and ``y_pred`` are integer arrays of the same shape holding MiniFrance ids. A pixel counts only if
    its true id is in ``ids``; true ids outside (0, 15, ``IGNORE_INDEX`` = 255 with the default ids) are ignored.
    A prediction outside ``ids`` on a counted pixel is an error (``ValueError``): models predict scored ids only.
    Returns an ``(len(ids), len(ids))`` int64 array; classes absent from both arrays give zero rows/columns.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: y_true has shape {y_true.shape}, y_pred {y_pred.shape}")
    if y_true.size and (y_true.min() < 0 or y_true.max() > 255 or y_pred.min() < 0 or y_pred.max() > 255):
        raise ValueError("confusion_matrix: labels must be ids in 0..255")
    lut = _lookup(ids)
    n = len(ids)
    t = lut[y_true.reshape(-1).astype(np.int64)]
    keep = t >= 0
    p = lut[y_pred.reshape(-1).astype(np.int64)[keep]]
    t = t[keep]
    if (p < 0).any():
        bad = sorted(set(np.asarray(y_pred).reshape(-1)[keep][p < 0].tolist()))
        raise ValueError(f"confusion_matrix: predictions {bad} on scored pixels are not among the scored ids {list(ids)}")
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n).astype(np.int64)


def overall_accuracy(cm: np.ndarray) -> float:
    """OA = Σ_c cm[c, c] / Σ cm (fraction of scored pixels classified correctly); NaN for an empty matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else math.nan


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """IoU_c = TP_c / (TP_c + FP_c + FN_c) = cm[c,c] / (row_c + col_c − cm[c,c]).

    NaN where the union is empty (class neither present nor predicted); 0 for a class predicted but absent
    from the ground truth (all its predictions are false positives).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """mIoU over the classes present in the ground truth (row sum > 0), as SPEC.md §5 asks: classes absent from
    the test ground truth (8 and 9 in MiniFrance, or any class missing from a city) do not count, even when
    predicted. NaN when no class is present."""
    cm = np.asarray(cm, dtype=np.float64)
    present = cm.sum(1) > 0
    if not present.any():
        return math.nan
    return float(per_class_iou(cm)[present].mean())


def cohen_kappa(cm: np.ndarray) -> float:
    """Cohen's κ (seed 000 App. A.2, eq. A.1): κ = (p_o − p_e) / (1 − p_e), with p_o = Σ_c cm[c,c] / N and
    p_e = Σ_c (row_c / N)(col_c / N) = (1/N²) Σ_c #{true = c}·#{pred = c}.

    NaN when undefined (empty matrix, or p_e = 1: a single class both true and predicted everywhere).
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n == 0:
        return math.nan
    p_o = np.trace(cm) / n
    p_e = float((cm.sum(1) / n) @ (cm.sum(0) / n))
    if math.isclose(p_e, 1.0):
        return math.nan
    return float((p_o - p_e) / (1.0 - p_e))


def average_hierarchical_cost(cm: np.ndarray, tree_distance: np.ndarray | None = None) -> float:
    """Average hierarchical cost (seed 000 §5, eq. 5.11; Kosmopoulos et al. 2015): AHC = (1/N) Σ_i D[y_i, z_i]
    = Σ_{a,b} cm[a,b]·D[a,b] / Σ cm, with D the shortest-path distance in the label hierarchy
    (``tree_distance_matrix()``: 0 same class, 2 same UrbanAtlas level-1 group, 4 otherwise). 0 for a perfect
    classifier, lower is better; NaN for an empty matrix. The one implementation of the metric: the hyperbolic
    head's evaluation (seed 000 Tables 5.1, 5.3) and every other protocol report it.
    """
    cm = np.asarray(cm, dtype=np.float64)
    d = tree_distance_matrix() if tree_distance is None else np.asarray(tree_distance, dtype=np.float64)
    if d.shape != cm.shape:
        raise ValueError(f"average_hierarchical_cost: tree distance {d.shape} does not match confusion {cm.shape} "
                         "(they must have the same shape)")
    n = cm.sum()
    return float((cm * d).sum() / n) if n > 0 else math.nan


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def scores(cm: np.ndarray, ids: tuple[int, ...] | list[int] = SCORED_IDS,
           tree_distance: np.ndarray | None = None) -> dict:
    """All scores of one confusion matrix, JSON-ready (undefined values are ``None``):
    ``oa, miou, kappa, hierarchical_cost, per_class_iou {id: iou}, confusion, n_pixels``.

    The hierarchical cost uses ``tree_distance`` (default: ``tree_distance_matrix(ids)``).
    """
    cm = np.asarray(cm)
    if cm.shape != (len(ids), len(ids)):
        raise ValueError(f"scores: confusion matrix {cm.shape} does not match {len(ids)} ids")
    d = tree_distance_matrix(tuple(ids)) if tree_distance is None else tree_distance
    iou = per_class_iou(cm)
    return {
        "oa": _finite_or_none(overall_accuracy(cm)),
        "miou": _finite_or_none(mean_iou(cm)),
        "kappa": _finite_or_none(cohen_kappa(cm)),
        "hierarchical_cost": _finite_or_none(average_hierarchical_cost(cm, d)),
        "per_class_iou": {str(int(i)): _finite_or_none(v) for i, v in zip(ids, iou, strict=True)},
        "confusion": np.asarray(cm, dtype=np.int64).tolist(),
        "n_pixels": int(cm.sum()),
    }


__all__ = [
    "IGNORE_INDEX", "confusion_matrix", "overall_accuracy", "per_class_iou", "mean_iou", "cohen_kappa",
    "average_hierarchical_cost", "scores",
]
