"""The optimisers of a segmentation network: AdamW, plus Riemannian Adam for the prototypes of a horospherical head.

Seed 000 §5.1 trains the ideal prototypes "using stochastic Riemannian gradient descent ... Riemannian Adam ...
keeps prototypes on the hypersphere". Everything else is an ordinary network, and a head comparison
(horospherical vs Euclidean, seed 000 Tables 5.1, 5.3) must train it alike whatever the head: so the Euclidean
parameters get ``torch.optim.AdamW`` (decoupled weight decay), exactly as a network with a Euclidean head, and
only the sphere parameters (``geoopt.ManifoldParameter``) get ``geoopt.optim.RiemannianAdam``, without weight
decay (it has no meaning on the sphere). One ``RiemannianAdam`` over the whole model would instead be Adam with
L2 added to the gradient for the shared network, a different optimiser from the Euclidean head's AdamW.

It lives outside :mod:`tmf.models.hyperbolic` (which re-exports it) and imports geoopt only for a network that has
sphere parameters: such a parameter exists only once a head has imported geoopt, so every other fine-tuning job
is spared its import (about 0.5 s, mostly scipy.optimize).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch
from torch import nn


def _as_groups(params: nn.Module | Iterable[torch.nn.Parameter] | Iterable[dict]) -> list[dict]:
    items = list(params.parameters() if isinstance(params, nn.Module) else params)
    if items and all(isinstance(g, dict) for g in items):
        return [dict(g) for g in items]
    return [{"params": items}]


def make_optimizers(
    params: nn.Module | Iterable[torch.nn.Parameter] | Iterable[dict],
    lr: float,
    weight_decay: float = 0.0,
    prototype_lr: float | None = None,
) -> list[torch.optim.Optimizer]:
    """``[AdamW over the Euclidean parameters, RiemannianAdam over the sphere parameters]`` (either left out when
    it has nothing to train).

    ``params``: a model, an iterable of parameters, or parameter-group dicts (their other keys, such as a group
    ``lr`` or ``name``, are kept; the sphere parameters of every group go to one group ``name="prototypes"`` with
    learning rate ``prototype_lr`` or ``lr`` and no weight decay). Frozen parameters are left out. Step, zero and
    schedule every optimiser of the list.
    """
    geoopt = sys.modules.get("geoopt")  # not loaded: no parameter can be a ManifoldParameter
    on_sphere = geoopt.ManifoldParameter if geoopt is not None else ()
    euclid, sphere = [], []
    for g in _as_groups(params):
        trainable = [p for p in g["params"] if p.requires_grad]
        sphere += [p for p in trainable if isinstance(p, on_sphere)]
        flat = [p for p in trainable if not isinstance(p, on_sphere)]
        if flat:
            euclid.append({**g, "params": flat})
    opts: list[torch.optim.Optimizer] = []
    if euclid:
        opts.append(torch.optim.AdamW(euclid, lr=lr, weight_decay=weight_decay))
    if sphere:
        group = {"name": "prototypes", "params": sphere, "lr": lr if prototype_lr is None else prototype_lr,
                 "weight_decay": 0.0}
        opts.append(geoopt.optim.RiemannianAdam([group], lr=lr))
    if not opts:
        raise ValueError("make_optimizers: no trainable parameters")
    return opts
