"""MM-SSL (seed 000 eq. 4.1) and MM-SupCon (eqs. 4.2-4.4) against loop implementations written from the equations,
and their identities: one modality with two views is NT-Xent, distinct labels are MM-SSL, one view is SupCon."""

import math

import numpy as np
import pytest
import torch

from tmf.ssl.losses import mm_ssl, mm_supcon, nt_xent


def _views(v=4, n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(v)]


def _loop(views, positive, tau):
    """Eqs. 4.1 / 4.4 with plain loops: every view representation z_i of the V·N (normalised), its positives P(i)
    given by ``positive(i, j)`` over (view, sample) pairs, averaged over the anchors that have a positive."""
    z = [(k, s, x / np.linalg.norm(x)) for k, vw in enumerate(views) for s, x in enumerate(vw.numpy())]
    total, anchors = 0.0, 0
    for i, (ki, si, zi) in enumerate(z):
        denom = sum(math.exp(zi @ zk / tau) for k, (_, _, zk) in enumerate(z) if k != i)
        pos = [zj for j, (kj, sj, zj) in enumerate(z) if j != i and positive((ki, si), (kj, sj))]
        if not pos:
            continue
        total += -sum(math.log(math.exp(zi @ zj / tau) / denom) for zj in pos) / len(pos)
        anchors += 1
    return total / anchors


@pytest.mark.parametrize("v", [2, 3, 4])
def test_mm_ssl_equals_a_loop_over_eq_4_1(v):
    views = _views(v=v)
    ours = mm_ssl(views, temperature=0.3)
    ref = _loop(views, lambda a, b: a[1] == b[1], 0.3)  # P_MM(i): the other views of the same sample
    assert float(ours) == pytest.approx(ref, rel=1e-10)


def test_mm_ssl_with_one_modality_and_two_views_is_nt_xent():
    za, zb = _views(v=2, n=9, d=7, seed=3)
    assert float(mm_ssl([za, zb], 0.5)) == pytest.approx(float(nt_xent(za, zb, 0.5)), rel=1e-12)


def test_mm_supcon_equals_a_loop_over_eq_4_4():
    views = _views(v=4, n=8)  # two modalities x two views, say
    y = torch.tensor([0, 1, 0, 2, 1, 1, -1, 3])  # -1: a sample without class; 3: alone in its class

    def positive(a, b):  # P_MM-S(i) = P_MM(i) ∪ views of the samples of the same class (eq. 4.3)
        return a[1] == b[1] or (int(y[a[1]]) >= 0 and int(y[a[1]]) == int(y[b[1]]))

    assert float(mm_supcon(views, y, 0.2)) == pytest.approx(_loop(views, positive, 0.2), rel=1e-10)


def test_mm_supcon_special_cases():
    views = _views(v=4, n=6)
    # every label distinct: MM-SSL (eq. 4.4 -> eq. 4.1)
    assert float(mm_supcon(views, torch.arange(6), 0.5)) == pytest.approx(float(mm_ssl(views, 0.5)), rel=1e-12)
    # one modality, one view: SupCon (eq. 4.2), positives the other samples of the class
    (z,) = _views(v=1, n=7)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    assert float(mm_supcon([z], y, 0.1)) == pytest.approx(_loop([z], lambda a, b: y[a[1]] == y[b[1]], 0.1),
                                                          rel=1e-10)


def test_losses_refuse_bad_input_and_carry_gradients():
    with pytest.raises(ValueError, match="at least 2"):
        mm_ssl(_views(v=1))
    with pytest.raises(ValueError, match="labels must be"):
        mm_supcon(_views(v=2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="no view has a positive"):
        mm_supcon(_views(v=1, n=3), torch.tensor([0, 1, 2]))
    views = [v.clone().requires_grad_(True) for v in _views(v=3)]
    mm_ssl(views).backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in views)
