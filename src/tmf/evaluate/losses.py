"""Unlabeled-data losses of the semi-supervised baselines: BerundaNet-late's auxiliary losses (seed 004 §3.2.3,
Table 3.3) and FixMatch's pseudo-label consistency (seed 004 §3.3.2), each a pure function of tensors.

BerundaNet-late minimises L = L_s(φ_s(x), y) + λ·L_u(φ_u(x), x) (eq. 3.3), with L_s the cross-entropy and L_u one
of L1 / L2 reconstruction (eqs. 3.6, 3.7), the relaxed k-means loss (eqs. 3.5, 3.8–3.11) or the Mumford–Shah
loss (eq. 3.12, Kim & Ye 2020). FixMatch minimises L_s + λ_u·L_u (eq. 3.26) with L_u the cross-entropy between
confident pseudo-labels of a weakly augmented view and the prediction on a strongly augmented one (eq. 3.25),
here per pixel. Written by hand: no library implements the relaxed k-means or the segmentation form of these
losses, and the others are one or two lines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tmf.data.minifrance import IGNORE_INDEX


def _same_shape(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: reconstruction {tuple(a.shape)} vs image {tuple(b.shape)}")


def l1_reconstruction(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1(x) = (1/N) Σ_i |x_i − x̂_i| (seed 004 eq. 3.6), averaged over pixels and channels."""
    _same_shape("l1_reconstruction", x_hat, x)
    return (x_hat.float() - x.float()).abs().mean()


def l2_reconstruction(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L2(x) = (1/N) Σ_i (x_i − x̂_i)² (seed 004 eq. 3.7), averaged over pixels and channels."""
    _same_shape("l2_reconstruction", x_hat, x)
    return (x_hat.float() - x.float()).square().mean()


def _memberships_and_image(name: str, memberships: torch.Tensor, x: torch.Tensor):
    if memberships.dim() != 4 or x.dim() != 4 or memberships.shape[0] != x.shape[0] \
            or memberships.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"{name}: memberships {tuple(memberships.shape)} and image {tuple(x.shape)} "
                         "must be (N, K, H, W) and (N, C, H, W)")
    return memberships.float(), x.float()


def cluster_centroids(memberships: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """c_k = Σ_i x_i ŷ_i^(k) / Σ_i ŷ_i^(k) per image (seed 004 eq. 3.8): ``(N, K, C)``."""
    y, xf = memberships.flatten(2), x.flatten(2)  # (N, K, P), (N, C, P)
    return torch.einsum("nkp,ncp->nkc", y, xf) / y.sum(-1, keepdim=True).clamp_min(1e-8)


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
    y, xf = _memberships_and_image("relaxed_kmeans_loss", memberships, x)
    centroids = cluster_centroids(y, xf)  # (N, K, C)
    x_c = torch.einsum("nkc,nkp->ncp", centroids, y.flatten(2))
    rec = (xf.flatten(2) - x_c).abs().mean()
    reg = (y * (1 - y)).sum(1).mean()
    return alpha_rec * rec + alpha_reg * reg


def total_variation(memberships: torch.Tensor) -> torch.Tensor:
    """Σ_k Σ_i |∇ŷ_i^(k)| per pixel: anisotropic total variation (forward differences, |∂_h ŷ| + |∂_w ŷ|, as Kim &
    Ye 2020 implement |∇·|) summed over the K maps and averaged over the H·W pixels and the batch."""
    y = memberships.float()
    dh = (y[:, :, 1:, :] - y[:, :, :-1, :]).abs().sum((1, 2, 3))
    dw = (y[:, :, :, 1:] - y[:, :, :, :-1]).abs().sum((1, 2, 3))
    return ((dh + dw) / (y.shape[-2] * y.shape[-1])).mean()


def mumford_shah_loss(memberships: torch.Tensor, x: torch.Tensor, alpha_reg: float = 0.01) -> torch.Tensor:
    """Mumford–Shah loss of a soft segmentation (seed 004 eq. 3.12; Kim & Ye 2020):

    L_MS(x) = Σ_k Σ_i |x_i − c_k|² ŷ_i^(k) + α_reg Σ_k Σ_i |∇ŷ_i^(k)|,

    with c_k the membership-weighted mean colours of eq. 3.8 (“the same notations as before”), |·|² the squared
    Euclidean norm over the colour channels and |∇·| the anisotropic total variation (:func:`total_variation`).
    Both sums are averaged over pixels instead of summed (as for the k-means regulariser: the weights then do not
    depend on the image size; our choice), and over the batch.
    """
    y, xf = _memberships_and_image("mumford_shah_loss", memberships, x)
    centroids = cluster_centroids(y, xf)  # (N, K, C)
    sq = (xf.flatten(2)[:, None] - centroids[..., None]).square().sum(2)  # (N, K, P): |x_i − c_k|²
    data = (sq * y.flatten(2)).sum(1).mean()
    return data + alpha_reg * total_variation(y)


def pseudo_labels(weak_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """FixMatch's pixel-wise pseudo-labels (seed 004 §3.3.2, eq. 3.25): q = softmax of the logits ``(N, C, H, W)``
    of the weakly augmented view, q̂ = argmax q where max q ≥ ω (``threshold``), ``IGNORE_INDEX`` elsewhere.
    Computed without gradient (the pseudo-label is a target)."""
    with torch.no_grad():
        conf, label = torch.softmax(weak_logits.detach().float(), 1).max(1)
        return torch.where(conf >= threshold, label, torch.full_like(label, IGNORE_INDEX))


def fixmatch_loss(strong_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_u = 1/(µN) Σ_i 1{max q_i ≥ ω} H(q̂_i, p_m(y | A(u_i))) (seed 004 eq. 3.25), per pixel: the cross-entropy of
    the strongly augmented view's logits ``(N, C, H, W)`` against the pseudo-labels ``targets`` ``(N, H, W)``
    (:func:`pseudo_labels`, moved by the strong augmentation's geometric part), summed over the confident pixels
    and divided by all pixels, as eq. 3.25 divides by all µN unlabeled samples, not by the confident ones."""
    if targets.shape != strong_logits.shape[:1] + strong_logits.shape[2:]:
        raise ValueError(f"fixmatch_loss: logits {tuple(strong_logits.shape)} vs pseudo-labels "
                         f"{tuple(targets.shape)}")
    ce = F.cross_entropy(strong_logits.float(), targets.long(), ignore_index=IGNORE_INDEX, reduction="sum")
    return ce / max(targets.numel(), 1)
