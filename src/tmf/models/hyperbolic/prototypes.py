"""Ideal prototypes of the horospherical head: random, uniform (Wang–Isola) and "smart" (Gromov–Wasserstein).

Source: seed 000 (Berg 2024) §5.2 (eq. 5.5–5.7), Fig. 5.7; SPEC.md §5 "Smart prototypes". Every function returns
float64 unit vectors ``(K, d)``, row ``i`` the prototype of class ``i``.
"""

from __future__ import annotations

import geoopt
import numpy as np
import torch

PROTOTYPE_KINDS: tuple[str, ...] = ("smart", "uniform", "random")


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


def prototype_min_angle(prototypes: np.ndarray | torch.Tensor) -> float:
    """Smallest pairwise angle (radians) between prototypes: how well they are spread."""
    p = np.asarray(prototypes.detach().cpu() if torch.is_tensor(prototypes) else prototypes, dtype=np.float64)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    cos = np.clip(p @ p.T, -1.0, 1.0)
    np.fill_diagonal(cos, -1.0)
    return float(np.arccos(cos.max()))
