"""The horospherical classification head (seed 000 §5.1, eq. 5.2) and its Euclidean counterpart.

* Decoder features ``(N, C, H, W)`` → 1x1 conv → ``u ∈ R^d`` → ``x = exp₀(u)`` in the Poincaré ball (c = 1).
* One ideal prototype ``p_k ∈ S^{d-1}`` (a point of the ball's boundary) and one bias ``a_k`` per class.
* Logit (eq. 5.2): ``ξ_k(x) = −B_{p_k}(x) + a_k + φ·log(1 − ‖x‖²)``, ``φ = λ·d`` (:mod:`.ball`).
* Softmax over the K logits and cross-entropy (eq. 5.3–5.4): use ``torch.nn.functional.cross_entropy``.
* Prototypes live on ``geoopt.Sphere()`` as a ``geoopt.ManifoldParameter`` (:mod:`.prototypes` places them;
  :mod:`.optim` trains them); ``learn_prototypes=False`` freezes them (the Busemann-learning setting of
  Ghadimi Atigh et al. 2021 that ch. 5 compares with).

Numerics: the head always runs in float32 (float64 if given float64), also under bf16 autocast, because
``1 − ‖x‖²`` and ``‖p − x‖²`` lose every digit in bf16 near the boundary.
"""

from __future__ import annotations

import geoopt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .ball import to_poincare
from .prototypes import _check_n_dim, make_prototypes

HEADS: tuple[str, ...] = ("euclidean", "horospherical")


class HorosphericalHead(nn.Module):
    """Per-pixel horospherical classifier (seed 000 §5.1, eq. 5.2), for the last layer of a decoder.

    ``forward(features (N, in_channels, H, W)) → logits (N, n_classes, H, W)`` (float32, also under autocast).

    Args:
        in_channels: channels of the decoder features.
        n_classes: number of classes K (14 scored MiniFrance classes).
        dim: dimension d of the Poincaré ball (2, 3, 128 in seed 000 Table 5.3).
        prototypes: ``"smart"`` (default), ``"uniform"``, ``"random"``, or a (K, d) array of unit vectors.
        phi_lambda: λ in ``φ = λ·d`` (0.5 for image segmentation in seed 000 §5.3.3). The φ term is the same
            for every class, so it cancels in the softmax: it changes the logits' values, never the probabilities,
            the cross-entropy or its gradients (tested).
        tree_distance: (K, K) label-tree path lengths for ``smart`` (default: the UrbanAtlas tree if K = 14).
        seed: seed of the prototype initialisation (the conv weights follow torch's global RNG).
        learn_prototypes: train the prototypes with Riemannian Adam (seed 000 §5.1, default) or keep them
            fixed (a buffer; the Busemann-learning setting).
        bias: learn the per-class bias a_k (App. A.1 ablates it; default on).
        clip_r: optional Euclidean feature clipping before exp₀ (default off; see :func:`to_poincare`).
        prototype_steps: Riemannian-Adam steps of the Wang–Isola minimisation for uniform/smart.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        dim: int,
        prototypes: str | np.ndarray | torch.Tensor = "smart",
        phi_lambda: float = 0.5,
        tree_distance: np.ndarray | None = None,
        seed: int = 0,
        learn_prototypes: bool = True,
        bias: bool = True,
        clip_r: float | None = None,
        prototype_steps: int = 1000,
    ):
        super().__init__()
        _check_n_dim(n_classes, dim)
        if phi_lambda < 0:
            raise ValueError(f"phi_lambda must be >= 0, got {phi_lambda}")
        if isinstance(prototypes, str):
            init = make_prototypes(prototypes, n_classes, dim, tree_distance, seed, prototype_steps)
            self.prototype_init = prototypes
        else:
            init = np.asarray(prototypes.detach().cpu() if torch.is_tensor(prototypes) else prototypes)
            if init.shape != (n_classes, dim):
                raise ValueError(f"prototypes array must be ({n_classes}, {dim}), got {init.shape}")
            init = init / np.linalg.norm(init, axis=1, keepdims=True)
            self.prototype_init = "given"
        self.in_channels, self.n_classes, self.dim = int(in_channels), int(n_classes), int(dim)
        self.phi_lambda = float(phi_lambda)
        self.phi = self.phi_lambda * self.dim  # φ(d) = λ·d, seed 000 §5.1
        self.clip_r = clip_r
        self.learn_prototypes = bool(learn_prototypes)
        self.embed = nn.Conv2d(in_channels, dim, kernel_size=1)
        p = torch.as_tensor(init, dtype=torch.float32)
        if self.learn_prototypes:
            self.prototypes = geoopt.ManifoldParameter(p, manifold=geoopt.Sphere())
        else:
            self.register_buffer("prototypes", p)
        if bias:
            self.bias = nn.Parameter(torch.zeros(n_classes))
        else:
            self.register_buffer("bias", torch.zeros(n_classes))

    def _check(self, features: torch.Tensor) -> torch.dtype:
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"HorosphericalHead expects features (N, {self.in_channels}, H, W), got {tuple(features.shape)}"
            )
        return torch.float64 if features.dtype == torch.float64 else torch.float32

    def _tangent(self, features: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        return F.conv2d(features.to(dt), self.embed.weight.to(dt), self.embed.bias.to(dt))

    def embed_ball(self, features: torch.Tensor) -> torch.Tensor:
        """Ball embeddings ``x = exp₀(conv1x1(features))``, (N, H, W, d), float32/64, by geoopt's
        ``expmap0`` + ``project`` (:func:`to_poincare`); for analysis and plots."""
        dt = self._check(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return to_poincare(self._tangent(features, dt).movedim(1, -1), self.clip_r)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, H, W) of eq. 5.2 at ``x = exp₀(u)``, ``u = conv1x1(features)``.

        Same values as ``horospherical_logits(embed_ball(features), ...)`` (tested), computed in the
        channel layout without (N, H, W, d) temporaries: ``‖x‖ = r = min(tanh ‖u‖, 1 − eps)`` (geoopt's
        projection radius), ``x = (r/‖u‖)·u``, ``⟨p_k, x⟩ = (r/‖u‖)·conv1x1(u; p_k)``, so that
        ``ξ_k = −log(‖p_k‖² − 2⟨p_k, x⟩ + r²) + (1 + φ)·log(1 − r²) + a_k``.
        """
        dt = self._check(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            u = self._tangent(features, dt)
            n = u.norm(dim=1, keepdim=True).clamp_min(1e-15)
            n_eff = n if self.clip_r is None else n.clamp_max(self.clip_r)
            maxnorm = 1.0 - (4e-3 if dt == torch.float32 else 1e-5)  # as geoopt's PoincareBall.projx
            r = torch.tanh(n_eff).clamp_max(maxnorm)
            p = self.prototypes.to(dt)
            pu = F.conv2d(u, p[:, :, None, None])  # ⟨p_k, u⟩, (N, K, H, W)
            sq = (p * p).sum(1)[None, :, None, None] - 2.0 * (r / n) * pu + r * r
            one_minus = (1.0 - r * r).clamp_min(1e-15)
            return (
                -torch.log(sq.clamp_min(1e-15))
                + (1.0 + self.phi) * torch.log(one_minus)
                + self.bias.to(dt)[None, :, None, None]
            )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, n_classes={self.n_classes}, phi={self.phi:g} (lambda={self.phi_lambda:g}), "
            f"prototypes={self.prototype_init}, learn_prototypes={self.learn_prototypes}, clip_r={self.clip_r}"
        )


class EuclideanHead(nn.Module):
    """Euclidean counterpart at the same embedding dimension: 1x1 conv to ``dim``, then a linear classifier
    ``dim → n_classes`` (a 1x1 conv). The "Euclidean" rows of seed 000 Tables 5.1 and 5.3."""

    def __init__(self, in_channels: int, n_classes: int, dim: int):
        super().__init__()
        _check_n_dim(n_classes, dim)
        self.in_channels, self.n_classes, self.dim = int(in_channels), int(n_classes), int(dim)
        self.embed = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.classifier = nn.Conv2d(dim, n_classes, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"EuclideanHead expects features (N, {self.in_channels}, H, W), got {tuple(features.shape)}"
            )
        return self.classifier(self.embed(features))


def make_head(
    kind: str, in_channels: int, n_classes: int, dim: int, **kwargs
) -> HorosphericalHead | EuclideanHead:
    """``kind`` in :data:`HEADS`; ``kwargs`` go to :class:`HorosphericalHead` (refused for ``euclidean``)."""
    if kind == "horospherical":
        return HorosphericalHead(in_channels, n_classes, dim, **kwargs)
    if kind == "euclidean":
        if kwargs:
            raise ValueError(f"head 'euclidean' takes no options, got {sorted(kwargs)}")
        return EuclideanHead(in_channels, n_classes, dim)
    raise ValueError(f"head must be one of {HEADS}, got {kind!r}")
