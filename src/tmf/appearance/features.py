"""Step 1 of the appearance analysis: encode every sub-tile with a CNN (seed 004 §2.4.1, "Step 1").

The thesis encodes with ImageNet-pretrained ResNet-34 and VGG-16 and does not say which layer; our default is
the global-average-pooled last block (SPEC.md §3.1). Encoders are named

- ``random-<arch>``: randomly initialised (a baseline that tells how much of the structure is in the pixels),
- ``imagenet-<arch>``: torchvision's ImageNet weights, read from a local file or the torch hub cache,
- ``ssl-<method>``: an encoder pretrained by this workflow (``results/pretrain/<method>/seed<k>/encoder.pt``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tmf.models.resnet import VGG, ResNet, build_backbone, normalise_uint8

# torchvision's file names for the IMAGENET1K_V1 weights (what ``weights='IMAGENET1K_V1'`` puts in the hub cache).
IMAGENET_FILES: dict[str, str] = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "vgg16": "vgg16-397923af.pth",
}
_TORCHVISION_CALL = {
    "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50", "vgg16": "vgg16",
}
ENCODER_PATTERN = re.compile(r"^(random|imagenet)-(resnet18|resnet34|resnet50|vgg16)$|^ssl-([a-z0-9_]+)$")
# Where each VGG-16 conv block ends in torchvision's ``features`` (the index of its max-pool).
_VGG_BLOCK_ENDS = (4, 9, 16, 23, 30)


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights for an encoder are not on this machine; the message says where to put them."""


@dataclass(frozen=True)
class EncoderSpec:
    name: str  # as in params: random-resnet34, imagenet-vgg16, ssl-simclr
    kind: str  # random | imagenet | ssl
    arch: str | None  # None for ssl until the checkpoint is read
    method: str | None = None


def parse_encoder(name: str) -> EncoderSpec:
    """Split an encoder name into its kind and architecture; a clear ValueError for a bad name."""
    m = ENCODER_PATTERN.match(name)
    if not m:
        raise ValueError(
            f"appearance.encoders: unknown encoder {name!r}; expected random-<arch>, imagenet-<arch> "
            f"(arch in {sorted(IMAGENET_FILES)}) or ssl-<method>"
        )
    if m.group(3):
        return EncoderSpec(name, "ssl", None, m.group(3))
    return EncoderSpec(name, m.group(1), m.group(2))


def torch_hub_checkpoints() -> Path:
    """torch's hub cache for weight files: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def imagenet_weights_path(arch: str, weights: str | Path | None = None) -> Path:
    """The ImageNet weight file for ``arch``: ``weights`` if given, else torchvision's file in the hub cache.

    Raises :class:`MissingWeightsError` naming the expected path and how to fetch it on a connected machine.
    """
    if arch not in IMAGENET_FILES:
        raise ValueError(f"no ImageNet weights known for {arch!r}; expected one of {sorted(IMAGENET_FILES)}")
    path = Path(weights) if weights else torch_hub_checkpoints() / IMAGENET_FILES[arch]
    if not path.is_file():
        raise MissingWeightsError(
            f"ImageNet weights for {arch} not found at {path}. Put torchvision's {IMAGENET_FILES[arch]} there "
            f"(or set appearance.weights.{arch} to its path). On a machine with network access, "
            f"`python -c \"import torchvision; torchvision.models.{_TORCHVISION_CALL[arch]}(weights='IMAGENET1K_V1')\"` "
            f"downloads it into $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/); copy it here."
        )
    return path


def _load_state(model: nn.Module, state: dict, source: str) -> None:
    """Load a torchvision-keyed state dict; only the classifier head may be missing (backbone-only checkpoints)."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("fc.", "classifier."))]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{source}: weights do not match the architecture (missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]})"
        )


def load_encoder(name: str, weights: str | Path | None = None, random_init_seed: int = 0) -> nn.Module:
    """Build the encoder called ``name`` in eval mode.

    ``weights``: for ``imagenet-<arch>`` a torchvision ``.pth`` state dict (else the hub cache); for
    ``ssl-<method>`` the pretraining stage's ``encoder.pt`` (``{"arch", "method", "state_dict"}``, required).
    """
    spec = parse_encoder(name)
    if spec.kind == "random":
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(random_init_seed)
        model = build_backbone(spec.arch)
        torch.random.set_rng_state(gen_state)
    elif spec.kind == "imagenet":
        path = imagenet_weights_path(spec.arch, weights)
        model = build_backbone(spec.arch)
        _load_state(model, torch.load(path, map_location="cpu", weights_only=True), str(path))
    else:
        if not weights:
            raise ValueError(f"encoder {name}: needs the pretraining stage's encoder.pt (--weights)")
        path = Path(weights)
        if not path.is_file():
            raise MissingWeightsError(f"encoder {name}: pretrained encoder not found at {path}")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or "arch" not in ckpt or "state_dict" not in ckpt:
            raise ValueError(f"{path}: expected a dict with keys arch, method, state_dict (docs/file-formats.md)")
        if ckpt.get("method") not in (None, spec.method):
            raise ValueError(f"{path}: holds an encoder pretrained by {ckpt.get('method')!r}, not {spec.method!r}")
        model = build_backbone(ckpt["arch"])
        _load_state(model, ckpt["state_dict"], str(path))
    return model.eval()


def pooled_features(model: nn.Module, x: torch.Tensor, layer: str = "last") -> torch.Tensor:
    """Global-average-pooled activations of ``layer`` (``last`` or ``stage<k>``) for a normalised batch."""
    if layer == "last":
        k = None
    else:
        m = re.fullmatch(r"stage([1-5])", layer)
        if not m:
            raise ValueError(f"appearance.feature_layer: {layer!r} is not last or stage1..stage5")
        k = int(m.group(1))
    if isinstance(model, ResNet):
        if k is None:
            return model.features(x)
        if k > 4:
            raise ValueError(f"appearance.feature_layer: {layer} does not exist in a ResNet (stage1..stage4)")
        fmap = model.feature_maps(x)[k - 1]
    elif isinstance(model, VGG):
        if k is None:
            return model.pooled(x)
        fmap = model.features[: _VGG_BLOCK_ENDS[k - 1]](x)  # the block's last ReLU, before its max-pool
    else:
        raise ValueError(f"cannot take features from a {type(model).__name__}")
    return torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)


@torch.no_grad()
def encode_images(
    model: nn.Module,
    images: np.ndarray,
    layer: str = "last",
    batch_size: int = 64,
    input_size: int = 0,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Encode uint8 ``(N, S, S, 3)`` images (memory-mapped is fine) into float32 ``(N, D)`` features.

    Each batch is ImageNet-normalised (``normalise_uint8``), resized to ``input_size`` (bilinear,
    antialiased) unless 0, and passed through ``model``; the features are the pooled ``layer`` activations.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images: expected uint8 (N, S, S, 3), got shape {images.shape}")
    from tmf.device import autocast, memory_format

    device = torch.device(device)
    model = model.to(device).to(memory_format=memory_format(device))
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)
        x = normalise_uint8(batch)
        if input_size and x.shape[-1] != input_size:
            x = nn.functional.interpolate(x, size=(input_size, input_size), mode="bilinear",
                                          align_corners=False, antialias=True)
        x = x.contiguous(memory_format=memory_format(device))
        with autocast(device):
            f = pooled_features(model, x, layer)
        out.append(f.float().cpu().numpy())
    if not out:
        return np.zeros((0, getattr(model, "out_dim", 0)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
