"""Embedding diagnostics logged during pretraining: alignment, uniformity (Wang & Isola 2020; seed 000 §3.2,
Table 3.3) and effective rank (Roy & Vetterli 2007; the "embedding rank" of seed 002 Table III)."""

from __future__ import annotations

import torch

from .losses.contrastive import alignment, uniformity

__all__ = ["alignment", "uniformity", "effective_rank"]


@torch.no_grad()
def effective_rank(z: torch.Tensor) -> float:
    """Effective rank exp(H(p)) of an (N, d) embedding matrix, p_k = σ_k / Σ σ the normalised singular values and
    H the Shannon entropy (Roy & Vetterli 2007). Between 1 (rank one) and min(N, d) (flat spectrum)."""
    if z.ndim != 2:
        raise ValueError(f"effective_rank: expected (N, d), got {tuple(z.shape)}")
    s = torch.linalg.svdvals(z.detach().double())
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
