"""Poincaré-ball functions of the horospherical head (c = 1): exp₀, the Busemann function, eq. 5.2 logits.

Source: seed 000 (Berg 2024) §2.2 (eq. 2.14, 2.17), §5.1 (eq. 5.2), App. A.3; SPEC.md §5 "Hyperbolic head".
After ``exp₀`` the points are projected inside the ball of radius ``1 − 4e-3`` (float32) / ``1 − 1e-5``
(float64) exactly as geoopt's ``PoincareBall.projx`` does, so ``log(1 − ‖x‖²) ≥ log(8e-3)`` and every logit is
finite.
"""

from __future__ import annotations

import torch
from geoopt.manifolds.stereographic import math as pmath


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
