"""Metrics against hand-worked confusion matrices and against scikit-learn (an independent implementation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from tmf.data.minifrance import IGNORE_INDEX, SCORED_IDS
from tmf.evaluate.metrics import (
    average_hierarchical_cost,
    cohen_kappa,
    confusion_matrix,
    mean_iou,
    overall_accuracy,
    per_class_iou,
    scores,
)

IDS = (1, 2, 3)


def hand_example():
    # 5 scored pixels; the last three carry ignored ids (0, 15, IGNORE_INDEX) and must not count even though
    # their predictions are wrong. Class 3 is absent from the ground truth and never predicted on scored pixels.
    y_true = np.array([1, 1, 1, 2, 2, 0, 15, IGNORE_INDEX])
    y_pred = np.array([1, 1, 2, 2, 1, 3, 3, 3])
    return y_true, y_pred


def test_confusion_matrix_by_hand_ignores_ids():
    cm = confusion_matrix(*hand_example(), ids=IDS)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_scores_by_hand():
    cm = confusion_matrix(*hand_example(), ids=IDS)
    assert overall_accuracy(cm) == pytest.approx(3 / 5)
    iou = per_class_iou(cm)
    assert iou[0] == pytest.approx(2 / 4)  # TP 2, FP 1, FN 1
    assert iou[1] == pytest.approx(1 / 3)  # TP 1, FP 1, FN 1
    assert math.isnan(iou[2])  # neither present nor predicted
    assert mean_iou(cm) == pytest.approx((1 / 2 + 1 / 3) / 2)
    # p_o = 3/5; p_e = (3/5)(3/5) + (2/5)(2/5) = 0.52; κ = 0.08 / 0.48
    assert cohen_kappa(cm) == pytest.approx(1 / 6)


def test_absent_class_predicted_counts_zero_iou_but_not_in_miou():
    cm = confusion_matrix([1, 2], [3, 2], ids=IDS)
    np.testing.assert_array_equal(cm, [[0, 0, 1], [0, 1, 0], [0, 0, 0]])
    iou = per_class_iou(cm)
    assert iou.tolist() == [0.0, 1.0, 0.0]
    assert mean_iou(cm) == pytest.approx(0.5)  # only classes 1 and 2 are in the ground truth
    assert overall_accuracy(cm) == pytest.approx(0.5)


def test_prediction_of_unscored_id_on_scored_pixel_is_an_error():
    with pytest.raises(ValueError, match="not among the scored ids"):
        confusion_matrix([1, 2], [0, 2], ids=IDS)
    # ... but fine on an ignored pixel
    np.testing.assert_array_equal(confusion_matrix([0, 2], [0, 2], ids=IDS), [[0, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros(4, int))


def test_empty_and_degenerate():
    cm = confusion_matrix([0, 15], [1, 1], ids=IDS)
    assert cm.sum() == 0
    assert math.isnan(overall_accuracy(cm)) and math.isnan(mean_iou(cm)) and math.isnan(cohen_kappa(cm))
    s = scores(cm, ids=IDS)
    assert s["oa"] is None and s["miou"] is None and s["kappa"] is None
    # perfect agreement with one class: p_e = 1, κ undefined
    assert math.isnan(cohen_kappa(confusion_matrix([1, 1], [1, 1], ids=IDS)))


def test_against_sklearn_on_random_labels():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 16, size=(7, 33, 31))
    y_true[0, :3] = IGNORE_INDEX
    y_pred = np.where(rng.random(y_true.shape) < 0.4, y_true, rng.choice(SCORED_IDS, size=y_true.shape))
    y_pred = np.where(np.isin(y_pred, SCORED_IDS), y_pred, 1)
    cm = confusion_matrix(y_true, y_pred)
    keep = np.isin(y_true, SCORED_IDS)
    t, p = y_true[keep], y_pred[keep]
    np.testing.assert_array_equal(cm, sk_confusion_matrix(t, p, labels=list(SCORED_IDS)))
    assert cohen_kappa(cm) == pytest.approx(cohen_kappa_score(t, p), abs=1e-12)
    assert overall_accuracy(cm) == pytest.approx((t == p).mean())
    # IoU by a second formula: |A ∩ B| / |A ∪ B| over pixel sets
    for k, c in enumerate(SCORED_IDS):
        a, b = t == c, p == c
        if (a | b).any():
            assert per_class_iou(cm)[k] == pytest.approx((a & b).sum() / (a | b).sum())


def test_average_hierarchical_cost_by_hand():
    # urban fabric→industrial: same level-1 group (2); urban fabric→arable land: other group (4); correct (0)
    y_true = np.array([1, 1, 5, 0])
    y_pred = np.array([2, 5, 5, 14])
    cm = confusion_matrix(y_true, y_pred)
    assert average_hierarchical_cost(cm) == pytest.approx((2 + 4 + 0) / 3)
    d = np.ones((3, 3)) - np.eye(3)  # a flat hierarchy: AHC = error rate
    cm3 = confusion_matrix(*hand_example(), ids=IDS)
    assert average_hierarchical_cost(cm3, d) == pytest.approx(1 - overall_accuracy(cm3))
    with pytest.raises(ValueError, match="does not match"):
        average_hierarchical_cost(cm3, np.zeros((2, 2)))


def test_average_hierarchical_cost_on_a_small_tree():
    d = np.array([[0, 2, 4, 4, 4], [2, 0, 4, 4, 4], [4, 4, 0, 2, 2], [4, 4, 2, 0, 2], [4, 4, 2, 2, 0]], dtype=float)
    y_true = np.array([0, 0, 1, 2, 3, 4, 4])
    y_pred = np.array([0, 1, 1, 4, 0, 4, 3])  # costs 0, 2, 0, 2, 4, 0, 2 → 10/7
    conf = np.zeros((5, 5))
    np.add.at(conf, (y_true, y_pred), 1)
    assert average_hierarchical_cost(conf, d) == pytest.approx(10 / 7)
    assert average_hierarchical_cost(np.diag([3, 1, 0, 2, 5]), d) == 0.0
    assert np.isnan(average_hierarchical_cost(np.zeros((5, 5)), d))
    with pytest.raises(ValueError, match="same shape"):
        average_hierarchical_cost(np.zeros((4, 4)), d)


def test_scores_dict():
    cm = confusion_matrix(*hand_example(), ids=IDS)
    s = scores(cm, ids=IDS)
    assert s["per_class_iou"]["3"] is None and s["per_class_iou"]["1"] == pytest.approx(0.5)
    assert s["confusion"] == cm.tolist() and s["n_pixels"] == 5
    assert s["hierarchical_cost"] == pytest.approx(2 * 2 / 5)  # two errors within the artificial group
