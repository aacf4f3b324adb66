"""What every pretraining method is made of: crop specs, step outputs, projection heads, EMA targets, queues and
the :class:`SSLMethod` base class (the methods themselves and their registry: :mod:`tmf.ssl.methods`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CropSpec:
    """One view per image: crop side = round(size_factor · pretrain.crop_size); ``scale``: area fraction range of
    the random resized crop."""

    size_factor: float
    scale: tuple[float, float]


@dataclass
class StepOutput:
    """``loss``: the scalar to minimise; ``z_a``, ``z_b``: L2-normalised embeddings (detached) of the first two
    views, for diagnostics; ``logs``: extra scalars (floats or 0-dim detached tensors, read only when logged)."""

    loss: torch.Tensor
    z_a: torch.Tensor
    z_b: torch.Tensor
    logs: dict[str, Any] = field(default_factory=dict)


TWO_VIEWS = (CropSpec(1.0, (0.2, 1.0)), CropSpec(1.0, (0.2, 1.0)))


def mlp(in_dim: int, hidden_dim: int, out_dim: int, n_layers: int = 2, batch_norm: bool = False) -> nn.Sequential:
    """Projection / prediction head: (n_layers − 1) × [Linear → (BatchNorm1d) → ReLU] then Linear.
    SimCLR / MoCo-v2: 2 layers without BN; BYOL: 2 layers with BN; Barlow Twins: 3 layers with BN."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_layers - 1):
        layers.append(nn.Linear(d, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        d = hidden_dim
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """target ← m · target + (1 − m) · online, parameter by parameter (buffers are the target's own)."""
    t_params = list(target.parameters())
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - momentum)


def unit_rows(z: torch.Tensor) -> torch.Tensor:
    """The rows of ``z`` L2-normalised, detached, in float32 (the embeddings a :class:`StepOutput` carries)."""
    return F.normalize(z.detach().float(), dim=1)


class SSLMethod(nn.Module):
    """Base class: a backbone and the method's parameters ``cfg`` (defaults filled). The backbone's ImageNet
    classifier (``fc``, kept for torchvision-compatible keys) is frozen here, the one place that decides it."""

    name: str = ""
    modalities: tuple[str, ...] = ("rgb",)  # what its views are made of (tmf.ssl.multimodal for the others)

    def __init__(self, backbone: nn.Module, cfg: dict):
        super().__init__()
        self.backbone = backbone
        self.cfg = dict(cfg)
        if isinstance(getattr(backbone, "fc", None), nn.Module):
            backbone.fc.requires_grad_(False)  # the ImageNet classifier takes no part in self-supervised training
        self.feat_dim = int(backbone.out_dim)

    def crop_specs(self) -> list[CropSpec]:
        return list(TWO_VIEWS)

    def view_augment(self, aug):
        """The augmentation its views get (``pretrain.augment``; the ⋆ MM-SSL method switches it off)."""
        return aug

    def encoder_payload(self, arch: str) -> dict:
        """What ``encoder.pt`` holds (docs/file-formats.md): the backbone's ``state_dict``, torchvision keys."""
        return {"arch": arch, "method": self.name,
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.backbone.state_dict().items()}}

    def update_targets(self, progress: float) -> None:
        """Called after each optimizer step with progress = step / total steps in [0, 1]."""

    def _check_views(self, views: list[torch.Tensor]) -> None:
        n_specs = len(self.crop_specs())
        if len(views) != n_specs:
            raise ValueError(f"{self.name}: expected {n_specs} views (one per crop spec), got {len(views)}")


class QueuedMethod(SSLMethod):
    """EMA key encoder (constant momentum) and ring-buffer queues of normalised keys (registered buffers, so they
    follow the device and the checkpoint)."""

    def _init_queue(self, name: str, size: int, dim: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.register_buffer(f"{name}_queue", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.register_buffer(f"{name}_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _enqueue(self, name: str, keys: torch.Tensor) -> None:
        queue: torch.Tensor = getattr(self, f"{name}_queue")
        ptr: torch.Tensor = getattr(self, f"{name}_ptr")
        size = queue.shape[0]
        keys = keys.detach().to(queue.dtype)[-size:]  # a batch larger than the queue keeps its last keys
        idx = (ptr + torch.arange(keys.shape[0], device=queue.device)) % size  # on the device: no host sync
        queue.index_put_((idx,), keys)
        ptr.add_(keys.shape[0]).remainder_(size)
