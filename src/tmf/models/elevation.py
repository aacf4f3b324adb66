"""Elevation as a model input: its normalisation (``elevation`` params), the DEM encoder, and the encoder that
fuses modalities by concatenating their features (seed 000 §4.2; docs/multimodal.md).

- :func:`elevation_input`: the packed elevation (metres, 0 where not valid) and its validity → the input channels:
  the relative height (z − the sub-tile's mean valid z) / scale_m, or the absolute one (z − m) / s (m, s from the
  manifest, :func:`absolute_reference`), plus the slope |∇z| when asked; 0 where not valid.
- :class:`ElevationEncoder`: a small ResNet (basic blocks of torchvision's ResNet) whose four stages sit at the
  strides of the RGB ResNet's (4, 8, 16, 32), so the U-Net decoder takes either, or both.
- :class:`FusedEncoder`: one encoder per modality of a downstream subset; the input is the modalities' channels
  stacked (RGB first); every stage output and the pooled feature are the concatenation of the modalities' (seed
  000 §4.2: "We choose to generate these image-level representations ... by concatenating").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tmf.data.minifrance import TILE_RES
from tmf.models.resnet import BasicBlock

RGB_CHANNELS = 3
INPUT_KEYS = ("normalise", "scale_m", "slope")  # of the elevation section: what the DEM encoder's input depends on


def elevation_channels(cfg: dict) -> int:
    """Input channels of the DEM encoder: the height, and the slope when ``elevation.slope``."""
    return 2 if cfg["slope"] else 1


def absolute_reference(manifest) -> tuple[float, float]:
    """(m, s) of the absolute normalisation: mean and standard deviation of ``dem_mean`` over the sub-tiles that
    have elevation (s = 0 for a single one; the caller floors it at scale_m)."""
    v = manifest.loc[manifest["has_dem"].astype(int) == 1, "dem_mean"].to_numpy(dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("absolute elevation: no sub-tile of the manifest has a valid elevation")
    return float(v.mean()), float(v.std())


def elevation_input(dem: torch.Tensor, valid: torch.Tensor, cfg: dict,
                    reference: tuple[float, float] | None = None) -> torch.Tensor:
    """(b, S, S) elevation (m) and validity → (b, C, S, S) float32 input (``cfg``: the ``elevation`` section).

    relative: h = (z − mean of the sub-tile's valid z) / scale_m; absolute: h = (z − m) / max(s, scale_m) with
    ``reference`` = (m, s). slope (optional second channel): |∇z| in metres per metre, central differences on the
    0.5 m grid (one-sided ones at the border); 0 where a pixel or a neighbour it uses is not valid. Every channel is
    0 where the elevation is not valid.
    """
    z = dem.float()
    ok = valid.bool()
    okf = ok.float()
    scale = float(cfg["scale_m"])
    if cfg["normalise"] == "relative":
        mean = (z * okf).sum((1, 2), keepdim=True) / okf.sum((1, 2), keepdim=True).clamp_min(1.0)
        h = (z - mean) / scale
    else:
        if reference is None:
            raise ValueError("elevation.normalise absolute needs the manifest's reference (absolute_reference)")
        m, s = reference
        h = (z - m) / max(s, scale)
    chans = [torch.where(ok, h, 0.0)]
    if cfg["slope"]:
        zp = F.pad(z.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
        op = F.pad(okf.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
        gy = (zp[:, 2:, 1:-1] - zp[:, :-2, 1:-1]) / (2 * TILE_RES)
        gx = (zp[:, 1:-1, 2:] - zp[:, 1:-1, :-2]) / (2 * TILE_RES)
        good = ok & (op[:, 2:, 1:-1] * op[:, :-2, 1:-1] * op[:, 1:-1, 2:] * op[:, 1:-1, :-2] > 0)
        # at the border replicate padding halves the step: double it back (one-sided difference)
        gy[:, 0] *= 2
        gy[:, -1] *= 2
        gx[:, :, 0] *= 2
        gx[:, :, -1] *= 2
        chans.append(torch.where(good, torch.hypot(gx, gy), 0.0))
    return torch.stack(chans, 1)


class ElevationEncoder(nn.Module):
    """The DEM encoder (``elevation.encoder``): 3×3 conv at stride 2, BN, ReLU, 3×3 max pool at stride 2, then four
    stages of ``blocks`` basic residual blocks of ``widths`` channels at strides 4, 8, 16, 32. Same interface as
    :class:`tmf.models.resnet.ResNet`: ``feature_maps``, ``features``, ``stage_channels``, ``out_dim``."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128, 256), blocks: int = 1):
        super().__init__()
        if len(widths) != 4 or min(widths) < 1 or blocks < 1:
            raise ValueError(f"elevation.encoder: 4 positive widths and blocks >= 1, got {list(widths)}, {blocks}")
        self.config = {"in_channels": int(in_channels), "widths": [int(w) for w in widths], "blocks": int(blocks)}
        w0 = int(widths[0])
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w0, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w0),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        layers, cin = [], w0
        for k, w in enumerate(int(v) for v in widths):
            stride = 1 if k == 0 else 2
            down = None
            if stride != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
            stage = [BasicBlock(cin, w, stride, down)] + [BasicBlock(w, w) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*stage))
            cin = w
        self.layers = nn.ModuleList(layers)
        self.stage_channels = tuple(int(w) for w in widths)
        self.out_dim = int(widths[-1])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.feature_maps(x)[-1], 1), 1)


def build_elevation_encoder(cfg: dict) -> ElevationEncoder:
    """The DEM encoder of the ``elevation`` params section."""
    e = cfg["encoder"]
    return ElevationEncoder(elevation_channels(cfg), e["widths"], e["blocks"])


class FusedEncoder(nn.Module):
    """Encoders of several modalities behind one ResNet-like interface. ``encoders``: modality → encoder, in the
    order their channels are stacked in the input; ``channels``: modality → its input channels. Stage outputs and
    pooled features are the modalities' concatenated along the channels (seed 000 §4.2)."""

    def __init__(self, encoders: dict[str, nn.Module], channels: dict[str, int]):
        super().__init__()
        if not encoders or set(encoders) != set(channels):
            raise ValueError(f"FusedEncoder: one channel count per encoder, got {list(encoders)} and {list(channels)}")
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.channels = {m: int(channels[m]) for m in self.modalities}
        self.stage_channels = tuple(sum(s) for s in zip(*(e.stage_channels for e in encoders.values()), strict=True))
        self.out_dim = sum(int(e.out_dim) for e in encoders.values())

    def split(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The input's channels per modality."""
        want = sum(self.channels.values())
        if x.shape[1] != want:
            raise ValueError(f"FusedEncoder: expected {want} input channels ({self.channels}), got {x.shape[1]}")
        parts = torch.split(x, [self.channels[m] for m in self.modalities], dim=1)
        return dict(zip(self.modalities, parts, strict=True))

    def modality_maps(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        return {m: self.encoders[m].feature_maps(v) for m, v in self.split(x).items()}

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = list(self.modality_maps(x).values())
        return [torch.cat(stage, 1) if len(stage) > 1 else stage[0] for stage in zip(*maps, strict=True)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.feature_maps(x)[-1], 1), 1)

    def pooled_by_modality(self, last: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pooled last-stage features of each modality, cut out of the fused last stage ``last``."""
        pooled = torch.flatten(F.adaptive_avg_pool2d(last, 1), 1)
        sizes = [int(self.encoders[m].stage_channels[-1]) for m in self.modalities]
        return dict(zip(self.modalities, torch.split(pooled, sizes, dim=1), strict=True))
