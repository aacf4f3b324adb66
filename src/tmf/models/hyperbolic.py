"""Horospherical classification head with "smart" ideal prototypes, and its Euclidean counterpart.

Source: seed 000 (Berg 2024), ch. 5 "Horospherical Learning with Hierarchical Prototypes" (§5.1, §5.2,
eq. 2.17, 5.1–5.7, 5.11, App. A.3); SPEC.md §5 "Hyperbolic head".

* Decoder features ``(N, C, H, W)`` → 1x1 conv → ``u ∈ R^d`` → ``x = exp₀(u)`` in the Poincaré ball (c = 1).
* One ideal prototype ``p_k ∈ S^{d-1}`` (a point of the ball's boundary) and one bias ``a_k`` per class.
* Logit (eq. 5.2): ``ξ_k(x) = −B_{p_k}(x) + a_k + φ·log(1 − ‖x‖²)``, ``φ = λ·d``, with the Busemann function
  of the Poincaré ball (eq. 2.17, c = 1): ``B_p(x) = log(‖p − x‖² / (1 − ‖x‖²))``.
* Softmax over the K logits and cross-entropy (eq. 5.3–5.4): use ``torch.nn.functional.cross_entropy``.
* Prototypes live on ``geoopt.Sphere()`` as a ``geoopt.ManifoldParameter`` and are trained with Riemannian
  Adam (§5.1: "the ideal prototypes position is updated using stochastic Riemannian gradient descent ...
  Riemannian Adam ... keeps prototypes on the hypersphere"); ``learn_prototypes=False`` freezes them
  (the Busemann-learning setting of Ghadimi Atigh et al. 2021 that ch. 5 compares with).
* Initial prototypes (§5.2): ``random`` (Gaussian directions), ``uniform`` (minimisers of the Wang–Isola
  potential, eq. 5.5, assigned to classes at random), ``smart`` (the same points assigned to classes by
  Gromov–Wasserstein between the label-tree metric and the cosine distance, eq. 5.6–5.7; on the circle,
  d = 2, the closed-form equally spaced points in tree order, the "twopi" layout of §5.2).

Numerics: the head always runs in float32 (float64 if given float64), also under bf16 autocast, because
``1 − ‖x‖²`` and ``‖p − x‖²`` lose every digit in bf16 near the boundary. After ``exp₀`` the points are
projected inside the ball of radius ``1 − 4e-3`` (float32) / ``1 − 1e-5`` (float64) exactly as geoopt's
``PoincareBall.projx`` does, so ``log(1 − ‖x‖²) ≥ log(8e-3)`` and every logit is finite.

Optimiser: build ``geoopt.optim.RiemannianAdam`` over the *whole* segmentation model with
:func:`riemannian_adam` (it treats ordinary parameters exactly like ``torch.optim.Adam``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import geoopt
import numpy as np
import torch
import torch.nn.functional as F
from geoopt.manifolds.stereographic import math as pmath
from torch import nn

HEADS: tuple[str, ...] = ("euclidean", "horospherical")
PROTOTYPE_KINDS: tuple[str, ...] = ("smart", "uniform", "random")


# --------------------------------------------------------------------------------------------------------
# Poincaré-ball functions (c = 1)
# --------------------------------------------------------------------------------------------------------


def _curvature(ref: torch.Tensor) -> torch.Tensor:
    return torch.tensor(-1.0, dtype=ref.dtype, device=ref.device)  # κ = −c, c = 1


def to_poincare(u: torch.Tensor, clip_r: float | None = None) -> torch.Tensor:
    """Map Euclidean vectors (last dim) into the Poincaré ball with the exponential map at the origin.

    ``exp₀(u) = tanh(‖u‖) · u / ‖u‖`` (c = 1; seed 000 §2.2, eq. 2.14), computed by
    ``geoopt.manifolds.stereographic.math.expmap0``, then ``project`` (geoopt's safe projection to the ball
    of radius ``1 − eps``, eps = 4e-3 in float32, 1e-5 in float64) so the result is strictly inside.
    ``clip_r`` (optional) first clips the Euclidean norm, ``u ← min(1, r/‖u‖)·u`` ("feature clipping",
    Guo et al. 2022, cited in seed 000 §5.1); ch. 5 itself relies on the φ term instead (default ``None``).
    """
    if u.dtype not in (torch.float32, torch.float64):
        u = u.float()
    if clip_r is not None:
        if clip_r <= 0:
            raise ValueError(f"clip_r must be > 0, got {clip_r}")
        norm = u.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        u = u * (clip_r / norm).clamp(max=1.0)
    k = _curvature(u)
    return pmath.project(pmath.expmap0(u, k=k), k=k)


def busemann(x: torch.Tensor, prototypes: torch.Tensor, eps: float = 1e-15) -> torch.Tensor:
    """Busemann function of the Poincaré ball (c = 1) for ideal points ``prototypes`` (K, d).

    Seed 000 eq. 2.17 (c = 1): ``B_p(x) = log(‖p − x‖² / (1 − ‖x‖²))`` for ``x`` (..., d) inside the ball and
    ``‖p‖ = 1``; returns (..., K). ``‖p − x‖²`` is expanded as ``‖p‖² − 2⟨p, x⟩ + ‖x‖²`` (one matrix
    product, no (…, K, d) intermediate); both it and ``1 − ‖x‖²`` are clamped at ``eps`` against rounding.
    It equals ``lim_{t→∞} d(x, γ(t)) − t`` for the unit-speed geodesic γ from 0 to p (the sign of eq. 2.16 is
    the opposite convention; the closed form 2.17 is what ch. 5 uses): see tests/test_hyperbolic.py.
    """
    sq_x = (x * x).sum(-1, keepdim=True)
    sq_p = (prototypes * prototypes).sum(-1)
    sq_dist = (sq_p - 2.0 * (x @ prototypes.T) + sq_x).clamp_min(eps)
    return torch.log(sq_dist) - torch.log((1.0 - sq_x).clamp_min(eps))


def horospherical_logits(
    x: torch.Tensor, prototypes: torch.Tensor, bias: torch.Tensor, phi: float, eps: float = 1e-15
) -> torch.Tensor:
    """Horospherical logits, seed 000 eq. 5.2: ``ξ_k(x) = −B_{p_k}(x) + a_k + φ·log(1 − ‖x‖²)``.

    ``x`` (..., d) in the ball, ``prototypes`` (K, d) on the unit sphere, ``bias`` (K,) the ``a_k``,
    ``phi`` = λ·d (the weight of the penalty that keeps points off the boundary). Returns (..., K).
    """
    penalty = torch.log((1.0 - (x * x).sum(-1, keepdim=True)).clamp_min(eps))
    return -busemann(x, prototypes, eps) + bias + phi * penalty


def horosphere_radius(a: torch.Tensor | float) -> torch.Tensor:
    """Euclidean radius of the horosphere ``{x : −B_p(x) + a = 0}``: ``r(a) = (1 + tanh(a/2)) / 2``.

    Seed 000 §5.1 and App. A.3: the level set is a Euclidean sphere tangent to the ball at ``p``.
    """
    return (1.0 + torch.tanh(torch.as_tensor(a, dtype=torch.float64) / 2.0)) / 2.0


# --------------------------------------------------------------------------------------------------------
# Prototypes
# --------------------------------------------------------------------------------------------------------


def _check_n_dim(n: int, dim: int) -> None:
    if int(n) < 2:
        raise ValueError(f"prototypes: need at least 2 classes, got n={n}")
    if int(dim) < 2:
        raise ValueError(f"prototypes: the embedding dimension must be >= 2, got dim={dim}")


def random_prototypes(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` independent uniform random points on ``S^{dim−1}`` (normalised Gaussians), float64 (n, dim).

    The "random" initialisation of seed 000 Fig. 5.7a.
    """
    _check_n_dim(n, dim)
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, dim))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def wang_isola_potential(p: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """Uniformity loss of Wang & Isola (2020), seed 000 eq. 5.5 (t = 1 there):
    ``log( 1/(K(K−1)) Σ_{i≠j} exp(−t‖p_i − p_j‖²) )``."""
    k = p.shape[0]
    sq = torch.cdist(p, p).pow(2)
    off = ~torch.eye(k, dtype=torch.bool, device=p.device)
    return torch.logsumexp(-t * sq[off], dim=0) - np.log(k * (k - 1))


def uniform_prototypes(
    n: int, dim: int, steps: int = 1000, seed: int = 0, lr: float = 0.01, t: float = 1.0
) -> np.ndarray:
    """``n`` points spread uniformly on ``S^{dim−1}``, rows in a seeded random order; float64 (n, dim).

    Seed 000 §5.2.1. ``dim = 2``: the closed form ``p_i = (cos 2πi/n, sin 2πi/n)``. ``dim > 2``: minimise the
    Wang–Isola potential (eq. 5.5, :func:`wang_isola_potential`) from random points by ``steps`` steps of
    Riemannian Adam on ``geoopt.Sphere()`` (float64, CPU: deterministic for a seed). The row order is a
    random assignment of classes to points, as in the Busemann-uniform baseline (Ghadimi Atigh et al. 2021);
    :func:`smart_prototypes` replaces it with a hierarchical one.
    """
    _check_n_dim(n, dim)
    if steps < 0:
        raise ValueError(f"uniform_prototypes: steps must be >= 0, got {steps}")
    if dim == 2:
        ang = 2.0 * np.pi * np.arange(n) / n
        p = np.stack([np.cos(ang), np.sin(ang)], axis=1)
        return p[np.random.default_rng(seed).permutation(n)]
    init = torch.from_numpy(random_prototypes(n, dim, seed))
    param = geoopt.ManifoldParameter(init.clone(), manifold=geoopt.Sphere())
    opt = geoopt.optim.RiemannianAdam([param], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = wang_isola_potential(param, t)
        loss.backward()
        opt.step()
    p = param.detach().numpy().copy()
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def _check_tree_distance(tree_distance: np.ndarray) -> np.ndarray:
    d = np.asarray(tree_distance, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2:
        raise ValueError(f"tree_distance must be a square (K, K) matrix with K >= 2, got shape {d.shape}")
    if not np.allclose(d, d.T) or np.any(np.diag(d) != 0) or np.any(d < 0):
        raise ValueError("tree_distance must be symmetric, non-negative, with a zero diagonal")
    return d


def _permutation_gw_cost(tree: np.ndarray, sphere: np.ndarray, perm: np.ndarray) -> float:
    """Σ_{i,i'} (T_{ii'} − S_{σ(i)σ(i')})²: the objective of eq. 5.6 at the permutation coupling σ."""
    return float(((tree - sphere[np.ix_(perm, perm)]) ** 2).sum())


def gromov_wasserstein_assignment(
    tree_distance: np.ndarray, points: np.ndarray, n_init: int = 10, seed: int = 0
) -> np.ndarray:
    """Assign class ``i`` to point ``perm[i]`` so that tree-close classes get sphere-close points.

    Seed 000 §5.2.2, eq. 5.6–5.7: ``P* = argmin_{P ∈ U(1/K, 1/K)} Σ |T_{ii'} − S_{jj'}|² P_ij P_i'j'`` with
    ``T`` the tree metric and ``S_{jj'} = 1 − ⟨p_j, p_j'⟩``, solved by ``ot.gromov.gromov_wasserstein``
    (square loss, conditional gradient). GW is non-convex, so it is started from the product coupling and
    from ``n_init − 1`` seeded random permutation couplings. Each plan is turned into a permutation by the
    Hungarian algorithm on the plan (``scipy.optimize.linear_sum_assignment``, maximising Σ_i P_{i,σ(i)};
    this is eq. 5.7's row argmax whenever that argmax is already a permutation, and a valid one
    otherwise); the permutation with the lowest eq. 5.6 objective is returned (int array, (K,)).
    """
    import ot
    from scipy.optimize import linear_sum_assignment

    tree = _check_tree_distance(tree_distance)
    pts = np.asarray(points, dtype=np.float64)
    k = tree.shape[0]
    if pts.ndim != 2 or pts.shape[0] != k:
        raise ValueError(f"points must be ({k}, d) to match tree_distance, got shape {pts.shape}")
    if n_init < 1:
        raise ValueError(f"n_init must be >= 1, got {n_init}")
    sphere = 1.0 - pts @ pts.T
    w = np.full(k, 1.0 / k)
    rng = np.random.default_rng(seed)
    starts = [np.outer(w, w)] + [np.eye(k)[rng.permutation(k)] / k for _ in range(n_init - 1)]
    best, best_cost = None, np.inf
    for g0 in starts:
        plan = ot.gromov.gromov_wasserstein(tree, sphere, w, w, loss_fun="square_loss", G0=g0)
        rows, cols = linear_sum_assignment(np.asarray(plan), maximize=True)
        perm = cols[np.argsort(rows)]
        cost = _permutation_gw_cost(tree, sphere, perm)
        if cost < best_cost - 1e-12:
            best, best_cost = perm, cost
    return best


def tree_order(tree_distance: np.ndarray) -> np.ndarray:
    """Leaves of the label tree in depth-first order (each subtree contiguous).

    Average-linkage clustering recovers a tree exactly from its (ultrametric) leaf path-length matrix;
    ``scipy.cluster.hierarchy.leaves_list`` reads its leaves in depth-first order.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    d = _check_tree_distance(tree_distance)
    return leaves_list(linkage(squareform(d, checks=False), method="average"))


def smart_prototypes(
    tree_distance: np.ndarray,
    dim: int,
    seed: int = 0,
    steps: int = 1000,
    method: str = "auto",
    n_init: int = 10,
) -> np.ndarray:
    """Hierarchically assigned ideal prototypes, seed 000 §5.2 ("smart" prototypes); float64 (K, dim).

    Row ``i`` is the prototype of the class of row ``i`` of ``tree_distance`` (e.g.
    ``tmf.data.minifrance.tree_distance_matrix()`` over the 14 scored ids, 0..13 training targets).

    * ``method="gw"``: :func:`uniform_prototypes` then :func:`gromov_wasserstein_assignment` (eq. 5.6–5.7).
    * ``method="twopi"`` (``dim`` must be 2): the ``K`` equally spaced points of the circle taken in the
      depth-first order of the tree (:func:`tree_order`), so every subtree holds a contiguous arc; this is
      the twopi layout (Wills 1999) that §5.2 uses in two dimensions, with equal slices per leaf.
    * ``method="auto"``: ``twopi`` at ``dim == 2``, ``gw`` otherwise (as in seed 000).

    At ``dim ≥ K − 1`` the uniform points form a regular simplex (all pairwise cosines −1/(K−1)), so no
    assignment can reflect the hierarchy: smart = uniform there. The hierarchy matters at low ``dim``,
    where ch. 5 reports the gains (Tables 5.1, 5.3).
    """
    tree = _check_tree_distance(tree_distance)
    k = tree.shape[0]
    _check_n_dim(k, dim)
    if method == "auto":
        method = "twopi" if dim == 2 else "gw"
    if method == "twopi":
        if dim != 2:
            raise ValueError(f"smart_prototypes: method 'twopi' needs dim = 2, got dim={dim}")
        ang = 2.0 * np.pi * np.arange(k) / k
        circle = np.stack([np.cos(ang), np.sin(ang)], axis=1)
        out = np.empty_like(circle)
        out[tree_order(tree)] = circle
        return out
    if method != "gw":
        raise ValueError(f"smart_prototypes: method must be 'auto', 'gw' or 'twopi', got {method!r}")
    pts = uniform_prototypes(k, dim, steps=steps, seed=seed)
    return pts[gromov_wasserstein_assignment(tree, pts, n_init=n_init, seed=seed)]


def make_prototypes(
    kind: str,
    n_classes: int,
    dim: int,
    tree_distance: np.ndarray | None = None,
    seed: int = 0,
    steps: int = 1000,
) -> np.ndarray:
    """Initial prototypes by name: ``smart`` | ``uniform`` | ``random`` (see the functions above).

    ``smart`` without ``tree_distance`` uses the UrbanAtlas tree over the 14 scored MiniFrance ids
    (``tmf.data.minifrance.tree_distance_matrix()``) when ``n_classes`` is 14, and refuses otherwise.
    """
    if kind == "random":
        return random_prototypes(n_classes, dim, seed)
    if kind == "uniform":
        return uniform_prototypes(n_classes, dim, steps=steps, seed=seed)
    if kind == "smart":
        if tree_distance is None:
            from tmf.data.minifrance import SCORED_IDS, tree_distance_matrix

            if n_classes != len(SCORED_IDS):
                raise ValueError(
                    f"prototypes='smart' needs tree_distance for {n_classes} classes (the default "
                    f"UrbanAtlas tree covers the {len(SCORED_IDS)} scored MiniFrance classes)"
                )
            tree_distance = tree_distance_matrix()
        tree = _check_tree_distance(tree_distance)
        if tree.shape[0] != n_classes:
            raise ValueError(f"tree_distance is {tree.shape}, but n_classes is {n_classes}")
        return smart_prototypes(tree, dim, seed=seed, steps=steps)
    raise ValueError(f"prototypes must be one of {PROTOTYPE_KINDS} or a (K, d) array, got {kind!r}")


# --------------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------------


class HorosphericalHead(nn.Module):
    """Per-pixel horospherical classifier (seed 000 §5.1, eq. 5.2), for the last layer of a decoder.

    ``forward(features (N, in_channels, H, W)) → logits (N, n_classes, H, W)`` (float32, also under autocast).

    Args:
        in_channels: channels of the decoder features.
        n_classes: number of classes K (14 scored MiniFrance classes).
        dim: dimension d of the Poincaré ball (2, 3, 128 in seed 000 Table 5.3).
        prototypes: ``"smart"`` (default), ``"uniform"``, ``"random"``, or a (K, d) array of unit vectors.
        phi_lambda: λ in ``φ = λ·d`` (0.5 for image segmentation in seed 000 §5.3.3).
        tree_distance: (K, K) label-tree path lengths for ``smart`` (default: the UrbanAtlas tree if K = 14).
        seed: seed of the prototype initialisation (the conv weights follow torch's global RNG).
        learn_prototypes: train the prototypes with Riemannian Adam (seed 000 §5.1, default) or keep them
            fixed (a buffer; the Busemann-learning setting).
        bias: learn the per-class bias a_k (App. A.1 ablates it; default on).
        clip_r: optional Euclidean feature clipping before exp₀ (default off; see :func:`to_poincare`).
        prototype_steps: Riemannian-Adam steps of the Wang–Isola minimisation for uniform/smart.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        dim: int,
        prototypes: str | np.ndarray | torch.Tensor = "smart",
        phi_lambda: float = 0.5,
        tree_distance: np.ndarray | None = None,
        seed: int = 0,
        learn_prototypes: bool = True,
        bias: bool = True,
        clip_r: float | None = None,
        prototype_steps: int = 1000,
    ):
        super().__init__()
        _check_n_dim(n_classes, dim)
        if phi_lambda < 0:
            raise ValueError(f"phi_lambda must be >= 0, got {phi_lambda}")
        if isinstance(prototypes, str):
            init = make_prototypes(prototypes, n_classes, dim, tree_distance, seed, prototype_steps)
            self.prototype_init = prototypes
        else:
            init = np.asarray(prototypes.detach().cpu() if torch.is_tensor(prototypes) else prototypes)
            if init.shape != (n_classes, dim):
                raise ValueError(f"prototypes array must be ({n_classes}, {dim}), got {init.shape}")
            init = init / np.linalg.norm(init, axis=1, keepdims=True)
            self.prototype_init = "given"
        self.in_channels, self.n_classes, self.dim = int(in_channels), int(n_classes), int(dim)
        self.phi_lambda = float(phi_lambda)
        self.phi = self.phi_lambda * self.dim  # φ(d) = λ·d, seed 000 §5.1
        self.clip_r = clip_r
        self.learn_prototypes = bool(learn_prototypes)
        self.embed = nn.Conv2d(in_channels, dim, kernel_size=1)
        p = torch.as_tensor(init, dtype=torch.float32)
        if self.learn_prototypes:
            self.prototypes = geoopt.ManifoldParameter(p, manifold=geoopt.Sphere())
        else:
            self.register_buffer("prototypes", p)
        if bias:
            self.bias = nn.Parameter(torch.zeros(n_classes))
        else:
            self.register_buffer("bias", torch.zeros(n_classes))

    def _check(self, features: torch.Tensor) -> torch.dtype:
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"HorosphericalHead expects features (N, {self.in_channels}, H, W), got {tuple(features.shape)}"
            )
        return torch.float64 if features.dtype == torch.float64 else torch.float32

    def _tangent(self, features: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        return F.conv2d(features.to(dt), self.embed.weight.to(dt), self.embed.bias.to(dt))

    def embed_ball(self, features: torch.Tensor) -> torch.Tensor:
        """Ball embeddings ``x = exp₀(conv1x1(features))``, (N, H, W, d), float32/64, by geoopt's
        ``expmap0`` + ``project`` (:func:`to_poincare`); for analysis and plots."""
        dt = self._check(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return to_poincare(self._tangent(features, dt).movedim(1, -1), self.clip_r)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, H, W) of eq. 5.2 at ``x = exp₀(u)``, ``u = conv1x1(features)``.

        Same values as ``horospherical_logits(embed_ball(features), ...)`` (tested), computed in the
        channel layout without (N, H, W, d) temporaries: ``‖x‖ = r = min(tanh ‖u‖, 1 − eps)`` (geoopt's
        projection radius), ``x = (r/‖u‖)·u``, ``⟨p_k, x⟩ = (r/‖u‖)·conv1x1(u; p_k)``, so that
        ``ξ_k = −log(‖p_k‖² − 2⟨p_k, x⟩ + r²) + (1 + φ)·log(1 − r²) + a_k``.
        """
        dt = self._check(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            u = self._tangent(features, dt)
            n = u.norm(dim=1, keepdim=True).clamp_min(1e-15)
            n_eff = n if self.clip_r is None else n.clamp_max(self.clip_r)
            maxnorm = 1.0 - (4e-3 if dt == torch.float32 else 1e-5)  # as geoopt's PoincareBall.projx
            r = torch.tanh(n_eff).clamp_max(maxnorm)
            p = self.prototypes.to(dt)
            pu = F.conv2d(u, p[:, :, None, None])  # ⟨p_k, u⟩, (N, K, H, W)
            sq = (p * p).sum(1)[None, :, None, None] - 2.0 * (r / n) * pu + r * r
            one_minus = (1.0 - r * r).clamp_min(1e-15)
            return (
                -torch.log(sq.clamp_min(1e-15))
                + (1.0 + self.phi) * torch.log(one_minus)
                + self.bias.to(dt)[None, :, None, None]
            )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, n_classes={self.n_classes}, phi={self.phi:g} (lambda={self.phi_lambda:g}), "
            f"prototypes={self.prototype_init}, learn_prototypes={self.learn_prototypes}, clip_r={self.clip_r}"
        )


class EuclideanHead(nn.Module):
    """Euclidean counterpart at the same embedding dimension: 1x1 conv to ``dim``, then a linear classifier
    ``dim → n_classes`` (a 1x1 conv). The "Euclidean" rows of seed 000 Tables 5.1 and 5.3."""

    def __init__(self, in_channels: int, n_classes: int, dim: int):
        super().__init__()
        _check_n_dim(n_classes, dim)
        self.in_channels, self.n_classes, self.dim = int(in_channels), int(n_classes), int(dim)
        self.embed = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.classifier = nn.Conv2d(dim, n_classes, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"EuclideanHead expects features (N, {self.in_channels}, H, W), got {tuple(features.shape)}"
            )
        return self.classifier(self.embed(features))


def make_head(
    kind: str, in_channels: int, n_classes: int, dim: int, **kwargs
) -> HorosphericalHead | EuclideanHead:
    """``kind`` in :data:`HEADS`; ``kwargs`` go to :class:`HorosphericalHead` (refused for ``euclidean``)."""
    if kind == "horospherical":
        return HorosphericalHead(in_channels, n_classes, dim, **kwargs)
    if kind == "euclidean":
        if kwargs:
            raise ValueError(f"head 'euclidean' takes no options, got {sorted(kwargs)}")
        return EuclideanHead(in_channels, n_classes, dim)
    raise ValueError(f"head must be one of {HEADS}, got {kind!r}")


def riemannian_adam(
    params: nn.Module | Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    prototype_lr: float | None = None,
) -> geoopt.optim.RiemannianAdam:
    """``geoopt.optim.RiemannianAdam`` over a whole model (seed 000 §5.1, §5.3.2).

    Two groups: manifold parameters (the prototypes on ``geoopt.Sphere``; learning rate ``prototype_lr``
    or ``lr``; no weight decay, which has no meaning on the sphere) and every other trainable parameter
    (``lr``, ``weight_decay``, treated exactly as ``torch.optim.Adam`` does, L2 added to the gradient).
    Riemannian Adam keeps the prototypes on the sphere by retraction after each step.
    """
    plist = list(params.parameters() if isinstance(params, nn.Module) else params)
    manifold = [p for p in plist if p.requires_grad and isinstance(p, geoopt.ManifoldParameter)]
    euclid = [p for p in plist if p.requires_grad and not isinstance(p, geoopt.ManifoldParameter)]
    groups = []
    if euclid:
        groups.append({"params": euclid, "weight_decay": weight_decay})
    if manifold:
        groups.append({"params": manifold, "weight_decay": 0.0, "lr": lr if prototype_lr is None else prototype_lr})
    if not groups:
        raise ValueError("riemannian_adam: no trainable parameters")
    return geoopt.optim.RiemannianAdam(groups, lr=lr)


# --------------------------------------------------------------------------------------------------------
# Hierarchical metric
# --------------------------------------------------------------------------------------------------------


def average_hierarchical_cost(confusion: np.ndarray, tree_distance: np.ndarray) -> float:
    """Average Hierarchical Cost (Kosmopoulos et al. 2015), seed 000 eq. 5.11.

    ``AHC = (1/N) Σ_i D[y_i, z_i] = Σ_{t,p} C[t, p]·D[t, p] / Σ C`` for a confusion matrix ``C`` (rows = true
    class, columns = predicted) and the tree path-length matrix ``D``. 0 for a perfect classifier; lower
    is better. NaN when the confusion matrix is empty.
    """
    c = np.asarray(confusion, dtype=np.float64)
    d = _check_tree_distance(tree_distance)
    if c.shape != d.shape:
        raise ValueError(f"confusion {c.shape} and tree_distance {d.shape} must have the same shape")
    total = c.sum()
    return float((c * d).sum() / total) if total > 0 else float("nan")


def prototype_min_angle(prototypes: np.ndarray | torch.Tensor) -> float:
    """Smallest pairwise angle (radians) between prototypes: how well they are spread."""
    p = np.asarray(prototypes.detach().cpu() if torch.is_tensor(prototypes) else prototypes, dtype=np.float64)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    cos = np.clip(p @ p.T, -1.0, 1.0)
    np.fill_diagonal(cos, -1.0)
    return float(np.arccos(cos.max()))


__all__: Sequence[str] = (
    "HEADS",
    "PROTOTYPE_KINDS",
    "EuclideanHead",
    "HorosphericalHead",
    "average_hierarchical_cost",
    "busemann",
    "gromov_wasserstein_assignment",
    "horosphere_radius",
    "horospherical_logits",
    "make_head",
    "make_prototypes",
    "prototype_min_angle",
    "random_prototypes",
    "riemannian_adam",
    "smart_prototypes",
    "to_poincare",
    "tree_order",
    "uniform_prototypes",
    "wang_isola_potential",
)
