"""Image-level SSL losses against identities and independent (loop / NumPy / POT) implementations."""

import math

import numpy as np
import ot
import pytest
import torch

from tmf.ssl.diagnostics import effective_rank
from tmf.ssl.losses import (
    alignment,
    barlow_twins,
    byol,
    hydes,
    iot_coupling,
    iot_loss,
    moco_infonce,
    nt_xent,
    uniformity,
    wang_isola,
)

torch.set_default_dtype(torch.float32)


def _pair(n=8, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _views(z_a, z_b):
    """Stacked normalised views (2N, d) as NumPy, and the positive index of each row."""
    z = _unit(np.concatenate([z_a.numpy(), z_b.numpy()]))
    n = z_a.shape[0]
    pos = [i + n if i < n else i - n for i in range(2 * n)]
    return z, pos


def test_nt_xent_matches_naive_loop():
    z_a, z_b = _pair()
    tau = 0.5
    z, pos = _views(z_a, z_b)
    total = 0.0
    for i in range(len(z)):
        den = sum(math.exp(z[i] @ z[k] / tau) for k in range(len(z)) if k != i)
        total += -math.log(math.exp(z[i] @ z[pos[i]] / tau) / den)
    assert float(nt_xent(z_a, z_b, tau)) == pytest.approx(total / len(z), rel=1e-5)


def test_iot_ua_equals_nt_xent_plus_log_2n():
    # seed 003 eq. 12-13 and 18: -sum P~ log P with P = rowsoftmax / n is NT-Xent(tau = eps) + log n, n = 2N
    for n, eps in [(8, 0.5), (16, 0.2)]:
        z_a, z_b = _pair(n=n, seed=n)
        diff = float(iot_loss(z_a, z_b, eps=eps, coupling="ua")) - float(nt_xent(z_a, z_b, eps))
        assert diff == pytest.approx(math.log(2 * n), abs=1e-5)


def test_iot_u1_matches_global_softmax_formula():
    z_a, z_b = _pair(n=6)
    eps = 0.5
    z, pos = _views(z_a, z_b)
    cost = 1 - z @ z.T
    k = np.exp(-cost / eps)
    np.fill_diagonal(k, 0.0)
    p = k / k.sum()  # eq. 19
    expected = -np.mean([np.log(p[i, pos[i]]) for i in range(len(z))])  # eq. 20 with the SimCLR S
    assert float(iot_loss(z_a, z_b, eps=eps, coupling="u1")) == pytest.approx(expected, rel=1e-6)
    cp = iot_coupling(z_a, z_b, eps=eps, coupling="u1").numpy()
    np.testing.assert_allclose(cp, p, atol=1e-12)
    np.testing.assert_allclose(cp, cp.T, atol=1e-12)  # symmetric for a symmetric cost (seed 003 §3.3)


@pytest.mark.parametrize("iters", [1, 2, 4, 8])
def test_iot_uab_coupling_equals_pot_sinkhorn(iters):
    # Algorithm 1 / eq. 22 normalises rows then columns; POT's sinkhorn_knopp updates v (columns) then u (rows),
    # so K rounds of eq. 22 on C equal POT's K iterations on C^T, transposed (C is symmetric here).
    z_a, z_b = _pair(n=10, seed=iters)
    eps = 0.5
    z, pos = _views(z_a, z_b)
    n = len(z)
    cost = 1 - z @ z.T
    np.fill_diagonal(cost, 1e4)  # "C_ii large": exp(-1e4/eps) = 0 in float64
    marg = np.full(n, 1.0 / n)
    ref = ot.sinkhorn(marg, marg, cost.T, eps, numItermax=iters, stopThr=0.0, warn=False).T
    ours = iot_coupling(z_a, z_b, eps=eps, coupling="uab", iters=iters).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ours.sum(0), marg, rtol=1e-12)  # columns exact after the last half-step
    expected = -np.mean([np.log(ref[i, pos[i]]) for i in range(n)])  # eq. 23
    assert float(iot_loss(z_a, z_b, eps=eps, coupling="uab", iters=iters)) == pytest.approx(expected, rel=1e-9)


def test_iot_uab_converges_to_pot_fixed_point():
    z_a, z_b = _pair(n=6, seed=3)
    z, _ = _views(z_a, z_b)
    cost = 1 - z @ z.T
    np.fill_diagonal(cost, 1e4)
    marg = np.full(len(z), 1.0 / len(z))
    ref = ot.sinkhorn(marg, marg, cost, 0.5, numItermax=10000, stopThr=1e-14)
    ours = iot_coupling(z_a, z_b, eps=0.5, coupling="uab", iters=500).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_iot_uniformity_penalty_matches_kl_formula():
    z_a, z_b = _pair(n=5, seed=7)
    eps, lam = 0.5, 0.7
    z, pos = _views(z_a, z_b)
    n = len(z)
    k = np.exp(-(1 - z @ z.T) / eps)
    np.fill_diagonal(k, 0.0)
    p = k / k.sum(1, keepdims=True) / n  # U(a)
    neg = [(i, j) for i in range(n) for j in range(n) if i != j and j != pos[i]]
    qbar = np.mean([p[i, j] for i, j in neg])
    q = np.zeros_like(p)
    for i in range(n):
        q[i, pos[i]] = p[i, pos[i]]
    for i, j in neg:
        q[i, j] = qbar
    assert q.sum() == pytest.approx(1.0)
    mask = q > 0
    kl = float(np.sum(q[mask] * np.log(q[mask] / p[mask])))
    base = -np.mean([np.log(p[i, pos[i]]) for i in range(n)])
    got = float(iot_loss(z_a, z_b, eps=eps, coupling="ua", uniformity=lam))
    assert got == pytest.approx(base + lam * kl, rel=1e-9)
    assert kl > 0


def test_iot_rejects_bad_arguments():
    z_a, z_b = _pair()
    with pytest.raises(ValueError, match="coupling"):
        iot_loss(z_a, z_b, coupling="uabc")
    with pytest.raises(ValueError, match="eps"):
        iot_loss(z_a, z_b, eps=0)
    with pytest.raises(ValueError, match="iters"):
        iot_loss(z_a, z_b, coupling="uab", iters=0)


def test_moco_infonce_matches_loop():
    q, k = _pair(n=4, d=3, seed=1)
    queue = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    tau = 0.2
    qn, kn, qu = _unit(q), _unit(k), _unit(queue)
    total = 0.0
    for i in range(4):
        pos = math.exp(qn[i] @ kn[i] / tau)
        total += -math.log(pos / (pos + sum(math.exp(qn[i] @ qu[j] / tau) for j in range(7))))
    assert float(moco_infonce(q, k, queue, tau)) == pytest.approx(total / 4, rel=1e-9)
    with pytest.raises(ValueError, match="queue"):
        moco_infonce(q, k, queue[:, :2])


def test_byol_is_two_minus_two_cos():
    p, z = _pair(n=6, d=4, seed=5)
    pn, zn = _unit(p), _unit(z)
    sq = np.mean(np.sum((pn - zn) ** 2, axis=1))
    cos = np.mean(np.sum(pn * zn, axis=1))
    assert float(byol(p, z)) == pytest.approx(sq, rel=1e-9)
    assert float(byol(p, z)) == pytest.approx(2 - 2 * cos, rel=1e-9)
    assert float(byol(p, 3.0 * p)) == pytest.approx(0.0, abs=1e-12)  # scale-invariant


def test_barlow_twins_matches_loop_formula():
    z_a, z_b = _pair(n=10, d=4, seed=9)
    lam = 0.0051
    a, b = z_a.numpy(), z_b.numpy()
    n, d = a.shape
    sa = (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)
    sb = (b - b.mean(0)) / np.sqrt(b.var(0) + 1e-5)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(sa[k, i] * sb[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c**2
    assert float(barlow_twins(z_a, z_b, lam)) == pytest.approx(loss, rel=1e-9)
    # perfectly correlated, decorrelated features: C = I and the loss vanishes (up to the 1e-5 in the std)
    eye = torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]], dtype=torch.float64)
    assert float(barlow_twins(eye, eye)) == pytest.approx(0.0, abs=1e-4)


def test_alignment_uniformity_and_wang_isola_match_loops():
    z_a, z_b = _pair(n=7, d=3, seed=11)
    a, b = _unit(z_a.numpy()), _unit(z_b.numpy())
    align = np.mean(np.sum((a - b) ** 2, axis=1))
    assert float(alignment(z_a, z_b)) == pytest.approx(align, rel=1e-9)

    def unif(x, t=2.0):
        vals = [math.exp(-t * np.sum((x[i] - x[j]) ** 2)) for i in range(len(x)) for j in range(i + 1, len(x))]
        return math.log(np.mean(vals))

    assert float(uniformity(z_a)) == pytest.approx(unif(a), rel=1e-9)
    expected = align + 0.5 * (unif(a) + unif(b))
    assert float(wang_isola(z_a, z_b)) == pytest.approx(expected, rel=1e-9)


def _multi_positive_infonce(views, kappa):
    z = _unit(np.concatenate([v.numpy() for v in views]))
    n = views[0].shape[0]
    img = np.tile(np.arange(n), len(views))
    total = 0.0
    for i in range(len(z)):
        e = np.exp(kappa * (z @ z[i]))
        total += -math.log(e[img == img[i]].sum() / e.sum())
    return total / len(z)


def test_hydes_with_unit_local_weight_is_multi_positive_infonce():
    g = torch.Generator().manual_seed(4)
    views = [torch.randn(5, 6, generator=g, dtype=torch.float64) for _ in range(4)]
    for kappa in (2.0, 10.0):
        expected = _multi_positive_infonce(views, kappa) - math.log(5)  # - log N, see tmf.ssl.losses.hydes
        assert float(hydes(views, kappa, 1.0)) == pytest.approx(expected, rel=1e-9)


def test_hydes_matches_kernel_density_entropies():
    g = torch.Generator().manual_seed(6)
    views = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    kappa, w = 3.0, 0.4
    z = _unit(np.concatenate([v.numpy() for v in views]))
    img = np.tile(np.arange(3), 3)
    kern = np.exp(kappa * z @ z.T)  # vMF kernel without C_d(kappa) (a constant, dropped)
    h_g = -np.mean([math.log(kern[i].mean()) for i in range(len(z))])
    h_l = -np.mean([math.log(kern[i, img == img[i]].mean()) for i in range(len(z))])
    assert float(hydes(views, kappa, w)) == pytest.approx(w * h_l - h_g, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        hydes(views[:1], kappa)


def test_effective_rank():
    u = torch.randn(20, 1, dtype=torch.float64)
    assert effective_rank(u @ torch.randn(1, 6, dtype=torch.float64)) == pytest.approx(1.0, abs=1e-6)
    q, _ = torch.linalg.qr(torch.randn(20, 6, dtype=torch.float64))
    assert effective_rank(q) == pytest.approx(6.0, rel=1e-9)
    s = torch.tensor([3.0, 1.0], dtype=torch.float64)
    p = s / s.sum()
    assert effective_rank(torch.diag(s)) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-9)


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b: nt_xent(a, b, 0.5),
        lambda a, b: moco_infonce(a, b.detach(), torch.randn(32, a.shape[1]), 0.2),
        lambda a, b: byol(a, b.detach()),
        lambda a, b: barlow_twins(a, b),
        lambda a, b: wang_isola(a, b),
        lambda a, b: iot_loss(a, b, 0.5, "ua", uniformity=0.5),
        lambda a, b: iot_loss(a, b, 0.5, "u1", uniformity=0.5),
        lambda a, b: iot_loss(a, b, 0.5, "uab", iters=8, uniformity=10.0),
        lambda a, b: hydes([a, b, a * 0.5 + b], 10.0, 1.0),
    ],
)
def test_gradients_finite(fn):
    a = torch.randn(64, 16, requires_grad=True)
    b = torch.randn(64, 16, requires_grad=True)
    loss = fn(a, b)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_losses_ignore_the_callers_bf16_autocast():
    # under autocast every matmul would run in bf16 (3 significant digits); the losses switch it off
    from tmf.ssl.losses import ot_sample

    z_a, z_b = torch.randn(32, 16), torch.randn(32, 16)
    for fn in (lambda a, b: nt_xent(a, b, 0.5), lambda a, b: ot_sample(a, b, 0.01, 5),
               lambda a, b: iot_loss(a, b, 0.5, "uab", iters=4)):
        ref = fn(z_a, z_b)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fn(z_a.bfloat16(), z_b.bfloat16())
        assert got.dtype == torch.float32
        assert float(got) == pytest.approx(float(fn(z_a.bfloat16().float(), z_b.bfloat16().float())), rel=1e-6)
        assert float(got) == pytest.approx(float(ref), rel=0.05)
