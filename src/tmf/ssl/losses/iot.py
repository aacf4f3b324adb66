"""Contrastive learning as inverse optimal transport: the IOT-CL family (Shi et al. 2023; seed 003 §3.2–3.4).

The 2N views z = cat(ẑ_A, ẑ_B) (L2-normalised) form both point sets (n = m = 2N, seed 003 eq. 16). The cost is
C_ij = 1 − ⟨z_i, z_j⟩ with C_ii = +∞ (no self-matching: exp(−C_ii/ε) = 0, implemented as −∞ in the log
domain). The ground-truth plan P̃ puts 1/n on the positive pairs S = {(i, i+N), (i+N, i)} (eq. 16–17, with the
views stacked A then B instead of interleaved, the same set up to a permutation). The coupling P of −C/ε is

- ``"ua"``  U(a): P_ij = exp(−C_ij/ε) / (n Σ_k exp(−C_ik/ε)) (eq. 12), the row softmax over n;
- ``"u1"``  U(1): P_ij = exp(−C_ij/ε) / Σ_ts exp(−C_ts/ε) (eq. 19), the global softmax;
- ``"uab"`` U(a,b): K rounds of eq. 22 from P⁰ = exp(−C/ε) (eq. 21): rows rescaled to sum 1/n, then columns
  to 1/m (Sinkhorn, Algorithm 1).

and the loss is the cross-entropy to the true matching, −Σ_ij P̃_ij log P_ij (eq. 23), i.e.
``−(1/n) Σ_{(i,j)∈S} log P_ij``. Under U(a) this is NT-Xent with τ = ε plus the constant log 2N (eq. 13, 18).
The uniformity penalty (eq. 24–25) adds λ_p KL(Q̄ ‖ P), Q̄ = P on S and, on every other off-diagonal entry,
the mean of P over those negative entries (self-pairs excluded: Q̄_ii = P_ii = 0). Q̄ sums to 1 like P. Q̄ is
a function of P and is not detached (the paper writes the KL of the two without a stop-gradient).

All computations are in the log domain (logsumexp), so small ε and large batches stay finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._util import check_pair, full, no_autocast

COUPLINGS = ("ua", "u1", "uab")


def _log_kernel(z_a: torch.Tensor, z_b: torch.Tensor, eps: float) -> torch.Tensor:
    check_pair(z_a, z_b, "iot")
    if eps <= 0:
        raise ValueError(f"iot: eps must be > 0, got {eps}")
    z = F.normalize(full(torch.cat([z_a, z_b])), dim=1)
    cost = 1.0 - z @ z.T
    logk = -cost / eps
    return logk.masked_fill(torch.eye(z.shape[0], dtype=torch.bool, device=z.device), float("-inf"))


def log_coupling(log_kernel: torch.Tensor, coupling: str = "ua", iters: int = 1) -> torch.Tensor:
    """log P for a (n, m) log-kernel −C/ε (−∞ where matching is forbidden), per seed 003 eq. 12, 19, 21–22.

    ``iters`` (K ≥ 1) is used by ``"uab"`` only: each round is a row normalisation to 1/n followed by a column
    normalisation to 1/m, so after K rounds the column marginals are exact.
    """
    n, m = log_kernel.shape
    if coupling == "ua":
        return log_kernel - torch.logsumexp(log_kernel, dim=1, keepdim=True) - math.log(n)
    if coupling == "u1":
        return log_kernel - torch.logsumexp(log_kernel.reshape(-1), dim=0)
    if coupling == "uab":
        if iters < 1:
            raise ValueError(f"iot: iters must be >= 1 for coupling 'uab', got {iters}")
        logp = log_kernel
        for _ in range(iters):
            logp = logp - torch.logsumexp(logp, dim=1, keepdim=True) - math.log(n)
            logp = logp - torch.logsumexp(logp, dim=0, keepdim=True) - math.log(m)
        return logp
    raise ValueError(f"iot: unknown coupling {coupling!r}; expected one of {COUPLINGS}")


@no_autocast
def iot_coupling(z_a: torch.Tensor, z_b: torch.Tensor, eps: float = 0.5, coupling: str = "ua",
                 iters: int = 1) -> torch.Tensor:
    """The (2N, 2N) coupling P of seed 003 (eq. 12, 19 or 21–22) between the 2N views; its entries sum to 1."""
    return log_coupling(_log_kernel(z_a, z_b, eps), coupling, iters).exp()


def _positive_mask(n_pairs: int, device: torch.device) -> torch.Tensor:
    n = 2 * n_pairs
    idx = torch.arange(n_pairs, device=device)
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[idx, idx + n_pairs] = True
    mask[idx + n_pairs, idx] = True
    return mask


def uniformity_penalty(log_p: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """KL(Q̄ ‖ P) of seed 003 eq. 24–25: Σ_{(i,j) negative} q̄ (log q̄ − log P_ij), q̄ = mean of P over the
    negative (off-diagonal, non-positive) entries; the positive entries contribute P log(P/P) = 0."""
    n = log_p.shape[0]
    neg = ~positives & ~torch.eye(n, dtype=torch.bool, device=log_p.device)
    log_neg = log_p[neg]
    log_qbar = torch.logsumexp(log_neg, dim=0) - math.log(log_neg.numel())
    return (log_qbar.exp() * (log_qbar - log_neg)).sum()


@no_autocast
def iot_loss(z_a: torch.Tensor, z_b: torch.Tensor, eps: float = 0.5, coupling: str = "ua", iters: int = 1,
             uniformity: float = 0.0) -> torch.Tensor:
    """IOT-CL loss (seed 003 eq. 23, plus λ_p KL(Q̄‖P) of eq. 24 when ``uniformity`` = λ_p > 0).

    ``−(1/2N) Σ_{(i,j)∈S} log P_ij + λ_p KL(Q̄ ‖ P)`` with P from :func:`iot_coupling`. Defaults: ε = 0.5,
    K ∈ {1, 2, 4, 8} for U(a,b), λ_p ∈ {0, 0.1, 0.5, 1, 5, 10} (0.5 on ImageNet-100).
    """
    n_pairs = z_a.shape[0]
    log_p = log_coupling(_log_kernel(z_a, z_b, eps), coupling, iters)
    pos = _positive_mask(n_pairs, log_p.device)
    loss = -log_p[pos].sum() / (2 * n_pairs)
    if uniformity:
        if n_pairs < 2:
            raise ValueError("iot: the uniformity penalty needs a batch of at least 2 (no negatives otherwise)")
        loss = loss + uniformity * uniformity_penalty(log_p, pos)
    return loss
