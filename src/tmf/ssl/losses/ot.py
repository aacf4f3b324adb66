"""Entropic OT between the samples or between the features of two views (Berg 2024; seed 000 §3.1).

Written in torch rather than called from POT because the losses need autograd through a fixed, small number of
Sinkhorn iterations at ε = 0.01 (seed 000 §3.1.3), where exp(−C/ε) underflows: :func:`sinkhorn_log` is POT's
``ot.bregman.sinkhorn_log`` update (same order, same potentials) without its stopping test, so a run of K
iterations equals POT's with ``numItermax=K, stopThr=0`` (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._util import check_pair, full, no_autocast


@no_autocast
def sinkhorn_log(cost: torch.Tensor, eps: float, iters: int, a: torch.Tensor | None = None,
                 b: torch.Tensor | None = None, log: bool = False) -> torch.Tensor:
    """Entropic OT plan argmin_{π∈U(a,b)} ⟨π, C⟩ − ε H(π) by ``iters`` log-domain Sinkhorn iterations
    (Cuturi 2013; seed 000 eq. 3.6, §2.3.1).

    With M = −C/ε and potentials f, g (zero at start), each iteration is
    ``g ← log b − LSE_i(M_ij + f_i)`` then ``f ← log a − LSE_j(M_ij + g_j)`` and π = exp(M + f ⊕ g); the row
    marginals are exact after each iteration. a, b default to uniform. Entries of ``cost`` equal to +∞ are
    forbidden matches (π = 0). Differentiable. ``log=True`` returns log π (finite where π > 0) instead.
    """
    if cost.ndim != 2:
        raise ValueError(f"sinkhorn_log: cost must be a matrix, got shape {tuple(cost.shape)}")
    if eps <= 0:
        raise ValueError(f"sinkhorn_log: eps must be > 0, got {eps}")
    if iters < 1:
        raise ValueError(f"sinkhorn_log: iters must be >= 1, got {iters}")
    n, m = cost.shape
    log_a = (torch.full((n,), -math.log(n), dtype=cost.dtype, device=cost.device) if a is None
             else torch.log(a.to(cost)))
    log_b = (torch.full((m,), -math.log(m), dtype=cost.dtype, device=cost.device) if b is None
             else torch.log(b.to(cost)))
    mr = -cost / eps
    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    for _ in range(iters):
        g = log_b - torch.logsumexp(mr + f[:, None], dim=0)
        f = log_a - torch.logsumexp(mr + g[None, :], dim=1)
    log_pi = mr + f[:, None] + g[None, :]
    return log_pi if log else log_pi.exp()


@no_autocast
def ot_sample(z_a: torch.Tensor, z_b: torch.Tensor, eps: float = 0.01, iters: int = 5) -> torch.Tensor:
    """OT between samples, L_Samples (seed 000 eq. 3.3–3.6).

    Over the 2N views z = cat(ẑ_A, ẑ_B) (L2-normalised), C_ij = 1 − ⟨z_i, z_j⟩ with C_ii = +∞, uniform
    marginals 1/2N, π the entropic plan (:func:`sinkhorn_log`, ε = 0.01, 5 iterations) and
    ``L = −(1/2N) Σ_{i≤N} [log π_{i,i+N} + log π_{i+N,i}]``. The source sums over i; we average (divide by 2N)
    so the loss scale does not grow with the batch (the gradient direction is the same).
    """
    check_pair(z_a, z_b, "ot_sample")
    n = z_a.shape[0]
    z = F.normalize(full(torch.cat([z_a, z_b])), dim=1)
    cost = (1.0 - z @ z.T).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("inf"))
    log_pi = sinkhorn_log(cost, eps, iters, log=True)
    idx = torch.arange(n, device=z.device)
    return -(log_pi[idx, idx + n].sum() + log_pi[idx + n, idx].sum()) / (2 * n)


@no_autocast
def ot_feature(z_a: torch.Tensor, z_b: torch.Tensor, eps: float = 0.01, iters: int = 5) -> torch.Tensor:
    """OT between features, L_Feature (seed 000 eq. 3.7–3.8).

    Rows are L2-normalised (points on S^{d−1}), then each feature column is L2-normalised over the batch, so
    C_ij = 1 − Σ_b z^A_bi z^B_bj is one minus the column-normalised cross-correlation (d × d). π is the entropic
    plan with uniform marginals 1/d (ε = 0.01, 5 iterations) and ``L = −(1/d) Σ_i log π_ii`` (the source sums;
    we average over the d features).
    """
    check_pair(z_a, z_b, "ot_feature")
    a = F.normalize(F.normalize(full(z_a), dim=1), dim=0)
    b = F.normalize(F.normalize(full(z_b), dim=1), dim=0)
    cost = 1.0 - a.T @ b
    log_pi = sinkhorn_log(cost, eps, iters, log=True)
    return -torch.diagonal(log_pi).mean()
