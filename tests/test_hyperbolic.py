"""Tests of the horospherical head and its prototypes (seed 000 ch. 5), against independent formulas:
geoopt's Poincaré distance (the Busemann limit), the horosphere radius of App. A.3, the conformal factor,
POT for Gromov–Wasserstein, and brute force over permutations."""

from __future__ import annotations

import geoopt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tmf.data.minifrance import CLASSES, SCORED_IDS, tree_distance_matrix
from tmf.models.hyperbolic import (
    EuclideanHead,
    HorosphericalHead,
    busemann,
    gromov_wasserstein_assignment,
    horosphere_radius,
    horospherical_logits,
    make_head,
    make_optimizers,
    make_prototypes,
    prototype_min_angle,
    random_prototypes,
    smart_prototypes,
    to_poincare,
    tree_order,
    uniform_prototypes,
    wang_isola_potential,
)

torch.set_num_threads(1)
BALL = geoopt.PoincareBall(c=1.0)
TREE = tree_distance_matrix()
GROUPS = np.array([CLASSES[i].level1 for i in SCORED_IDS])
SMALL_TREE = np.array(
    [[0, 2, 4, 4, 4], [2, 0, 4, 4, 4], [4, 4, 0, 2, 2], [4, 4, 2, 0, 2], [4, 4, 2, 2, 0]], dtype=float
)


def _unit(rng, n, d):
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _inside(rng, n, d, rmax=0.95):
    v = _unit(rng, n, d) * rng.uniform(0.0, rmax, (n, 1))
    return torch.from_numpy(v)


# ---------------------------------------------------------------- Busemann function, φ term, exp₀


@pytest.mark.parametrize("d", [2, 3, 16])
def test_busemann_is_the_limit_of_distance_differences(d):
    """B_p(x) = lim_{s→1} d_H(x, s·p) − d_H(0, s·p), with geoopt's Poincaré distance (float64)."""
    rng = np.random.default_rng(d)
    x = _inside(rng, 6, d, rmax=0.8)
    p = torch.from_numpy(_unit(rng, 3, d))
    closed = busemann(x, p)  # (6, 3)
    errs = []
    for s in (1 - 1e-3, 1 - 1e-4, 1 - 1e-5):
        far = s * p  # γ(t) at Euclidean radius s
        lim = BALL.dist(x[:, None, :], far[None, :, :]) - BALL.dist0(far)[None, :]
        errs.append((lim - closed).abs().max().item())
    assert errs[-1] < 1e-3
    assert errs[0] > errs[-1]  # the difference converges to the closed form


def test_busemann_level_sets_are_tangent_spheres_of_radius_r_a():
    """App. A.3: {x : B_p(x) = a} is the Euclidean sphere of radius r(a) = (1 + tanh(a/2))/2 tangent at p."""
    rng = np.random.default_rng(0)
    p = torch.from_numpy(_unit(rng, 1, 3))
    for a in (-2.0, -0.3, 0.0, 0.7, 1.5):
        r = horosphere_radius(a)
        centre = (1 - r) * p
        v = torch.from_numpy(_unit(rng, 50, 3))
        pts = centre + r * v
        pts = pts[(pts - p).norm(dim=1) > 1e-3]  # drop points too near the ideal point itself
        np.testing.assert_allclose(busemann(pts, p).numpy().ravel(), a, atol=1e-9)


def test_busemann_along_the_ray_is_minus_the_distance_to_origin():
    p = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    s = torch.linspace(0.0, 0.99, 20, dtype=torch.float64)[:, None]
    x = s * p
    np.testing.assert_allclose(busemann(x, p).numpy().ravel(), -BALL.dist0(x).numpy(), atol=1e-9)


def test_phi_term_and_bias_match_eq_5_2():
    """ξ_k = −B_{p_k}(x) + a_k + φ·log(1−‖x‖²), with 1−‖x‖² = 2/λ_x (geoopt's conformal factor)."""
    rng = np.random.default_rng(1)
    d, k = 4, 5
    x = _inside(rng, 7, d, rmax=0.8)  # geoopt clamps artanh at 1 − 1e-7: keep d(x, s·p) representable
    p = torch.from_numpy(_unit(rng, k, d))
    a = torch.from_numpy(rng.standard_normal(k))
    phi = 0.5 * d
    log_one_minus = torch.log(2.0 / BALL.lambda_x(x, keepdim=True))
    far = (1 - 1e-5) * p
    b = BALL.dist(x[:, None, :], far[None]) - BALL.dist0(far)[None]  # Busemann by its limit
    expected = -b + a + phi * log_one_minus
    got = horospherical_logits(x, p, a, phi)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-3)
    # the φ term alone: difference between φ and φ = 0 is φ·log(1−‖x‖²), the same for every class
    diff = horospherical_logits(x, p, a, phi) - horospherical_logits(x, p, a, 0.0)
    np.testing.assert_allclose(diff.numpy(), (phi * log_one_minus).expand(-1, k).numpy(), atol=1e-12)
    # at the origin every logit is its bias (B_p(0) = 0, log 1 = 0)
    np.testing.assert_allclose(horospherical_logits(torch.zeros(1, d, dtype=torch.float64), p, a, phi)[0], a)


def test_phi_penalises_points_near_the_boundary():
    """Along the ray to p the logit is (1+φ)·log(1+s) + (φ−1)·log(1−s): unbounded for φ < 1, bounded by
    2·log 2 for φ = 1 (λ = 0.5, d = 2), and peaked inside the ball for φ > 1 (λ = 0.5, d = 3)."""
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    a = torch.zeros(1, dtype=torch.float64)
    s = torch.linspace(0.0, 0.9999, 400, dtype=torch.float64)[:, None] * p
    without = horospherical_logits(s, p, a, phi=0.0).ravel()
    at_one = horospherical_logits(s, p, a, phi=1.0).ravel()
    above = horospherical_logits(s, p, a, phi=1.5).ravel()
    assert torch.all(torch.diff(without) > 0) and without[-1] > 9.0  # grows like −log(1 − s)
    assert torch.all(at_one <= 2 * np.log(2) + 1e-12)
    assert above.argmax() < len(s) - 1 and above[-1] < above.max() - 1.0


def test_phi_term_cancels_in_the_softmax():
    """φ·log(1−‖x‖²) is the same for every class, so softmax probabilities and the cross-entropy gradients
    of eq. 5.3–5.4 do not depend on φ (it only acts on a per-class sigmoid, σ(ξ_k))."""
    feats = torch.randn(2, 4, 3, 3, dtype=torch.float64) * 3
    target = torch.randint(0, 5, (2, 3, 3))
    grads, probs = [], []
    for lam in (0.0, 0.5, 2.0):
        torch.manual_seed(0)
        head = HorosphericalHead(4, 5, 3, prototypes="random", phi_lambda=lam).double()
        logits = head(feats)
        F.cross_entropy(logits, target).backward()
        probs.append(logits.softmax(1).detach())
        grads.append(torch.cat([prm.grad.ravel() for prm in head.parameters()]))
    for i in (1, 2):
        np.testing.assert_allclose(probs[i].numpy(), probs[0].numpy(), atol=1e-12)
        np.testing.assert_allclose(grads[i].numpy(), grads[0].numpy(), atol=1e-10)


def test_expmap0_matches_tanh_formula_and_stays_inside():
    rng = np.random.default_rng(2)
    u = torch.from_numpy(rng.standard_normal((100, 5)) * 0.3)
    x = to_poincare(u)
    n = u.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(x.numpy(), (torch.tanh(n) * u / n).numpy(), atol=1e-12)
    for scale in (1.0, 1e2, 1e6, 1e30):
        for dt in (torch.float32, torch.float64, torch.bfloat16):
            big = torch.randn(64, 7, dtype=torch.float32).to(dt) * scale
            xb = to_poincare(big)
            assert xb.dtype in (torch.float32, torch.float64)
            norms = xb.norm(dim=1)
            assert torch.isfinite(xb).all()
            assert torch.all(norms < 1.0), (scale, dt, norms.max())
            assert torch.isfinite(torch.log(1 - norms**2)).all()


def test_feature_clipping_bounds_the_radius():
    u = torch.randn(50, 3, dtype=torch.float64) * 10
    x = to_poincare(u, clip_r=1.0)
    assert torch.all(x.norm(dim=1) <= np.tanh(1.0) + 1e-12)
    with pytest.raises(ValueError, match="clip_r"):
        to_poincare(u, clip_r=0.0)


# ---------------------------------------------------------------- the head


def test_head_shapes_finite_logits_and_gradients():
    torch.manual_seed(0)
    head = HorosphericalHead(8, 5, 3, prototypes="smart", tree_distance=SMALL_TREE, prototype_steps=50)
    feats = torch.randn(2, 8, 6, 7) * 50  # large features: points pushed to the boundary
    logits = head(feats)
    assert logits.shape == (2, 5, 6, 7)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    target = torch.randint(0, 5, (2, 6, 7))
    F.cross_entropy(logits, target).backward()
    for name, prm in (("embed.weight", head.embed.weight), ("prototypes", head.prototypes), ("bias", head.bias)):
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
        assert prm.grad.abs().sum() > 0, name
    assert isinstance(head.prototypes, geoopt.ManifoldParameter)
    assert isinstance(head.prototypes.manifold, geoopt.Sphere)


def test_head_equals_the_pointwise_formula():
    torch.manual_seed(1)
    head = HorosphericalHead(4, 5, 3, prototypes="random", phi_lambda=0.5).double()
    with torch.no_grad():
        head.bias.copy_(torch.randn(5, dtype=torch.float64))
    feats = torch.randn(1, 4, 2, 3, dtype=torch.float64)
    got = head(feats)
    for i in range(2):
        for j in range(3):
            u = head.embed.weight[:, :, 0, 0] @ feats[0, :, i, j] + head.embed.bias
            x = torch.tanh(u.norm()) * u / u.norm()
            sq = ((head.prototypes - x) ** 2).sum(1)
            want = -torch.log(sq / (1 - x @ x)) + head.bias + 0.5 * 3 * torch.log(1 - x @ x)
            np.testing.assert_allclose(got[0, :, i, j].detach().numpy(), want.detach().numpy(), atol=1e-10)


@pytest.mark.parametrize("clip_r", [None, 1.0])
@pytest.mark.parametrize("scale", [0.1, 3.0, 100.0])
def test_head_fast_path_equals_geoopt_embedding_then_eq_5_2(scale, clip_r):
    """forward() (channel layout, analytic radius) = horospherical_logits(geoopt expmap0 + project)."""
    torch.manual_seed(3)
    head = HorosphericalHead(6, 5, 4, prototypes="random", clip_r=clip_r)
    with torch.no_grad():
        head.bias.copy_(torch.randn(5))
    feats = torch.randn(2, 6, 5, 4) * scale
    with torch.no_grad():
        fast = head(feats)
        x = head.embed_ball(feats)
        slow = horospherical_logits(x, head.prototypes, head.bias, head.phi).movedim(-1, 1)
    assert torch.all(x.norm(dim=-1) < 1)
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-4, atol=1e-4)


def test_state_dict_round_trip_restores_the_prototypes():
    torch.manual_seed(0)
    a = HorosphericalHead(4, 5, 3, prototypes="random", seed=1)
    b = HorosphericalHead(4, 5, 3, prototypes="random", seed=2)
    assert not torch.equal(a.prototypes, b.prototypes)
    b.load_state_dict(a.state_dict())
    feats = torch.randn(1, 4, 3, 3)
    assert torch.equal(a(feats), b(feats))


def test_fixed_prototypes_are_a_buffer_and_do_not_move():
    head = HorosphericalHead(4, 5, 2, prototypes="uniform", learn_prototypes=False, bias=False)
    names = {n for n, _ in head.named_parameters()}
    assert names == {"embed.weight", "embed.bias"}
    assert {"prototypes", "bias"} <= set(head.state_dict())
    before = head.prototypes.clone()
    opts = make_optimizers(head, lr=0.1)
    assert len(opts) == 1 and type(opts[0]) is torch.optim.AdamW  # nothing on the sphere to train
    for _ in range(3):
        opts[0].zero_grad()
        F.cross_entropy(head(torch.randn(2, 4, 3, 3)), torch.randint(0, 5, (2, 3, 3))).backward()
        opts[0].step()
    assert torch.equal(before, head.prototypes)


def test_a_network_without_sphere_parameters_is_optimised_without_importing_geoopt():
    # every fine-tuning job builds its optimisers with make_optimizers; only the horospherical head needs geoopt
    import subprocess
    import sys

    code = ("import sys, torch; from tmf.evaluate.finetune import build_optimizers; "
            "from tmf.models.decoder import SegmentationModel; from tmf.models.resnet import resnet18; "
            "m = SegmentationModel(resnet18(), 14, decoder_channels=(16, 16, 8, 8, 8)); "
            "opts = build_optimizers(m, 1e-3, 0.1, 0.0); "
            "assert [type(o).__name__ for o in opts] == ['AdamW'], opts; print('geoopt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_prototypes_stay_on_the_sphere_under_riemannian_adam():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), HorosphericalHead(8, 5, 3, "random"))
    head = model[2]
    before = head.prototypes.detach().clone()
    opts = make_optimizers(model, lr=0.05, weight_decay=1e-4)
    assert type(opts[0]) is torch.optim.AdamW and opts[0].param_groups[0]["weight_decay"] == 1e-4
    assert isinstance(opts[1], geoopt.optim.RiemannianAdam) and opts[1].param_groups[0]["weight_decay"] == 0.0
    assert opts[1].param_groups[0]["params"] == [head.prototypes]
    for _ in range(20):
        for opt in opts:
            opt.zero_grad()
        loss = F.cross_entropy(model(torch.randn(2, 3, 5, 5)), torch.randint(0, 5, (2, 5, 5)))
        loss.backward()
        for opt in opts:
            opt.step()
    after = head.prototypes.detach()
    np.testing.assert_allclose(after.norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert (after - before).abs().max() > 1e-2  # they did move


def test_head_bad_input_is_refused():
    with pytest.raises(ValueError, match="prototypes must be one of"):
        HorosphericalHead(4, 5, 3, prototypes="hierarchical")
    with pytest.raises(ValueError, match="tree_distance"):
        HorosphericalHead(4, 5, 3, prototypes="smart")  # no tree for 5 classes
    with pytest.raises(ValueError, match="n_classes"):
        HorosphericalHead(4, 14, 3, prototypes="smart", tree_distance=SMALL_TREE)
    with pytest.raises(ValueError, match="dim"):
        HorosphericalHead(4, 5, 1)
    with pytest.raises(ValueError, match="phi_lambda"):
        HorosphericalHead(4, 5, 3, phi_lambda=-1)
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        HorosphericalHead(4, 5, 3, prototypes=np.ones((4, 3)))
    with pytest.raises(ValueError, match="features"):
        HorosphericalHead(4, 5, 3, prototypes="random")(torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match="head must be one of"):
        make_head("gyroplane", 4, 5, 3)
    with pytest.raises(ValueError, match="no options"):
        make_head("euclidean", 4, 5, 3, phi_lambda=0.5)


def test_default_smart_head_uses_the_urbanatlas_tree():
    head = HorosphericalHead(4, 14, 3, prototype_steps=200)
    expected = smart_prototypes(TREE, 3, seed=0, steps=200)
    np.testing.assert_allclose(head.prototypes.detach().numpy(), expected, atol=1e-6)


def test_euclidean_head_is_a_rank_d_linear_map():
    head = EuclideanHead(6, 5, 2)
    feats = torch.randn(3, 6, 4, 4)
    out = head(feats)
    assert out.shape == (3, 5, 4, 4)
    w = (head.classifier.weight[:, :, 0, 0] @ head.embed.weight[:, :, 0, 0]).detach()
    b = (head.classifier.weight[:, :, 0, 0] @ head.embed.bias + head.classifier.bias).detach()
    want = torch.einsum("kc,nchw->nkhw", w, feats) + b[None, :, None, None]
    np.testing.assert_allclose(out.detach().numpy(), want.numpy(), atol=1e-5)
    assert torch.linalg.matrix_rank(w) <= 2


# ---------------------------------------------------------------- prototypes


@pytest.mark.parametrize("d", [2, 3, 8])
def test_uniform_prototypes_are_better_spread_than_random(d):
    u = uniform_prototypes(14, d, steps=300, seed=0)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-12)
    best_random = max(prototype_min_angle(random_prototypes(14, d, seed=s)) for s in range(10))
    assert prototype_min_angle(u) > best_random


def test_uniform_prototypes_lower_the_wang_isola_potential_and_are_deterministic():
    u = uniform_prototypes(10, 3, steps=300, seed=3)
    r = random_prototypes(10, 3, seed=3)  # the starting point
    assert wang_isola_potential(torch.from_numpy(u)) < wang_isola_potential(torch.from_numpy(r)) - 0.1
    np.testing.assert_array_equal(u, uniform_prototypes(10, 3, steps=300, seed=3))
    assert not np.allclose(u, uniform_prototypes(10, 3, steps=300, seed=4))


def test_uniform_prototypes_closed_form_on_the_circle_and_simplex_in_high_dim():
    u = uniform_prototypes(7, 2, seed=5)
    ang = np.sort(np.mod(np.arctan2(u[:, 1], u[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(np.diff(ang), 2 * np.pi / 7, atol=1e-12)
    s = uniform_prototypes(6, 16, steps=1000, seed=0)  # K ≤ d + 1: regular simplex, cosines −1/(K−1)
    cos = s @ s.T
    np.testing.assert_allclose(cos[~np.eye(6, dtype=bool)], -1 / 5, atol=2e-3)


def _intra_minus_inter(p, groups):
    cos = p @ p.T
    same = (groups[:, None] == groups[None, :]) & ~np.eye(len(groups), dtype=bool)
    diff = groups[:, None] != groups[None, :]
    return cos[same].mean() - cos[diff].mean()


@pytest.mark.parametrize("d", [2, 3, 4])
def test_smart_prototypes_put_same_group_classes_closer(d):
    smart = smart_prototypes(TREE, d, seed=0, steps=300)
    np.testing.assert_allclose(np.linalg.norm(smart, axis=1), 1.0, atol=1e-12)
    gap = _intra_minus_inter(smart, GROUPS)
    assert gap > 0.2  # mean intra-group cosine clearly above the mean inter-group cosine
    # and better than random assignments of the same points (95th percentile of 200 permutations)
    rng = np.random.default_rng(0)
    random_gaps = [_intra_minus_inter(smart[rng.permutation(14)], GROUPS) for _ in range(200)]
    assert gap > np.percentile(random_gaps, 95)
    # same set of points as the uniform ones, only reassigned (GW path)
    if d > 2:
        u = uniform_prototypes(14, d, seed=0, steps=300)
        assert sorted(map(tuple, np.round(smart, 9))) == sorted(map(tuple, np.round(u, 9)))


def test_gromov_wasserstein_assignment_is_optimal_on_a_small_case():
    """Brute force over all 5! permutations of eq. 5.6's objective, cross-checked with POT's GW loss."""
    import itertools

    import ot

    pts = uniform_prototypes(5, 3, steps=500, seed=1)
    sphere = 1 - pts @ pts.T
    perm = gromov_wasserstein_assignment(SMALL_TREE, pts, n_init=10, seed=0)
    assert sorted(perm.tolist()) == list(range(5))

    def cost(pm):
        return ((SMALL_TREE - sphere[np.ix_(pm, pm)]) ** 2).sum()

    best = min(cost(np.array(pm)) for pm in itertools.permutations(range(5)))
    assert cost(perm) <= best + 1e-9
    # POT's GW loss at the permutation coupling equals eq. 5.6 / K² (uniform weights 1/K)
    w = np.full(5, 0.2)
    coupling = np.eye(5)[perm] / 5
    constc, hc1, hc2 = ot.gromov.init_matrix(SMALL_TREE, sphere, w, w, "square_loss")
    pot = ot.gromov.gwloss(constc, hc1, hc2, coupling)
    np.testing.assert_allclose(pot, cost(perm) / 25, rtol=1e-9)


def test_tree_order_keeps_subtrees_contiguous_and_twopi_on_circle():
    order = tree_order(TREE)
    g = GROUPS[order]
    assert sum(g[i] != g[i + 1] for i in range(len(g) - 1)) == len(set(GROUPS)) - 1
    p = smart_prototypes(TREE, 2)
    ang = np.sort(np.mod(np.arctan2(p[:, 1], p[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(np.diff(ang), 2 * np.pi / 14, atol=1e-12)
    with pytest.raises(ValueError, match="twopi"):
        smart_prototypes(TREE, 3, method="twopi")


def test_prototype_bad_input_is_refused():
    with pytest.raises(ValueError, match="square"):
        smart_prototypes(np.zeros((3, 4)), 3)
    with pytest.raises(ValueError, match="symmetric"):
        smart_prototypes(np.array([[0.0, 1.0], [2.0, 0.0]]), 3)
    with pytest.raises(ValueError, match="at least 2"):
        uniform_prototypes(1, 3)
    with pytest.raises(ValueError, match="method"):
        smart_prototypes(TREE, 3, method="hungarian")
    with pytest.raises(ValueError, match="prototypes must be one of"):
        make_prototypes("spread", 5, 3)


# ---------------------------------------------------------------- training on a tiny segmentation problem


def _toy_segmentation(k=5, c=6, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, k, (n, 1, 4, 4), generator=g)
    lab = F.interpolate(lab.float(), scale_factor=4, mode="nearest").long()[:, 0]
    means = torch.randn(k, c, generator=g)
    x = means[lab].permute(0, 3, 1, 2) + 0.7 * torch.randn(n, c, 16, 16, generator=g)
    return x, lab


@pytest.mark.parametrize("kind", ["horospherical", "euclidean"])
@pytest.mark.parametrize("d", [2, 3, 128])
def test_head_trains_on_a_tiny_segmentation_problem(kind, d):
    x, lab = _toy_segmentation()
    torch.manual_seed(0)
    kw = {"tree_distance": SMALL_TREE, "prototype_steps": 100} if kind == "horospherical" else {}
    model = nn.Sequential(nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), make_head(kind, 16, 5, d, **kw))
    opts = make_optimizers(model, lr=1e-2)
    losses = []
    for _ in range(40):
        for opt in opts:
            opt.zero_grad()
        loss = F.cross_entropy(model(x), lab)
        loss.backward()
        for opt in opts:
            opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        acc = (model(x).argmax(1) == lab).float().mean().item()
    assert acc > 0.8


# ---------------------------------------------------------------- mixed precision (the GPU path is bf16)


@pytest.mark.parametrize("d", [2, 3, 128])
def test_head_under_bf16_autocast_is_finite_and_matches_float32(d):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), HorosphericalHead(16, 14, d, "uniform",
                                                                                        prototype_steps=50))
    x = torch.randn(2, 6, 8, 8) * 20  # large activations: points close to the boundary
    with torch.no_grad():
        ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = model[1](model[0](x))
        assert feats.dtype == torch.bfloat16  # the decoder really runs in bf16
        out = model[2](feats)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # only the bf16 rounding of the decoder features separates the two
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.9
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), torch.randint(0, 14, (2, 8, 8)))
    loss.backward()
    for prm in model.parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all()
