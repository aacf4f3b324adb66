"""Pieces shared by the evaluation protocols: encoders, training pools on the device, dense prediction + scoring.

Speed on CUDA: the training pool (uint8 sub-tiles and targets) is copied to the GPU once and batches are cut,
flipped, rotated and normalised there, so the GPU never waits for a data loader; test sub-tiles stream from the
memory-mapped array in batches and the confusion matrices are accumulated on the device (one ``bincount``).
On the CPU everything is float32 and deterministic (``tmf.device.configure``), so the same seed gives the same
metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tmf.data.minifrance import IGNORE_INDEX, SCORED_IDS
from tmf.data.packed import Packed
from tmf.device import autocast, memory_format
from tmf.evaluate.augment import dihedral_crop_index
from tmf.evaluate.data import targets
from tmf.evaluate.metrics import scores
from tmf.models.resnet import build_backbone, normalise_uint8

log = logging.getLogger(__name__)
N_SCORED = len(SCORED_IDS)


# ---------------------------------------------------------------- encoders
def load_encoder(backbone: str, path: str | Path | None) -> nn.Module:
    """A ResNet ``backbone``; with ``path``, weights from a file.

    Accepted files: the pretraining stage's ``encoder.pt`` (``{"arch", "method", "state_dict"}``,
    docs/file-formats.md) or a torchvision ``state_dict`` (ImageNet weights). Every key of the backbone except
    the ImageNet classifier ``fc.*`` must be present with its shape; the architecture must match.
    """
    model = build_backbone(backbone)
    if not hasattr(model, "feature_maps"):
        raise ValueError(f"evaluate.backbone {backbone!r}: only ResNets have the stage outputs the decoder needs")
    if path is None:
        return model
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f"{path}: not a readable torch file: {e}") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        arch = obj.get("arch")
        if arch is not None and arch != backbone:
            raise ValueError(f"{path}: encoder architecture {arch!r} differs from evaluate.backbone {backbone!r}")
        state = obj["state_dict"]
    elif isinstance(obj, dict):
        state = obj
    else:
        raise ValueError(f"{path}: expected a state dict or {{'arch', 'state_dict'}}, got {type(obj).__name__}")
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith("fc.")]
    if missing:
        raise ValueError(f"{path}: {len(missing)} backbone weights missing (e.g. {missing[:3]}); "
                         f"is it a {backbone} state dict with torchvision keys?")
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{path}: shape mismatch for {bad[:3]} (not a {backbone}?)")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return model


# ---------------------------------------------------------------- training pools
class TrainPool:
    """Sub-tiles held as uint8 tensors on the device; ``sample`` cuts an augmented batch, :meth:`to_input` makes it
    the model's input.

    Augmentation (``augment``): random crop of side ``crop`` (the whole sub-tile if ``crop`` ≥ its side), a random
    multiple of 90° and a random left–right flip (nadir images have no up, SPEC.md §4 "remote-sensing practice"):
    FixMatch's weak augmentation α(·) (seed 004 §3.3.2). ``extra``: float channels co-registered with the images
    (n, C, S, S), e.g. the elevation input of the multi-modal protocols, cut with the same crop, flip and rotation
    (the same gather) and stacked after the RGB channels by :meth:`to_input` (``rgb=False``: the extra channels
    alone).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, device: torch.device, crop: int,
                 augment: bool = True, extra: torch.Tensor | None = None, rgb: bool = True):
        if len(images) == 0:
            raise ValueError("TrainPool: no sub-tile to train on")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)  # (n, S, S, 3) uint8
        self.targets = None
        if labels is not None:
            t = targets(np.ascontiguousarray(labels)).astype(np.uint8)  # 0..13, IGNORE_INDEX
            self.targets = torch.from_numpy(t).to(device)
        self.n, self.side = int(images.shape[0]), int(images.shape[1])
        self.crop = min(int(crop), self.side)
        self.augment = augment
        self.device = device
        self.rgb = rgb
        if extra is not None and (extra.shape[0] != self.n or tuple(extra.shape[2:]) != (self.side, self.side)):
            raise ValueError(f"TrainPool: extra channels {tuple(extra.shape)} not co-registered with the "
                             f"{self.n} sub-tiles of {self.side} px")
        # channels last, like the images, so that one gather cuts both
        self.extra = extra.to(device).permute(0, 2, 3, 1).contiguous() if extra is not None else None
        self._extra_crop = None

    def to_input(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """The model input of the batch :meth:`sample` returned last: the normalised RGB (:func:`to_input`), with
        the extra channels of the same crops after them."""
        if self.extra is None:
            return to_input(x_uint8, self.device)
        parts = ([normalise_uint8(x_uint8)] if self.rgb else []) + [self._extra_crop]
        return torch.cat(parts, 1).contiguous(memory_format=memory_format(self.device))

    def sample(self, batch: int, gen: torch.Generator):
        """``(x_uint8 (B, 3, c, c), y int64 (B, c, c) or None)``; every random draw comes from ``gen`` (on the CPU
        for CPU training, on the pool's device for CUDA training), and the batch is cut by one gather
        (:func:`tmf.evaluate.augment.dihedral_crop_index`): no per-sample loop, no host–device synchronisation."""
        dev, span = gen.device, self.side - self.crop + 1
        draws = [torch.randint(self.n, (batch,), generator=gen, device=dev),
                 torch.randint(span, (batch,), generator=gen, device=dev),
                 torch.randint(span, (batch,), generator=gen, device=dev)]
        if self.augment:
            draws += [torch.randint(4, (batch,), generator=gen, device=dev),
                      torch.randint(2, (batch,), generator=gen, device=dev)]
        else:
            draws += [torch.zeros(batch, dtype=torch.long, device=dev)] * 2
        idx, rows, cols, rots, flips = (d.to(self.device, non_blocking=True) for d in draws)
        flat = dihedral_crop_index(self.side, self.crop, idx, rows, cols, rots, flips)
        x = self.images.view(-1, 3)[flat].permute(0, 3, 1, 2)
        if self.extra is not None:
            self._extra_crop = self.extra.view(-1, self.extra.shape[-1])[flat].permute(0, 3, 1, 2)
        y = self.targets.view(-1)[flat].long() if self.targets is not None else None
        return x, y


def to_input(x_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, 3, H, W) uint8 → ImageNet-normalised float in the device's memory format."""
    return normalise_uint8(x_uint8).contiguous(memory_format=memory_format(device))


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the scored pixels (0 when a crop has none, instead of NaN)."""
    loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / (y != IGNORE_INDEX).sum().clamp_min(1)


# ---------------------------------------------------------------- prediction and scoring
def _pad32(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return x, h, w


@torch.no_grad()
def predict_dense(predict_fn, packed: Packed, rows: np.ndarray, device: torch.device, batch: int,
                  keep: np.ndarray | None = None, inputs=None):
    """Run ``predict_fn(x_float (B, 3, H', W')) → logits (B, 14, H', W')`` over ``rows`` of the packed arrays and
    accumulate one confusion matrix per city (over the scored ids; ignored ids dropped). ``inputs(rows) → x``:
    the model input of some rows (default: their normalised RGB; the multi-modal protocols stack elevation).

    Returns ``(per_city {city: cm (14, 14) int64}, kept {row: predicted ids uint8 (S, S)})`` where ``kept`` holds
    the predictions of the rows listed in ``keep`` (for the figure).
    """
    cities = packed.manifest["city"].to_numpy()
    keep_set = set(int(r) for r in (keep if keep is not None else []))
    per_city: dict[str, torch.Tensor] = {}
    kept = {}
    lut = torch.as_tensor(np.asarray(SCORED_IDS, dtype=np.uint8), device=device)
    for start in range(0, len(rows), batch):
        chunk = np.asarray(rows[start:start + batch])
        y = torch.from_numpy(targets(np.ascontiguousarray(packed.labels[chunk])).astype(np.uint8)).to(device)
        if inputs is None:
            x = torch.from_numpy(np.ascontiguousarray(packed.images[chunk])).to(device, non_blocking=True)
            x = to_input(x.permute(0, 3, 1, 2), device)
        else:
            x = inputs(chunk)
        xp, h, w = _pad32(x)
        with autocast(device):
            logits = predict_fn(xp)
        pred = logits[..., :h, :w].float().argmax(1)  # (B, H, W) 0..13
        valid = y != IGNORE_INDEX
        for j, row in enumerate(chunk.tolist()):
            v = valid[j]
            code = y[j][v].long() * N_SCORED + pred[j][v]
            cm = torch.bincount(code, minlength=N_SCORED * N_SCORED).view(N_SCORED, N_SCORED)
            city = cities[row]
            per_city[city] = per_city[city] + cm if city in per_city else cm
            if row in keep_set:
                kept[row] = lut[pred[j]].cpu().numpy()
    return {c: cm.cpu().numpy().astype(np.int64) for c, cm in per_city.items()}, kept


def score_cities(per_city: dict[str, np.ndarray]) -> dict:
    """Overall scores (sum of the cities' matrices) + ``per_city {city: {oa, miou, kappa, n_pixels}}``."""
    if not per_city:
        raise ValueError("no test sub-tile was scored")
    total = sum(per_city.values())
    out = scores(total)
    out["per_city"] = {}
    for city, cm in per_city.items():
        s = scores(cm)
        out["per_city"][city] = {"oa": s["oa"], "miou": s["miou"], "kappa": s["kappa"], "n_pixels": s["n_pixels"]}
    return out


def example_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """``n`` test rows spread evenly over the scoring pool (deterministic), for predictions.png."""
    rows = np.asarray(rows)
    if n <= 0 or len(rows) == 0:
        return rows[:0]
    return np.unique(rows[np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)])
