"""OT-based losses against POT: log-domain Sinkhorn, OT between samples / features, sliced Wasserstein on the
sphere, dense OT matching."""

import math
import warnings

import numpy as np
import ot
import pytest
import torch

from tmf.ssl.losses import (
    dense_contrastive,
    match_plans,
    match_weights,
    ot_feature,
    ot_sample,
    sinkhorn_log,
    sphere_projections,
    ssw_ssl,
    ssw_uniformity,
    sw_ssl,
    sw_uniformity,
)

pytestmark = pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("iters", [1, 3, 5, 20])
def test_sinkhorn_log_equals_pot(iters):
    cost = _rand(7, 5, seed=iters).abs()
    a = torch.rand(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.1
    b = torch.rand(5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.1
    a, b = a / a.sum(), b / b.sum()
    eps = 0.3
    ours = sinkhorn_log(cost, eps, iters, a, b).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_knopp = ot.sinkhorn(a.numpy(), b.numpy(), cost.numpy(), eps, numItermax=iters, stopThr=0.0)
        ref_log = ot.bregman.sinkhorn_log(a.numpy(), b.numpy(), cost.numpy(), eps, numItermax=iters, stopThr=0.0)
    np.testing.assert_allclose(ours, ref_knopp, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(ours, ref_log, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(ours.sum(1), a.numpy(), rtol=1e-12)  # rows exact after each iteration
    uniform = sinkhorn_log(cost, eps, iters).numpy()
    np.testing.assert_allclose(uniform.sum(1), np.full(7, 1 / 7), rtol=1e-12)


def test_sinkhorn_log_marginals_converge_and_log_output():
    cost = _rand(6, 6, seed=3).abs()
    pi = sinkhorn_log(cost, 0.5, 500)
    np.testing.assert_allclose(pi.sum(0).numpy(), np.full(6, 1 / 6), atol=1e-10)
    np.testing.assert_allclose(pi.sum(1).numpy(), np.full(6, 1 / 6), atol=1e-12)
    log_pi = sinkhorn_log(cost, 0.5, 500, log=True)
    np.testing.assert_allclose(log_pi.exp().numpy(), pi.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="eps"):
        sinkhorn_log(cost, 0.0, 5)


def test_sinkhorn_log_small_eps_does_not_underflow():
    # float32 exp(-C/eps) is 0 below exp(-103): at eps = 0.001 almost every entry of the plain kernel underflows
    cost = _rand(50, 50, seed=4).abs().float() * 2
    assert (torch.exp(-cost / 0.001) == 0).float().mean() > 0.9
    pi = sinkhorn_log(cost, 0.001, 5)
    assert torch.isfinite(pi).all() and float(pi.sum()) == pytest.approx(1.0, rel=1e-5)
    ref = ot.bregman.sinkhorn_log(np.full(50, 0.02), np.full(50, 0.02), cost.double().numpy(), 0.001,
                                  numItermax=5, stopThr=0.0)
    np.testing.assert_allclose(pi.double().numpy(), ref, atol=1e-5)


def test_ot_sample_matches_pot_plan():
    z_a, z_b = _rand(6, 4, seed=5), _rand(6, 4, seed=6)
    z = _unit(np.concatenate([z_a.numpy(), z_b.numpy()]))
    cost = 1 - z @ z.T
    np.fill_diagonal(cost, 1e6)  # C_ii = +inf (exp(-1e6/eps) = 0)
    eps, iters, n = 0.1, 5, 6
    plan = ot.bregman.sinkhorn_log(np.full(12, 1 / 12), np.full(12, 1 / 12), cost, eps, numItermax=iters,
                                   stopThr=0.0)
    expected = -sum(math.log(plan[i, i + n]) + math.log(plan[i + n, i]) for i in range(n)) / (2 * n)
    assert float(ot_sample(z_a, z_b, eps, iters)) == pytest.approx(expected, rel=1e-9)


def test_ot_feature_matches_pot_plan():
    z_a, z_b = _rand(10, 5, seed=7), _rand(10, 5, seed=8)
    a = _unit(z_a.numpy())
    b = _unit(z_b.numpy())
    a = a / np.linalg.norm(a, axis=0, keepdims=True)
    b = b / np.linalg.norm(b, axis=0, keepdims=True)
    cost = 1 - a.T @ b  # eq. 3.7 with column-normalised features
    plan = ot.bregman.sinkhorn_log(np.full(5, 0.2), np.full(5, 0.2), cost, 0.05, numItermax=5, stopThr=0.0)
    expected = -np.mean(np.log(np.diag(plan)))
    assert float(ot_feature(z_a, z_b, 0.05, 5)) == pytest.approx(expected, rel=1e-9)


def test_ot_losses_finite_gradients_at_smallest_eps():
    # seed 000 §3.1.3: eps = 0.01, 5 iterations (batch 1024 there; 256 here for the gradient, 1024 forward)
    g = torch.Generator().manual_seed(0)
    for fn in (ot_sample, ot_feature):
        a = torch.randn(256, 128, generator=g, requires_grad=True)
        b = torch.randn(256, 128, generator=g, requires_grad=True)
        loss = fn(a, b, eps=0.01, iters=5)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all() and a.grad.abs().sum() > 0
    with torch.no_grad():
        big = ot_sample(torch.randn(1024, 128, generator=g), torch.randn(1024, 128, generator=g), 0.01, 5)
    assert torch.isfinite(big)


def test_ot_sample_rewards_aligned_views():
    a = _rand(32, 16, seed=9)
    noisy = a + 0.05 * _rand(32, 16, seed=10)
    assert float(ot_sample(a, noisy, 0.05, 20)) < float(ot_sample(a, _rand(32, 16, seed=11), 0.05, 20))


def test_ssw_uniformity_equals_pot_squared():
    z = _unit(_rand(40, 5, seed=12).numpy())
    proj = ot.sliced.get_projections_sphere(5, 7, seed=3)  # (L, d, 2), POT's own draw
    ref = ot.sliced_wasserstein_sphere_unif(z, n_projections=7, projections=proj)
    ours = ssw_uniformity(torch.from_numpy(z), projections=torch.from_numpy(proj))
    assert float(ours) == pytest.approx(ref**2, rel=1e-9)
    # our own draws are Stiefel samples too
    p = sphere_projections(5, 4, torch.Generator().manual_seed(0), torch.float64)
    np.testing.assert_allclose(torch.einsum("lij,lik->ljk", p, p).numpy(), np.tile(np.eye(2), (4, 1, 1)),
                               atol=1e-12)


def test_ssw_uniformity_is_small_for_uniform_and_large_for_collapsed():
    g = torch.Generator().manual_seed(1)
    uniform = torch.randn(2000, 3, generator=g, dtype=torch.float64)
    collapsed = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).repeat(2000, 1)
    collapsed = collapsed + 0.01 * torch.randn(2000, 3, generator=g, dtype=torch.float64)
    proj = sphere_projections(3, 50, g, torch.float64)
    assert float(ssw_uniformity(uniform, projections=proj)) < 1e-3
    assert float(ssw_uniformity(collapsed, projections=proj)) > 10 * float(ssw_uniformity(uniform, projections=proj))


def test_ssw_ssl_formula():
    z_a, z_b = _rand(30, 3, seed=13), _rand(30, 3, seed=14)
    lam, n_proj = 20.0, 10
    loss = ssw_ssl(z_a, z_b, lam, n_proj, generator=torch.Generator().manual_seed(5))
    proj = sphere_projections(3, n_proj, torch.Generator().manual_seed(5), torch.float64)
    a, b = _unit(z_a.numpy()), _unit(z_b.numpy())
    ref_a = ot.sliced_wasserstein_sphere_unif(a, n_projections=n_proj, projections=proj.numpy()) ** 2
    ref_b = ot.sliced_wasserstein_sphere_unif(b, n_projections=n_proj, projections=proj.numpy()) ** 2
    expected = np.mean(np.sum((a - b) ** 2, axis=1)) + lam / 2 * (ref_a + ref_b)
    assert float(loss) == pytest.approx(expected, rel=1e-9)


def test_sw_uniformity_equals_pot_squared():
    g = torch.Generator().manual_seed(2)
    z = _rand(25, 4, seed=15)
    target = torch.nn.functional.normalize(torch.randn(25, 4, generator=g, dtype=torch.float64), dim=1)
    proj = ot.sliced.get_random_projections(4, 9, seed=1)  # (d, L)
    ref = ot.sliced_wasserstein_distance(_unit(z.numpy()), target.numpy(), projections=proj, p=2)
    ours = sw_uniformity(z, projections=torch.from_numpy(proj), target=target)
    assert float(ours) == pytest.approx(ref**2, rel=1e-9)


def test_sliced_losses_have_finite_gradients():
    for fn in (lambda a, b: ssw_ssl(a, b, 20.0, 10), lambda a, b: sw_ssl(a, b, 1.0, 10)):
        a = torch.randn(64, 3, requires_grad=True)
        b = torch.randn(64, 3, requires_grad=True)
        loss = fn(a, b)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def _dense(n=3, p=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64) for s in ((n, p, d), (n, p, d), (n, d), (n, d))]


def test_exact_matching_recovers_a_permutation():
    f_a, _, _, _ = _dense(n=2, p=9, d=16, seed=1)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    f_b = f_a[:, perm] + 1e-3 * _dense(n=2, p=9, d=16, seed=2)[0]  # patch k of B is patch perm[k] of A
    plans = match_plans(f_a, f_b, "exact")
    inv = torch.argsort(perm)
    assert torch.equal(plans.argmax(2), inv.expand(2, 9))
    w = match_weights(plans, "exact", soft=True)
    assert torch.allclose(w, torch.nn.functional.one_hot(inv, 9).double().expand(2, 9, 9))


def test_exact_and_entropic_plans_equal_pot():
    f_a, f_b, _, _ = _dense(n=4, p=10, d=6, seed=12)
    a, b = _unit(f_a.numpy()), _unit(f_b.numpy())
    marg = np.full(10, 0.1)
    exact = match_plans(f_a, f_b, "exact").numpy()
    for eps in (0.05, 10.0):
        entropic = match_plans(f_a, f_b, "entropic", eps=eps).numpy()
        for i in range(4):
            ref = ot.sinkhorn(marg, marg, -(a[i] @ b[i].T), eps, numItermax=100000, stopThr=1e-15)
            np.testing.assert_allclose(entropic[i], ref, rtol=1e-6, atol=1e-9)
    for i in range(4):
        np.testing.assert_allclose(exact[i], ot.emd(marg, marg, -(a[i] @ b[i].T)), atol=1e-12)


@pytest.mark.parametrize("matching", ["exact", "entropic", "uniform", "argmax"])
def test_balanced_plans_have_uniform_row_marginals(matching):
    f_a, f_b, _, _ = _dense(seed=4)
    plans = match_plans(f_a, f_b, matching, eps=10.0)
    p = f_a.shape[1]
    np.testing.assert_allclose(plans.sum(2).numpy(), np.full((3, p), 1 / p), atol=1e-8)
    if matching != "argmax":  # argmax (DenseCL) relaxes the column marginal
        np.testing.assert_allclose(plans.sum(1).numpy(), np.full((3, p), 1 / p), atol=1e-8)


def test_unbalanced_plan_is_finite_and_loses_mass_on_dissimilar_patches():
    f_a, f_b, _, _ = _dense(seed=5)
    plans = match_plans(f_a, f_b, "unbalanced", eps=0.05, reg_m=0.05)
    assert torch.isfinite(plans).all() and (plans >= 0).all()
    balanced = match_plans(f_a, f_b, "entropic", eps=0.05)
    assert not torch.allclose(plans, balanced)


def _half_related(p=16, d=128, noise=0.25, seed=0):
    """Views whose first p/2 patches are near copies across the views (cosine ≈ 0.97) and whose other patches
    match nothing (random directions: cosine ≈ 0 ± 0.1): the case of seed 000 Fig. 3.6."""
    g = torch.Generator().manual_seed(seed)
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    f_a = unit(torch.randn(1, p, d, generator=g, dtype=torch.float64))
    f_b = unit(torch.randn(1, p, d, generator=g, dtype=torch.float64))
    f_b[:, : p // 2] = unit(f_a[:, : p // 2] + noise * unit(torch.randn(1, p // 2, d, generator=g, dtype=torch.float64)))
    return f_a, f_b


def test_unbalanced_plan_is_pot_on_the_non_negative_cost():
    f_a, f_b = _half_related()
    a, b = _unit(f_a[0].numpy()), _unit(f_b[0].numpy())
    marg = np.full(16, 1 / 16)
    for eps, reg_m in ((0.01, 0.3), (0.1, 0.1), (10.0, 0.05)):
        got = match_plans(f_a, f_b, "unbalanced", eps=eps, reg_m=reg_m)[0].numpy()
        ref = ot.unbalanced.sinkhorn_unbalanced(marg, marg, 1.0 - a @ b.T, reg=eps, reg_m=reg_m)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)
        # a non-negative cost never creates mass (with C = -sim the plan held 5.5 at eps = reg_m = 0.1)
        assert got.sum() <= 1.0 + 1e-9


def test_unbalanced_defaults_drop_unrelated_patches_and_keep_matched_ones():
    """The point of unbalanced matching (seed 000 §3.3.2, Fig. 3.6): with the pipeline's defaults, the rows of
    patches without a counterpart lose most of their mass, matched rows keep theirs; DenseCL's argmax (and the
    old defaults, eps = 10 on C = -sim: row masses 0.995-1.006) give every row the same weight."""
    from tmf.config import validate

    cfg = validate({})["pretrain"]["method_params"]["dense_ot_unbalanced"]
    f_a, f_b = _half_related()
    for kw in ({}, {"eps": cfg["eps"], "reg_m": cfg["reg_m"]}):  # the function's and the schema's defaults
        mass = 16 * match_plans(f_a, f_b, "unbalanced", **kw)[0].sum(1).numpy()
        assert mass[:8].min() > 0.85, mass  # matched rows keep their mass
        assert mass[8:].max() < 0.3, mass  # unrelated rows lose most of it
        for soft in (False, True):  # both weightings carry the row's mass into the dense term
            w = match_weights(match_plans(f_a, f_b, "unbalanced", **kw), "unbalanced", soft)[0].sum(1).numpy()
            np.testing.assert_allclose(w, mass, rtol=1e-9)
    # balanced plans keep one-hot hard weights (eq. 3.23)
    hard = match_weights(match_plans(f_a, f_b, "entropic", eps=10.0), "entropic", soft=False)
    assert torch.equal(hard.sum(2), torch.ones(1, 16, dtype=hard.dtype))


def test_dense_argmax_matches_densecl_formula():
    f_a, f_b, g_a, g_b = _dense(n=3, p=4, d=5, seed=6)
    tau = 0.2
    a, b = _unit(f_a.numpy()), _unit(f_b.numpy())
    ga, gb = _unit(g_a.numpy()), _unit(g_b.numpy())
    pooled = _unit(b.mean(1))
    dense = []
    for i in range(3):
        for j in range(4):
            sims = b[i] @ a[i, j]
            pos = math.exp(sims.max() / tau)  # eq. 3.18
            negs = sum(math.exp(a[i, j] @ pooled[k] / tau) for k in range(3) if k != i)
            dense.append(-math.log(pos / (pos + negs)))  # eq. 3.19
    glob = [-math.log(math.exp(ga[i] @ gb[i] / tau) / sum(math.exp(ga[i] @ gb[k] / tau) for k in range(3)))
            for i in range(3)]  # eq. 3.20
    expected = 0.5 * (np.mean(glob) + np.mean(dense))
    assert float(dense_contrastive(f_a, f_b, g_a, g_b, "argmax", temperature=tau)) == pytest.approx(expected,
                                                                                                    rel=1e-9)
    # soft weighting of a one-hot plan is the hard loss (eq. 3.24 -> eq. 3.19)
    soft = dense_contrastive(f_a, f_b, g_a, g_b, "argmax", soft=True, temperature=tau)
    assert float(soft) == pytest.approx(expected, rel=1e-9)


def test_dense_with_queue_uses_queue_negatives():
    f_a, f_b, g_a, g_b = _dense(n=2, p=3, d=4, seed=7)
    qg, qd = _rand(5, 4, seed=8), _rand(6, 4, seed=9)
    tau = 0.2
    a, b, qdn = _unit(f_a.numpy()), _unit(f_b.numpy()), _unit(qd.numpy())
    ga, gb, qgn = _unit(g_a.numpy()), _unit(g_b.numpy()), _unit(qg.numpy())
    dense = []
    for i in range(2):
        for j in range(3):
            pos = math.exp((b[i] @ a[i, j]).max() / tau)
            dense.append(-math.log(pos / (pos + np.exp(qdn @ a[i, j] / tau).sum())))
    glob = []
    for i in range(2):
        pos = math.exp(ga[i] @ gb[i] / tau)
        glob.append(-math.log(pos / (pos + np.exp(qgn @ ga[i] / tau).sum())))
    expected = 0.5 * (np.mean(glob) + np.mean(dense))
    got = dense_contrastive(f_a, f_b, g_a, g_b, "argmax", temperature=tau, queue=(qg, qd))
    assert float(got) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("matching", ["argmax", "exact", "entropic", "unbalanced", "uniform"])
@pytest.mark.parametrize("soft", [False, True])
def test_dense_gradients_finite(matching, soft):
    g = torch.Generator().manual_seed(0)
    f_a = torch.randn(4, 9, 16, generator=g, requires_grad=True)
    f_b = torch.randn(4, 9, 16, generator=g)
    g_a = torch.randn(4, 16, generator=g, requires_grad=True)
    g_b = torch.randn(4, 16, generator=g)
    loss = dense_contrastive(f_a, f_b, g_a, g_b, matching, soft=soft)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f_a.grad).all() and f_a.grad.abs().sum() > 0


def test_dense_rejects_bad_input():
    f_a, f_b, g_a, g_b = _dense()
    with pytest.raises(ValueError, match="matching"):
        dense_contrastive(f_a, f_b, g_a, g_b, "hungarian")
    with pytest.raises(ValueError, match="f_a and f_b"):
        dense_contrastive(f_a, f_b[:, :2], g_a, g_b)
