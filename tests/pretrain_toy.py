"""Helpers for the pretraining-engine tests: a tiny packed tinyMiniFrance and a small SimCLR-like method.

The method is independent of tmf.ssl.methods on purpose: the engine's tests check the engine (feed,
augmentation, optimizer, checkpoints, data parallelism), not a method. It has a projection head with batch
norm (to exercise synchronised BN), an NT-Xent loss over the all-gathered global batch (written here from the
formula, SPEC.md §4) and an EMA copy of the head kept in buffers (to exercise target state in checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from tmf.ssl import distributed as D


@dataclass(frozen=True)
class CropSpec:
    size_factor: float
    scale: tuple[float, float]


@dataclass
class StepOutput:
    loss: torch.Tensor
    z_a: torch.Tensor
    z_b: torch.Tensor
    logs: dict = field(default_factory=dict)


class ToySimCLR(nn.Module):
    name = "toy"

    def __init__(self, backbone, dim: int = 16, tau: float = 0.5, multicrop: bool = False):
        super().__init__()
        self.backbone = backbone
        backbone.fc.requires_grad_(False)  # as the registry's methods do (tmf.ssl.method_base.SSLMethod)
        self.head = nn.Sequential(nn.Linear(backbone.out_dim, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                  nn.Linear(32, dim))
        self.tau = tau
        self.multicrop = multicrop
        self.register_buffer("ema_w", self.head[3].weight.detach().clone())

    def crop_specs(self):
        specs = [CropSpec(1.0, (0.3, 1.0)), CropSpec(1.0, (0.3, 1.0))]
        if self.multicrop:
            specs.append(CropSpec(0.5, (0.05, 0.3)))
        return specs

    def forward(self, views):
        z = [F.normalize(self.head(self.backbone.features(v)).float(), dim=1) for v in views[:2]]
        za, zb = D.gather(z[0]), D.gather(z[1])
        n = za.shape[0]
        zz = torch.cat([za, zb])
        sim = zz @ zz.T / self.tau
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
        loss = F.cross_entropy(sim, target)
        return StepOutput(loss, za, zb, {})

    @torch.no_grad()
    def update_targets(self, progress: float):
        self.ema_w.mul_(0.9).add_(0.1 * self.head[3].weight)


def make_packed(root, n_per_split=(8, 8, 4), size=32, seed=0, dem=False):
    """A packed tinyMiniFrance (uint8 N×S×S×3 smooth random images, labels) and its manifest (docs/file-formats.md).
    With ``dem``, elevation too (``dem.npy``, ``dem_valid.npy`` and the manifest's elevation columns): a height that
    follows the label (2 m per id) on a per-row slope, with an invalid 3×3 patch in the first row."""
    rng = np.random.default_rng(seed)
    n = sum(n_per_split)
    coarse = rng.integers(0, 256, size=(n, size // 8, size // 8, 3)).astype(np.float32)
    img = coarse.repeat(8, axis=1).repeat(8, axis=2) + rng.normal(0, 12, size=(n, size, size, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    labels = (img[..., 0] // 32).astype(np.uint8)  # ids 0..7
    packed = root / "packed"
    packed.mkdir(parents=True, exist_ok=True)
    np.save(packed / "images.npy", img)
    np.save(packed / "labels.npy", labels)
    splits = sum(([s] * k for s, k in zip(("labeled", "unlabeled", "test"), n_per_split, strict=True)), [])
    counts = np.stack([np.bincount(lab.ravel(), minlength=16) for lab in labels])
    manifest = pd.DataFrame({"id": [f"Nice__t__r0_c{i}" for i in range(n)], "city": "Nice", "split": splits,
                             "tile": "t", "row_off": 0, "col_off": np.arange(n) * size, "height": size, "width": size,
                             "image": "", "label": "", "has_label": 1,
                             **{f"count_{i}": counts[:, i] for i in range(16)}})
    if dem:
        ramp = np.arange(size, dtype=np.float32)[None, None, :] * rng.uniform(-0.5, 0.5, (n, 1, 1))
        z = (100.0 + 2.0 * labels + ramp).astype(np.float32)
        valid = np.ones_like(labels)
        valid[0, :3, :3] = 0
        z[valid == 0] = 0.0
        np.save(packed / "dem.npy", z)
        np.save(packed / "dem_valid.npy", valid)
        zv = np.where(valid == 1, z, np.nan)
        manifest = manifest.assign(dem=[f"labeled/Nice/RGEALTI/{i}_RGEALTI.tif" for i in manifest["id"]], has_dem=1,
                                   dem_min=np.nanmin(zv, (1, 2)).round(3), dem_mean=np.nanmean(zv, (1, 2)).round(3),
                                   dem_max=np.nanmax(zv, (1, 2)).round(3), dem_valid=valid.mean((1, 2)).round(6))
    manifest.to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv", packed, img


def toy_cfg(**over):
    cfg = {
        "methods": ["toy"], "seeds": [0], "backbone": "resnet18", "splits": ["labeled", "unlabeled"],
        "crop_size": 32, "batch_size": 8, "epochs": 1, "steps": 4, "optimizer": "lars", "lr": 0.3,
        "final_lr_ratio": 0.0, "weight_decay": 1e-6, "momentum": 0.9, "warmup_epochs": 0, "warmup_steps": 1,
        "augment": {}, "device_cache": "auto", "held_batch": 16, "log_every": 1, "checkpoint_every": 2,
        "ddp": False, "nproc": 1, "method_params": {},
    }
    cfg.update(over)
    return cfg
