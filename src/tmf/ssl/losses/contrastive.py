"""Image-level joint-embedding losses: SimCLR, MoCo-v2, BYOL, Barlow Twins, Wang & Isola (SPEC.md §4).

Every function takes projections ``(N, d)`` of two augmented views and returns a scalar tensor that carries
gradients. Half-precision inputs are computed in float32 (bf16 softmaxes are coarse); float64 stays float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._util import check_pair, full, no_autocast


@no_autocast
def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020; seed 000 eq. 3.1–3.2; seed 003 eq. 18).

    With z = cat(ẑ_A, ẑ_B) (2N rows, L2-normalised here) and s_ij = ⟨z_i, z_j⟩, each view i has one positive
    p(i) (the other view of the same image) and the loss is
    ``(1/2N) Σ_i −log( exp(s_{i,p(i)}/τ) / Σ_{k≠i} exp(s_ik/τ) )``.  τ = 0.5 in the IOT-CL runs (seed 003).
    """
    check_pair(z_a, z_b, "nt_xent")
    n = z_a.shape[0]
    z = F.normalize(full(torch.cat([z_a, z_b])), dim=1)
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


@no_autocast
def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Queued InfoNCE of MoCo-v2 (He et al. 2020; Chen et al. 2020b; seed 000 §2.1 and §4.1).

    q: (N, d) queries of the online encoder; k: (N, d) keys of the momentum encoder (give them without grad);
    queue: (K, d) keys of earlier batches. All are L2-normalised here. Loss
    ``−(1/N) Σ_i log( exp(q_i·k_i/τ) / (exp(q_i·k_i/τ) + Σ_j exp(q_i·queue_j/τ)) )``; τ = 0.2.
    """
    check_pair(q, k, "moco_infonce")
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"moco_infonce: queue must be (K, {q.shape[1]}), got {tuple(queue.shape)}")
    q = F.normalize(full(q), dim=1)
    k = F.normalize(full(k), dim=1)
    queue = F.normalize(full(queue), dim=1)
    pos = (q * k).sum(1, keepdim=True)
    logits = torch.cat([pos, q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@no_autocast
def byol(p_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """BYOL regression loss (Grill et al. 2020; SPEC.md §4).

    ``mean_i ‖p_i/‖p_i‖ − z_i/‖z_i‖‖² = mean_i (2 − 2 cos(p_i, z_i))``, p the online prediction, z the
    target projection (pass it without grad). The method symmetrises over the two views.
    """
    check_pair(p_a, z_b, "byol")
    p = F.normalize(full(p_a), dim=1)
    z = F.normalize(full(z_b), dim=1)
    return (2.0 - 2.0 * (p * z).sum(1)).mean()


@no_autocast
def barlow_twins(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021; seed 000 eq. 2.5–2.6).

    Each feature is standardised over the batch (mean 0, biased std 1, as ``BatchNorm1d(affine=False)``),
    C = ẑ_Aᵀ ẑ_B / N (d × d cross-correlation) and the loss is ``Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²``,
    λ = 0.0051.
    """
    check_pair(z_a, z_b, "barlow_twins")
    n = z_a.shape[0]
    if n < 2:
        raise ValueError("barlow_twins: needs a batch of at least 2 to standardise features")

    def standardise(z: torch.Tensor) -> torch.Tensor:
        z = full(z)
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)

    c = standardise(z_a).T @ standardise(z_b) / n
    diag = torch.diagonal(c)
    on = (1.0 - diag).pow(2).sum()
    off = c.pow(2).sum() - diag.pow(2).sum()
    return on + lambd * off


@no_autocast
def alignment(z_a: torch.Tensor, z_b: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Alignment of Wang & Isola (2020; seed 000 §3.2, Table 3.3): ``mean_i ‖ẑ_A,i − ẑ_B,i‖^α`` on L2-normalised
    rows (α = 2)."""
    check_pair(z_a, z_b, "alignment")
    a = F.normalize(full(z_a), dim=1)
    b = F.normalize(full(z_b), dim=1)
    return (a - b).norm(dim=1).pow(alpha).mean()


@no_autocast
def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Uniformity of Wang & Isola (2020; seed 000 Table 3.3): ``log mean_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)`` on
    L2-normalised rows (t = 2). Uses ‖ẑ_i − ẑ_j‖² = 2 − 2⟨ẑ_i, ẑ_j⟩ and a logsumexp; O(N²d)."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"uniformity: expected (N, d) with N >= 2, got {tuple(z.shape)}")
    zn = F.normalize(full(z), dim=1)
    n = zn.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=zn.device)
    sq = (2.0 - 2.0 * (zn @ zn.T))[i, j].clamp_min(0.0)
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())


@no_autocast
def wang_isola(z_a: torch.Tensor, z_b: torch.Tensor, t: float = 2.0, weight: float = 1.0) -> torch.Tensor:
    """Wang & Isola (2020) objective (SPEC.md §4): ``alignment(ẑ_A, ẑ_B) + w · (U(ẑ_A) + U(ẑ_B)) / 2`` with
    α = 2 and U the uniformity above (t = 2, w = 1)."""
    return alignment(z_a, z_b, 2.0) + weight * 0.5 * (uniformity(z_a, t) + uniformity(z_b, t))
