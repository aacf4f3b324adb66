"""The optimiser of a network with a horospherical head: Riemannian Adam (geoopt) for the sphere parameters."""

from __future__ import annotations

from collections.abc import Iterable

import geoopt
import torch
from torch import nn


def riemannian_adam(
    params: nn.Module | Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    prototype_lr: float | None = None,
) -> geoopt.optim.RiemannianAdam:
    """``geoopt.optim.RiemannianAdam`` over a whole model (seed 000 §5.1, §5.3.2).

    Two groups: manifold parameters (the prototypes on ``geoopt.Sphere``; learning rate ``prototype_lr``
    or ``lr``; no weight decay, which has no meaning on the sphere) and every other trainable parameter
    (``lr``, ``weight_decay``, treated exactly as ``torch.optim.Adam`` does, L2 added to the gradient).
    Riemannian Adam keeps the prototypes on the sphere by retraction after each step.
    """
    plist = list(params.parameters() if isinstance(params, nn.Module) else params)
    manifold = [p for p in plist if p.requires_grad and isinstance(p, geoopt.ManifoldParameter)]
    euclid = [p for p in plist if p.requires_grad and not isinstance(p, geoopt.ManifoldParameter)]
    groups = []
    if euclid:
        groups.append({"params": euclid, "weight_decay": weight_decay})
    if manifold:
        groups.append({"params": manifold, "weight_decay": 0.0, "lr": lr if prototype_lr is None else prototype_lr})
    if not groups:
        raise ValueError("riemannian_adam: no trainable parameters")
    return geoopt.optim.RiemannianAdam(groups, lr=lr)
