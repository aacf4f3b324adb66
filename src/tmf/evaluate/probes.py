"""Frozen-encoder probes (SPEC.md §5; seed 000 §4.1 linear protocol; seed 001 evaluation protocols).

- ``linear``: a per-pixel linear head on a frozen encoder. Features are the last block (stride 32) or a hypercolumn
  of the four stages (strides 4–32, upsampled to stride 4 and concatenated: 960 channels for a ResNet-18). The
  head is a 1×1 convolution trained with cross-entropy; its logits are upsampled (bilinear) to the label size.
  Upsampling the logits instead of the features gives the same function (both maps are linear, so they commute)
  at a fraction of the cost. When the training features fit in ``cache_mb`` they are computed once (no
  augmentation); otherwise each batch goes through the frozen encoder.
- ``knn`` / ``logreg``: scene-level check on each sub-tile's dominant scored class, with the global-average-pooled
  last block as the feature: scikit-learn's ``KNeighborsClassifier`` (cosine) and ``LogisticRegression``
  (on standardised features).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tmf.data.minifrance import SCORED_IDS
from tmf.data.packed import Packed
from tmf.device import autocast, memory_format
from tmf.evaluate.data import dominant_class, nested_fraction
from tmf.evaluate.engine import (
    N_SCORED,
    TrainPool,
    example_rows,
    masked_cross_entropy,
    predict_dense,
    score_cities,
    to_input,
)
from tmf.evaluate.metrics import confusion_matrix
from tmf.evaluate.testsets import Fold
from tmf.schedule import lr_at

log = logging.getLogger(__name__)


class FrozenFeatures(nn.Module):
    """Frozen encoder → ``last`` block or ``hypercolumn`` of stages (at stride 4 for the hypercolumn)."""

    def __init__(self, backbone: nn.Module, kind: str = "hypercolumn"):
        super().__init__()
        if kind not in ("hypercolumn", "last"):
            raise ValueError(f"evaluate.linear.features must be 'hypercolumn' or 'last', got {kind!r}")
        self.backbone = backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.kind = kind
        ch = backbone.stage_channels
        self.out_channels = sum(ch) if kind == "hypercolumn" else ch[-1]

    def train(self, mode: bool = True):  # the encoder stays in eval mode (frozen BN statistics)
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stage outputs the features are made of (what the training cache stores: ~8x smaller than the
        hypercolumn)."""
        maps = self.backbone.feature_maps(x)
        return maps[-1:] if self.kind == "last" else maps

    def combine(self, maps: list[torch.Tensor]) -> torch.Tensor:
        if self.kind == "last":
            return maps[-1]
        size = maps[0].shape[-2:]
        return torch.cat([maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                                      for m in maps[1:]], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.maps(x))


class LinearProbe(nn.Module):
    def __init__(self, features: FrozenFeatures):
        super().__init__()
        self.features = features
        self.head = nn.Conv2d(features.out_channels, N_SCORED, 1)

    def logits_from(self, f: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(self.head(f), size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from(self.features(x), x.shape[-2:])


def run_linear(packed: Packed, backbone: nn.Module, fraction: float, seed: int, cfg: dict,
               device: torch.device, fold: Fold) -> dict[str, Any]:
    """Train a per-pixel linear head on frozen features of a label fraction of ``fold.train``; score
    ``fold.test``."""
    lc = cfg["linear"]
    pool_rows = fold.train
    train_rows = nested_fraction(pool_rows, fraction, seed)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    feats = FrozenFeatures(backbone, lc["features"])
    model = LinearProbe(feats).to(device=device, memory_format=memory_format(device))
    steps, batch = int(lc["steps"]), int(lc["batch"])
    opt = torch.optim.AdamW(model.head.parameters(), lr=float(lc["lr"]), weight_decay=float(lc["weight_decay"]))
    warmup = int(round(0.05 * steps))
    side = packed.size
    chans = backbone.stage_channels if lc["features"] == "hypercolumn" else backbone.stage_channels[-1:]
    strides = (4, 8, 16, 32)[-len(chans):]
    per_tile_mb = sum(c * (side // s) ** 2 for c, s in zip(chans, strides, strict=True)) * 4 / 2**20
    cached = per_tile_mb * len(train_rows) <= float(lc["cache_mb"])
    t0 = time.perf_counter()
    model.train()
    if cached:
        # Features once, then batches of cached features (no augmentation).
        pool = TrainPool(packed.images[train_rows], packed.labels[train_rows], device, side, augment=False)
        fs = []
        for s in range(0, pool.n, int(cfg["eval_batch"])):
            with autocast(device):
                fs.append([m.float() for m in feats.maps(
                    to_input(pool.images[s:s + int(cfg["eval_batch"])].permute(0, 3, 1, 2), device))])
        fcache = [torch.cat(level) for level in zip(*fs, strict=True)]
        ycache = pool.targets.long()
    else:
        pool = TrainPool(packed.images[train_rows], packed.labels[train_rows], device, lc["crop"], augment=True)
    losses = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = float(lc["lr"]) * lr_at(step, steps, 1.0, warmup)
        if cached:
            idx = torch.randint(len(ycache), (batch,), generator=gen).to(device)
            y = ycache[idx]
            with autocast(device):
                logits = model.logits_from(feats.combine([m[idx] for m in fcache]), y.shape[-2:])
        else:
            x8, y = pool.sample(batch, gen)
            with autocast(device):
                logits = model(to_input(x8, device))
        loss = masked_cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= steps - 10:
            losses.append(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    model.eval()
    test_rows = fold.test
    ex = example_rows(test_rows, int(cfg["examples"]))
    per_city, kept = predict_dense(model, packed, test_rows, device, int(cfg["eval_batch"]), keep=ex)
    out = score_cities(per_city)
    out.update({"_confusions": per_city,
        "n_train": int(len(train_rows)), "n_pool": int(len(pool_rows)), "n_test": int(len(test_rows)),
        "level": "pixel", "features": lc["features"], "feature_cache": bool(cached),
        "train": {"steps": steps, "seconds": seconds, "images_per_s": steps * batch / max(seconds, 1e-9),
                  "final_loss": float(torch.stack(losses).mean()) if losses else float("nan")},
        "_examples": kept,
        "_model": model,  # what tmf.evaluate.saved_model saves for the maps, and how to rebuild it
        "_architecture": {"kind": "linear", "backbone": cfg["backbone"], "features": lc["features"]},
    })
    return out


@torch.no_grad()
def pooled_features(backbone: nn.Module, packed: Packed, rows: np.ndarray, device: torch.device,
                    batch: int) -> np.ndarray:
    """Global-average-pooled last block of each sub-tile, float32 ``(len(rows), D)``."""
    backbone = backbone.eval().to(device=device, memory_format=memory_format(device))
    out = []
    for s in range(0, len(rows), batch):
        chunk = np.asarray(rows[s:s + batch])
        x = torch.from_numpy(np.ascontiguousarray(packed.images[chunk])).to(device)
        with autocast(device):
            out.append(backbone.features(to_input(x.permute(0, 3, 1, 2), device)).float().cpu())
    return torch.cat(out).numpy()


def run_scene(packed: Packed, backbone: nn.Module, protocol: str, fraction: float, seed: int, cfg: dict,
              device: torch.device, fold: Fold) -> dict[str, Any]:
    """Scene-level probe (``knn`` or ``logreg``) on the dominant scored class of each sub-tile: trained on a
    label fraction of ``fold.train``, scored on ``fold.test``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = packed.manifest
    train_rows = nested_fraction(fold.train, fraction, seed)
    test_rows = fold.test
    y_train = dominant_class(frame.iloc[train_rows])
    y_test = dominant_class(frame.iloc[test_rows])
    t0 = time.perf_counter()
    batch = int(cfg["eval_batch"])
    f_train = pooled_features(backbone, packed, train_rows, device, batch)
    f_test = pooled_features(backbone, packed, test_rows, device, batch)
    if len(np.unique(y_train)) == 1:
        pred = np.full(len(test_rows), y_train[0])  # one class seen: every classifier predicts it
    elif protocol == "knn":
        k = min(int(cfg["knn"]["k"]), len(train_rows))
        clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance").fit(f_train, y_train)
        pred = clf.predict(f_test)
    elif protocol == "logreg":
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=float(cfg["logreg"]["C"]),
                                                                 max_iter=int(cfg["logreg"]["max_iter"])))
        pred = clf.fit(f_train, y_train).predict(f_test)
    else:
        raise ValueError(f"unknown scene-level protocol {protocol!r}")
    seconds = time.perf_counter() - t0
    cities = frame["city"].to_numpy()[test_rows]
    per_city = {c: confusion_matrix(y_test[cities == c], pred[cities == c]) for c in dict.fromkeys(cities)}
    out = score_cities(per_city)
    ex = example_rows(test_rows, int(cfg["examples"]))
    pos = {int(r): i for i, r in enumerate(test_rows)}
    kept = {int(r): np.full(packed.labels.shape[1:], pred[pos[int(r)]], dtype=np.uint8) for r in ex}
    out.update({"_confusions": per_city, "n_train": int(len(train_rows)), "n_pool": int(len(fold.train)),
                "n_test": int(len(test_rows)), "level": "scene",
                "train": {"seconds": seconds}, "_examples": kept,
                "scene_classes": sorted(int(c) for c in np.unique(y_train) if c in SCORED_IDS)})
    return out
