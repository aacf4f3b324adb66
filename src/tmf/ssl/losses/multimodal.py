"""Multi-positive contrastive losses over the views of several modalities: MM-SSL (seed 000 §4.2, eq. 4.1) and
MM-SupCon (seed 000 §4.3, eqs. 4.2–4.4; Khosla et al. 2020).

Both take a list of V view embeddings ``(N, d)`` (for M modalities with k views each, V = M·k: every view of
every modality of the same N samples, in any order) and return a scalar carrying gradients. They are one
function, :func:`multi_positive_nce`, with two positive sets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._util import full, no_autocast


def _stack(views: list[torch.Tensor], name: str, least: int = 2) -> torch.Tensor:
    if len(views) < least or any(v.ndim != 2 or v.shape != views[0].shape for v in views):
        raise ValueError(f"{name}: expected at least {least} view embedding(s) (N, d) of one shape, got "
                         f"{[tuple(v.shape) for v in views]}")
    return F.normalize(full(torch.cat(views)), dim=1)


@no_autocast
def multi_positive_nce(z: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(1/|A|) Σ_{i∈A} −(1/|P(i)|) Σ_{j∈P(i)} log( exp(⟨z_i, z_j⟩/τ) / Σ_{k≠i} exp(⟨z_i, z_k⟩/τ) )``.

    ``z``: (n, d) L2-normalised rows; ``positives``: (n, n) bool, P(i) = row i (the diagonal is ignored); A the
    rows with at least one positive. The mean over anchors (instead of eqs. 4.1–4.4's sum) keeps the scale of
    :func:`tmf.ssl.losses.nt_xent`, which averages over its 2N views.
    """
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = positives & ~eye
    count = pos.sum(1)
    anchors = count > 0
    if not anchors.any():
        raise ValueError("multi_positive_nce: no view has a positive")
    per_anchor = -torch.where(pos, log_prob, 0.0).sum(1)[anchors] / count[anchors]
    return per_anchor.mean()


@no_autocast
def mm_ssl(views: list[torch.Tensor], temperature: float = 0.5) -> torch.Tensor:
    """MM-SSL loss (seed 000 eq. 4.1; Berg et al. 2023).

    ``views``: V embeddings (N, d) of the same N samples: the views of every modality (one encoder and projection
    per modality, into a common space), with or without in-modality augmented views. Each row is L2-normalised
    (z_i,m = f_m(x_i,m)/‖f_m(x_i,m)‖), and the positives P_MM(i) of a view are the V − 1 other views of its sample:
    ``(1/(V·N)) Σ_i −(1/|P_MM(i)|) Σ_{j∈P_MM(i)} log( exp(⟨z_i, z_j⟩/τ) / Σ_{k≠i} exp(⟨z_i, z_k⟩/τ) )`` over all
    V·N views. With one modality and two augmented views this is NT-Xent (SimCLR, eq. 2.4).
    """
    z = _stack(views, "mm_ssl")
    n = views[0].shape[0]
    sample = torch.arange(n, device=z.device).repeat(len(views))
    return multi_positive_nce(z, sample[:, None] == sample[None, :], temperature)


@no_autocast
def mm_supcon(views: list[torch.Tensor], labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """MM-SupCon loss (seed 000 eq. 4.4): as :func:`mm_ssl` with the positives extended to every view of every
    sample of the same class, P_MM-S(i) = P_MM(i) ∪ ⋃_{j∈P_S(i)} P_MM(j) (eq. 4.3), P_S(i) = {j : y_j = y_i, j ≠ i}
    (eq. 4.2); ``labels``: (N,) class of each sample. A negative label marks a sample without a class: its
    positives are its own other views only (its P_S is empty). With one modality and one view per sample it is
    SupCon (eq. 4.2); with every label distinct it is MM-SSL (eq. 4.1)."""
    z = _stack(views, "mm_supcon", least=1)
    n = views[0].shape[0]
    if labels.shape != (n,):
        raise ValueError(f"mm_supcon: labels must be ({n},), got {tuple(labels.shape)}")
    y = labels.to(z.device).repeat(len(views))
    sample = torch.arange(n, device=z.device).repeat(len(views))
    same_class = (y[:, None] == y[None, :]) & (y[:, None] >= 0)
    return multi_positive_nce(z, same_class | (sample[:, None] == sample[None, :]), temperature)
