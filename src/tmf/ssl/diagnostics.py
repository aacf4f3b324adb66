"""Embedding diagnostics of pretraining: alignment, uniformity (Wang & Isola 2020; seed 000 §3.2, Table 3.3) and
effective rank (Roy & Vetterli 2007; the "embedding rank" of seed 002 Table III), on a fixed held batch."""

from __future__ import annotations

import torch

from .losses.contrastive import alignment, uniformity

__all__ = ["alignment", "uniformity", "effective_rank", "embedding_diagnostics", "held_batch_diagnostics"]

DIAGNOSTIC_SEED = 20_231_123  # the held batch and its views are the same for every method and seed


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


def embedding_diagnostics(h_a: torch.Tensor, h_b: torch.Tensor, t: float = 2.0) -> dict[str, float]:
    """Alignment and uniformity (Wang & Isola 2020, α = 2, t = 2) of the L2-normalised features of two views,
    and the effective rank (Roy & Vetterli 2007) of the first view's feature matrix."""
    return {"alignment": float(alignment(h_a, h_b)), "uniformity": float(uniformity(h_a, t=t)),
            "effective_rank": float(effective_rank(h_a)), "n_held": int(h_a.shape[0]), "feature_dim": int(h_a.shape[1])}


@torch.no_grad()
def held_batch_diagnostics(method, feed, crop_size: int, aug, n_held: int, device: torch.device,
                           modal=None) -> dict[str, float]:
    """:func:`embedding_diagnostics` of the backbone's pooled features on a fixed held batch (the same images and
    views for every method and seed), the model in eval mode (batch-norm running statistics). ``modal``: a
    multi-modal method's (modalities, elevation, reference); its backbone is its first modality's encoder, fed
    that modality's views."""
    from tmf import device as devmod
    from tmf.ssl.augment import make_views
    from tmf.ssl.views import view_dtype_for

    g = torch.Generator().manual_seed(DIAGNOSTIC_SEED)
    n = min(n_held, feed.n)
    pos = torch.randperm(feed.n, generator=g)[:n]
    if feed.on_device:
        pos = pos.to(device)
    ga = torch.Generator(device=device).manual_seed(DIAGNOSTIC_SEED)

    class _Spec:
        size_factor, scale = 1.0, (0.2, 1.0)

    mf = devmod.memory_format(device)
    kw = dict(memory_format=mf, out_dtype=view_dtype_for(device))
    if modal is not None:
        from tmf.ssl.multimodal import modal_views

        modalities, elevation, reference = modal
        va, vb = modal_views(feed.gather_arrays(pos), modalities, [_Spec, _Spec], crop_size, aug, ga, elevation,
                             reference, **kw)[modalities[0]]
    else:
        va, vb = make_views(feed.gather(pos), [_Spec, _Spec], crop_size, aug, ga, **kw)
    backbone = method.backbone
    was = backbone.training
    backbone.eval()
    try:
        feats = []
        for v in (va, vb):
            chunks = []
            for i in range(0, n, 256):
                with devmod.autocast(device):
                    chunks.append(backbone.features(v[i:i + 256]).float())
            feats.append(torch.cat(chunks))
    finally:
        backbone.train(was)
    return embedding_diagnostics(feats[0].cpu(), feats[1].cpu())
