"""HyDeS: hyperspherical density shaping with a von Mises-Fisher kernel density (seed 002 §III, eq. 1–4).

The extraction of seed 002 lost its formulas; this is the reconstruction of SPEC.md §4. With V views per image
(DINO multi-crop: 2 global then 6 local) the M = V·N L2-normalised embeddings z_1..z_M and the vMF kernel
K_κ(x, y) = C_d(κ) exp(κ xᵀy) (eq. 1) give the kernel-density entropy estimates

- global (eq. 2): Ĥ_g = −mean_i log mean_{j ≤ M} K_κ(z_i, z_j), over every view of the batch;
- local (eq. 3):  Ĥ_l = −mean_i log mean_{j ∈ img(i)} K_κ(z_i, z_j), over the V views of z_i's image

(the kernel sums include j = i, as a plain KDE). HyDeS maximises Ĥ_g − w_l Ĥ_l (eq. 4; w_l = 1 is the mutual
information between views), so the loss is ``w_l Ĥ_l − Ĥ_g``, computed with logsumexp. The vMF normaliser
contributes the θ-independent (1 − w_l) log C_d(κ), which is dropped (it cancels for w_l = 1). With w_l = 1 the
loss equals the multi-positive InfoNCE ``−mean_i log(Σ_{j∈img(i)} e^{κ s_ij} / Σ_j e^{κ s_ij})`` with
temperature 1/κ, minus log N.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._util import full, no_autocast


@no_autocast
def hydes(views: list[torch.Tensor] | tuple[torch.Tensor, ...], kappa: float = 10.0,
          local_weight: float = 1.0) -> torch.Tensor:
    """HyDeS loss ``w_l Ĥ_l − Ĥ_g`` (up to the constant (1 − w_l) log C_d(κ)) for a list of V ≥ 2 views, each
    (N, d) with row i of every view the same image. κ: vMF concentration; ``local_weight``: w_l."""
    if len(views) < 2:
        raise ValueError(f"hydes: needs at least 2 views, got {len(views)}")
    shape = views[0].shape
    if len(shape) != 2 or any(v.shape != shape for v in views):
        raise ValueError(f"hydes: every view must be (N, d) of the same shape, got {[tuple(v.shape) for v in views]}")
    if kappa <= 0:
        raise ValueError(f"hydes: kappa must be > 0, got {kappa}")
    n_views, n = len(views), shape[0]
    z = F.normalize(full(torch.cat(list(views))), dim=1)  # (V·N, d), row v·N + i = view v of image i
    logits = kappa * (z @ z.T)
    image = torch.arange(n, device=z.device).repeat(n_views)
    same = image[:, None] == image[None, :]
    m = n_views * n
    log_mean_global = torch.logsumexp(logits, dim=1) - math.log(m)
    log_mean_local = torch.logsumexp(logits.masked_fill(~same, float("-inf")), dim=1) - math.log(n_views)
    h_global = -log_mean_global.mean()
    h_local = -log_mean_local.mean()
    return local_weight * h_local - h_global
