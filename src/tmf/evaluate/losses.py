"""Auxiliary unsupervised losses of BerundaNet-late (seed 004 §3.2.3).

The semi-supervised objective is L = L_s(φ_s(x), y) + λ·L_u(φ_u(x), x) (eq. 3.3), with L_s the cross-entropy
and L_u one of these. Written by hand: no library implements the relaxed k-means loss, and L1 is one line.
"""

from __future__ import annotations

import torch


def l1_reconstruction(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1(x) = (1/N) Σ_i |x_i − x̂_i| (seed 004 eq. 3.6), averaged over pixels and channels."""
    if x_hat.shape != x.shape:
        raise ValueError(f"l1_reconstruction: reconstruction {tuple(x_hat.shape)} vs image {tuple(x.shape)}")
    return (x_hat.float() - x.float()).abs().mean()


def relaxed_kmeans_loss(memberships: torch.Tensor, x: torch.Tensor, alpha_rec: float = 1.0,
                        alpha_reg: float = 1.0) -> torch.Tensor:
    """Relaxed k-means loss for unsupervised image segmentation (seed 004 §3.2.3, eqs. 3.5, 3.8–3.11).

    ``memberships`` ŷ ``(N, K, H, W)`` are soft cluster memberships (a softmax over K), ``x`` the image
    ``(N, C, H, W)``. Per image:

    - centroids c_k = Σ_i x_i ŷ_i^(k) / Σ_i ŷ_i^(k)                               (eq. 3.8)
    - quantised image x_c = Σ_k c_k ŷ^(k)                                           (eq. 3.9)
    - L_rec = L1(x, x_c) = mean_i |x_i − x_c,i|                                      (eq. 3.10)
    - L_reg = Σ_k ŷ^(k)(1 − ŷ^(k)), averaged over pixels (eq. 3.11 sums over pixels; we average so the weight
      does not depend on the image size: our choice)
    - L_u = α_rec L_rec + α_reg L_reg                                                (eq. 3.5)
    """
    if memberships.dim() != 4 or x.dim() != 4 or memberships.shape[0] != x.shape[0] \
            or memberships.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"relaxed_kmeans_loss: memberships {tuple(memberships.shape)} and image {tuple(x.shape)} "
                         "must be (N, K, H, W) and (N, C, H, W)")
    y = memberships.float().flatten(2)  # (N, K, P)
    xf = x.float().flatten(2)  # (N, C, P)
    centroids = torch.einsum("nkp,ncp->nkc", y, xf) / y.sum(-1, keepdim=True).clamp_min(1e-8)  # (N, K, C)
    x_c = torch.einsum("nkc,nkp->ncp", centroids, y)
    rec = (xf - x_c).abs().mean()
    reg = (y * (1 - y)).sum(1).mean()
    return alpha_rec * rec + alpha_reg * reg
