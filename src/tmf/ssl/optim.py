"""Optimizers of the pretraining engine (the learning-rate schedule is :func:`tmf.schedule.lr_at`).

* SGD with momentum and AdamW: torch's.
* LARS (You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks", eq. 6–7; in the form
  used by SimCLR and BYOL): written here because torch ships none. For each parameter w with gradient g and
  weight decay λ, the local learning rate is ``η·‖w‖ / (‖g‖ + λ‖w‖)`` (η the trust coefficient, 1 when either
  norm is 0), the update direction ``u = trust·(g + λw)``, and momentum ``v ← μv + u; w ← w − lr·v``.
  Biases and batch-norm parameters are excluded from both weight decay and the adaptation (SimCLR/BYOL).
"""

from __future__ import annotations

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017). Parameter groups with ``lars=False`` (biases, batch-norm) get plain SGD with
    momentum and no weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, lars: bool = True):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, lars=lars))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            wd, mom = group["weight_decay"], group["momentum"]
            if group["lars"]:
                w_norm = torch._foreach_norm(params)
                g_norm = torch._foreach_norm(grads)
                updates = []
                for p, g, wn, gn in zip(params, grads, w_norm, g_norm, strict=True):
                    denom = gn + wd * wn
                    trust = torch.where((wn > 0) & (gn > 0), group["trust_coefficient"] * wn / denom,
                                        torch.ones_like(wn))
                    updates.append((g + wd * p) * trust)
            else:
                updates = [g + wd * p if wd else g for p, g in zip(params, grads, strict=True)]
            bufs = []
            for p, u in zip(params, updates, strict=True):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = u.detach().clone()
                else:
                    state["momentum_buffer"].mul_(mom).add_(u)
                bufs.append(state["momentum_buffer"])
            torch._foreach_add_(params, bufs, alpha=-group["lr"])
        return loss


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay; biases and normalisation parameters (ndim ≤ 1) without decay (and without
    LARS adaptation). Frozen parameters are left out."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay, lars=True),
            dict(params=no_decay, weight_decay=0.0, lars=False)]


def build_optimizer(module: nn.Module, name: str, lr: float, weight_decay: float, momentum: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    groups = param_groups(module, weight_decay)
    foreach = True
    if name == "sgd":
        for g in groups:
            g.pop("lars")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, foreach=foreach)
    if name == "adamw":
        for g in groups:
            g.pop("lars")
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=foreach)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    raise ValueError(f"pretrain.optimizer: unknown optimizer {name!r}; expected sgd, lars or adamw")
