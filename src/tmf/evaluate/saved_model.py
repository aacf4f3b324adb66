"""The trained segmentation model an evaluation job saves for the maps (``model.pt``), and reading it back.

Only the evaluation job that ``predict.*`` names saves one (``tmf evaluate --save-model``; docs/file-formats.md).
The file is ``torch.save`` of a plain dict, so it loads with ``weights_only=True`` (no pickled code)::

    {"format": "tmf-segmentation-model", "version": 1,
     "job": {"protocol", "method", "fraction", "seed"},      # the evaluation job that trained it
     "class_ids": [1, ..., 14],                                # MiniFrance id of each output channel
     "architecture": {"kind": "unet", "backbone", "decoder_channels", "head", "head_dim", "aux_channels"}
                   | {"kind": "segnet", "channels", "head", "head_dim", "aux_channels"}
                   | {"kind": "linear", "backbone", "features"},
     "state_dict": {name: tensor}}

``unet`` is :class:`tmf.models.decoder.SegmentationModel` (protocols finetune, finetune_horospherical,
finetune_euclidean, finetune_fixmatch, every method), ``segnet`` the same on :mod:`tmf.models.segnet`'s encoder and
decoder (protocol segnet), ``linear`` the frozen encoder + 1x1 head of :mod:`tmf.evaluate.probes`.
:func:`load_predictor` rebuilds the architecture, loads the weights (every key, with its shape) and returns the
function the map stage calls: uint8 windows in, float32 logits out (bf16 autocast and channels_last on CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tmf.data.minifrance import SCORED_IDS
from tmf.io import atomic_path

FORMAT, VERSION = "tmf-segmentation-model", 1
KINDS = ("unet", "segnet", "linear")


def save_model(path: str | Path, model: nn.Module, architecture: dict[str, Any], job: dict[str, Any]) -> None:
    """Write ``model``'s weights with what rebuilds it (``architecture``) and the job that trained it."""
    if architecture.get("kind") not in KINDS:
        raise ValueError(f"save_model: architecture kind must be one of {KINDS}, got {architecture.get('kind')!r}")
    # plain tensors (a geoopt ManifoldParameter is a Tensor subclass, which weights_only loading refuses)
    state = {k: v.detach().cpu().clone().as_subclass(torch.Tensor) for k, v in model.state_dict().items()}
    obj = {"format": FORMAT, "version": VERSION, "job": dict(job), "class_ids": list(SCORED_IDS),
           "architecture": dict(architecture), "state_dict": state}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def build(architecture: dict[str, Any]) -> nn.Module:
    """The untrained network an ``architecture`` entry describes."""
    from tmf.evaluate.engine import N_SCORED
    from tmf.models.resnet import build_backbone

    kind = architecture["kind"]
    if kind == "linear":
        from tmf.evaluate.probes import FrozenFeatures, LinearProbe

        return LinearProbe(FrozenFeatures(build_backbone(architecture["backbone"]), architecture["features"]))
    from tmf.models.decoder import SegmentationModel
    from tmf.models.segnet import segnet

    head, dim = architecture["head"], architecture["head_dim"]
    spec = None
    if head != "conv":
        from tmf.models.hyperbolic import make_head

        # "random" prototypes: the cheapest initialisation; the saved prototypes replace them
        extra = {"prototypes": "random"} if head == "horospherical" else {}
        spec = lambda c: make_head(head, c, N_SCORED, dim, **extra)  # noqa: E731
    if kind == "segnet":
        return segnet(N_SCORED, architecture["channels"], head=spec, aux_channels=architecture["aux_channels"])
    return SegmentationModel(build_backbone(architecture["backbone"]), N_SCORED, head=spec,
                             decoder_channels=architecture["decoder_channels"], aux_channels=architecture["aux_channels"])


@dataclass
class Predictor:
    """A trained model ready to map tiles: ``predictor(x_uint8 (B, 3, H, W) on device) → logits float32
    (B, n_classes, H, W)``; ``class_ids[c]`` is the MiniFrance id of channel ``c``."""

    model: nn.Module
    device: torch.device
    class_ids: tuple[int, ...]
    job: dict[str, Any]
    architecture: dict[str, Any]

    @property
    def n_classes(self) -> int:
        return len(self.class_ids)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from tmf.device import autocast
        from tmf.evaluate.engine import to_input

        with autocast(self.device):
            return self.model(to_input(x, self.device)).float()

    def describe(self) -> str:
        j = self.job
        return f"{j['protocol']}/{j['method']}/frac{j['fraction']:g}/seed{j['seed']}"


def load_predictor(path: str | Path, device: torch.device) -> Predictor:
    """Read ``model.pt`` (:func:`save_model`), rebuild its network on ``device`` in eval mode."""
    from tmf.device import memory_format

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path} (the evaluation job named by predict.* writes it)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f"{path}: not a readable torch file: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (written by `tmf evaluate --save-model`)")
    if obj.get("version") != VERSION:
        raise ValueError(f"{path}: {FORMAT} version {obj.get('version')}, this tmf reads version {VERSION}")
    model = build(obj["architecture"])
    own, state = model.state_dict(), obj["state_dict"]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise ValueError(f"{path}: weights do not fit the architecture {obj['architecture']} (missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]}, shape mismatch {bad[:3]})")
    model.load_state_dict(state)
    model.to(device=device, memory_format=memory_format(device)).eval()
    return Predictor(model, device, tuple(int(i) for i in obj["class_ids"]), obj["job"], obj["architecture"])
