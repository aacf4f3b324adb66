"""Step 2 of the appearance analysis: t-SNE of all sub-tiles' features to 2-D (seed 004 §2.4.1, "Step 2").

t-SNE (van der Maaten & Hinton 2008) matches Gaussian affinities p_ij of the features, calibrated to a
perplexity, with Student-t (one degree of freedom) affinities q_ij ∝ (1 + ||y_i − y_j||²)^-1 of the 2-D points,
minimising KL(P || Q). openTSNE (Poličar et al. 2024) does it with FFT-accelerated interpolation of the
repulsive forces (Linderman et al. 2019). The thesis gives no parameters and picked one embedding by hand;
we expose them and run several seeds (SPEC.md §3.2). The default initialisation is random, so that the seeds are
independent layouts and the spread over them is t-SNE's: with ``initialization="pca"`` seeds differ only by
openTSNE's jitter (tests/test_appearance.py measures both).
"""

from __future__ import annotations

import numpy as np


def pca_reduce(features: np.ndarray, n_components: int) -> np.ndarray:
    """Centre the features and project them on their first ``n_components`` principal axes (exact SVD,
    deterministic; signs fixed so that each axis' largest loading is positive). 0 or ≥ D: centred features."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if n_components <= 0 or n_components >= min(x.shape):
        return x
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:n_components]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    return x @ (vt * signs[:, None]).T


def tsne_embed(
    features: np.ndarray,
    seed: int,
    pca_dims: int = 50,
    perplexity: float = 30.0,
    early_exaggeration_iter: int = 250,
    early_exaggeration: float | str = "auto",
    n_iter: int = 500,
    learning_rate: float | str = "auto",
    initialization: str = "random",
    metric: str = "euclidean",
    neighbors: str = "exact",
    negative_gradient_method: str = "fft",
    n_jobs: int = 1,
) -> np.ndarray:
    """2-D t-SNE embedding (float32 ``(N, 2)``) of ``features`` ``(N, D)`` with openTSNE (FFT gradients by
    default; ``bh`` = Barnes-Hut, faster for a few thousand points).

    The perplexity is lowered to (N − 1) / 3 when N is too small for it (openTSNE's own bound).
    """
    from openTSNE import TSNE

    x = np.asarray(features)
    if x.ndim != 2 or len(x) < 4:
        raise ValueError(f"t-SNE needs a (N, D) feature matrix with N ≥ 4, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    z = pca_reduce(x, pca_dims)
    perplexity = float(min(perplexity, (len(z) - 1) / 3))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        early_exaggeration_iter=early_exaggeration_iter,
        early_exaggeration=early_exaggeration,
        n_iter=n_iter,
        learning_rate=learning_rate,
        initialization=initialization,
        metric=metric,
        neighbors=neighbors,
        negative_gradient_method=negative_gradient_method,
        n_jobs=n_jobs,
        random_state=seed,
        verbose=False,
    )
    return np.asarray(tsne.fit(z), dtype=np.float32)
