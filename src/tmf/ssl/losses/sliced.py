"""Sliced-Wasserstein uniformity on the sphere: SSW-SSL and SW-SSL (Berg 2024; seed 000 §3.2; Bonet et al. 2023).

Hand-written in torch: POT's ``ot.sliced_wasserstein_sphere_unif`` is backend-generic but rejects rows whose norm
is off by 1e-4 (bf16 training), returns SSW₂ (we need SSW₂², whose square root has an infinite gradient at 0) and
mis-reshapes when ``projections`` is passed without ``n_projections``. The formulas below are POT's, and the
tests check equality with POT for the same projections.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._util import check_pair, full, no_autocast


def sphere_projections(d: int, n_projections: int, generator: torch.Generator | None = None,
                       dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """(L, d, 2) uniform samples of the Stiefel manifold V_{d,2}: QR of a Gaussian matrix, as POT's
    ``ot.sliced.get_projections_sphere``. Each one spans a great circle of S^{d−1}."""
    z = torch.randn(n_projections, d, 2, generator=generator, dtype=dtype)
    q, _ = torch.linalg.qr(z)
    return q.to(device)


def _w2_unif_circle(coords: torch.Tensor) -> torch.Tensor:
    """Closed form W₂²(μ_n, Unif(S¹)) per row of ``coords`` (L, n) in [0, 1) with uniform weights
    (Bonet et al. 2023, Prop. 1; POT ``semidiscrete_wasserstein2_unif_circle``):
    Σ α x_i² − (Σ α x_i)² + Σ α x_i (1 − α − 2 Σ_{k<i} α) + 1/12 on the sorted x."""
    n = coords.shape[1]
    x, _ = torch.sort(coords % 1.0, dim=1)
    w = 1.0 / n
    cdf_before = torch.arange(n, dtype=x.dtype, device=x.device) * w
    ns = 1.0 - w - 2.0 * cdf_before
    mean = (w * x).sum(1)
    return (w * x.pow(2)).sum(1) - mean.pow(2) + (w * x * ns).sum(1) + 1.0 / 12.0


@no_autocast
def ssw_uniformity(z: torch.Tensor, n_projections: int = 10, generator: torch.Generator | None = None,
                   projections: torch.Tensor | None = None) -> torch.Tensor:
    """SSW₂²(μ_z, Unif(S^{d−1})) (seed 000 eq. 3.14–3.16, Table 3.3).

    Rows of z are L2-normalised here. For each of L projections U ∈ V_{d,2} (drawn with ``generator``, or given
    as an (L, d, 2) tensor) the points go to the circle, P^U(x) = Uᵀx / ‖Uᵀx‖ (eq. 3.15), with coordinate
    t = (π + atan2(−y, −x)) / 2π ∈ [0, 1); the pushforward of the uniform law is uniform on S¹, so each slice has
    the closed form above and ``SSW₂² = (1/L) Σ_l W₂²(P^{U_l}_# μ_z, Unif(S¹))``. Cost O(LN(d + log N)).
    """
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"ssw_uniformity: expected (N, d) with d >= 2, got {tuple(z.shape)}")
    zn = F.normalize(full(z), dim=1)
    if projections is None:
        projections = sphere_projections(zn.shape[1], n_projections, generator, zn.dtype, zn.device)
    projections = projections.to(zn)
    xp = torch.einsum("ikj,lk->ilj", projections, zn)  # (L, N, 2)
    xp = xp / xp.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    coords = (torch.atan2(-xp[..., 1], -xp[..., 0]) + math.pi) / (2 * math.pi)
    return _w2_unif_circle(coords).mean()


@no_autocast
def ssw_ssl(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 20.0, n_projections: int = 10,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """SSW-SSL (seed 000 eq. 3.17): ``(1/N) Σ_i ‖ẑ_A,i − ẑ_B,i‖² + (λ/2)(SSW₂²(ẑ_A, ν) + SSW₂²(ẑ_B, ν))``,
    ν = Unif(S^{d−1}), λ = 20, L ∈ {3, 10} projections (the same L projections for both views)."""
    check_pair(z_a, z_b, "ssw_ssl")
    a = F.normalize(full(z_a), dim=1)
    b = F.normalize(full(z_b), dim=1)
    proj = sphere_projections(a.shape[1], n_projections, generator, a.dtype, a.device)
    align = (a - b).pow(2).sum(1).mean()
    return align + 0.5 * lambd * (ssw_uniformity(a, projections=proj) + ssw_uniformity(b, projections=proj))


@no_autocast
def sw_uniformity(z: torch.Tensor, n_projections: int = 10, generator: torch.Generator | None = None,
                  projections: torch.Tensor | None = None, target: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean SW₂²(μ_z, ν_N) between the L2-normalised rows of z and N samples of Unif(S^{d−1})
    (the SW-SSL variant of seed 000 §3.2.3; SW of eq. 2.28–2.29).

    Directions θ_l ∼ Unif(S^{d−1}) ((d, L) as POT's ``get_random_projections``); with equal sample sizes the 1-D
    OT matches sorted projections: ``SW₂² = (1/L) Σ_l (1/N) Σ_i (sort(zθ_l)_i − sort(uθ_l)_i)²``. ``target``
    gives the uniform samples (N, d) (default: normalised Gaussians from ``generator``)."""
    if z.ndim != 2:
        raise ValueError(f"sw_uniformity: expected (N, d), got {tuple(z.shape)}")
    zn = F.normalize(full(z), dim=1)
    n, d = zn.shape
    if target is None:
        target = F.normalize(torch.randn(n, d, generator=generator, dtype=zn.dtype), dim=1)
    target = target.to(zn)
    if target.shape != zn.shape:
        raise ValueError(f"sw_uniformity: target must be {tuple(zn.shape)}, got {tuple(target.shape)}")
    if projections is None:
        projections = F.normalize(torch.randn(d, n_projections, generator=generator, dtype=zn.dtype), dim=0)
    projections = projections.to(zn)
    xs, _ = torch.sort(zn @ projections, dim=0)
    xt, _ = torch.sort(target @ projections, dim=0)
    return (xs - xt).pow(2).mean(0).mean()


@no_autocast
def sw_ssl(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 1.0, n_projections: int = 10,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """SW-SSL (seed 000 §3.2.3, Table 3.4): eq. 3.17 with SW₂² to samples of Unif(S^{d−1}) in place of SSW₂²;
    λ = 1. Both views share the directions and the uniform samples."""
    check_pair(z_a, z_b, "sw_ssl")
    a = F.normalize(full(z_a), dim=1)
    b = F.normalize(full(z_b), dim=1)
    n, d = a.shape
    target = F.normalize(torch.randn(n, d, generator=generator, dtype=a.dtype), dim=1).to(a.device)
    proj = F.normalize(torch.randn(d, n_projections, generator=generator, dtype=a.dtype), dim=0).to(a.device)
    align = (a - b).pow(2).sum(1).mean()
    return align + 0.5 * lambd * (sw_uniformity(a, projections=proj, target=target)
                                  + sw_uniformity(b, projections=proj, target=target))
