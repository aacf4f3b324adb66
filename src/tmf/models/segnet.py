"""SegNet: a VGG-style encoder whose max-pooling indices drive the decoder's unpooling (Badrinarayanan et al. 2017),
the second network of seed 004 Table 3.1 (“SegNet” column, beside the U-Net).

Encoder: five stages of 3×3 conv–BN–ReLU (2, 2, 3, 3, 3 convolutions, VGG-16's 13 layers; widths ``channels``,
VGG-16's 64, 128, 256, 512, 512 by default), each followed by a 2×2 max pooling that keeps its indices. Decoder:
the mirror image, each stage an unpooling that puts the values back at the pooling indices (zeros elsewhere, no
learned upsampling, no skip of features) followed by the same number of conv–BN–ReLU, the last one narrowing to the
next stage's width; the output has ``channels[0]`` features at the input's resolution, for the same pluggable heads
as the U-Net (``tmf.models.decoder.SegmentationModel``). BerundaNet-late's auxiliary head is a second 1×1
convolution on them, as for the U-Net (seed 004 Fig. 3.2 b). Trained from scratch only: there is no pretrained
SegNet encoder in this study.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

VGG16_CONVS = (2, 2, 3, 3, 3)  # convolutions per stage (Simonyan & Zisserman 2015, configuration D)
VGG16_WIDTHS = (64, 128, 256, 512, 512)


def max_unpool(x: torch.Tensor, indices: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Inverse of ``max_pool2d(..., return_indices=True)``: an ``(N, C, *size)`` map that holds ``x``'s values at
    ``indices`` (flat positions in each ``size`` plane) and zeros elsewhere.

    A scatter, written by hand because ``torch.nn.functional.max_unpool2d`` has no deterministic implementation
    and CPU training here is deterministic (``tmf.device.configure``). The 2×2 pooling windows do not overlap, so
    every position receives at most one value: the scatter is exact and its gradient is the gather at ``indices``.
    """
    n, c = x.shape[:2]
    h, w = int(size[0]), int(size[1])
    out = x.new_zeros(n, c, h * w)
    return out.scatter(2, indices.flatten(2), x.flatten(2)).view(n, c, h, w)


def _convs(cin: int, widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout in widths:
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers)


def _check(channels: Sequence[int], convs: Sequence[int]) -> None:
    if len(channels) != len(convs) or not channels or min(channels) < 1 or min(convs) < 1:
        raise ValueError(f"SegNet: {len(convs)} stages need as many positive widths, got {list(channels)}")


class SegNetEncoder(nn.Module):
    """The encoder; ``feature_maps(x)`` returns ``(bottom, [(indices, size before pooling) per stage])``."""

    def __init__(self, channels: Sequence[int] = VGG16_WIDTHS, convs: Sequence[int] = VGG16_CONVS,
                 in_channels: int = 3):
        super().__init__()
        _check(channels, convs)
        cins = (in_channels, *channels[:-1])
        self.stages = nn.ModuleList(_convs(cin, [cout] * k) for cin, cout, k in zip(cins, channels, convs, strict=True))
        self.out_channels = int(channels[-1])

    def feature_maps(self, x: torch.Tensor):
        pools = []
        for stage in self.stages:
            x = stage(x)
            size = tuple(x.shape[-2:])
            x, idx = F.max_pool2d(x, 2, return_indices=True)
            pools.append((idx, size))
        return x, pools

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(x)[0]


class SegNetDecoder(nn.Module):
    """Unpooling at the encoder's indices + convolutions, deepest stage first; ``out_channels = channels[0]``."""

    def __init__(self, channels: Sequence[int] = VGG16_WIDTHS, convs: Sequence[int] = VGG16_CONVS):
        super().__init__()
        _check(channels, convs)
        stages = []
        for i in reversed(range(len(channels))):
            out = channels[max(i - 1, 0)]
            stages.append(_convs(channels[i], [channels[i]] * (convs[i] - 1) + [out]))
        self.stages = nn.ModuleList(stages)
        self.out_channels = int(channels[0])

    def forward(self, feats, size: tuple[int, int] | None = None) -> torch.Tensor:
        x, pools = feats
        for stage, (idx, before) in zip(self.stages, reversed(pools), strict=True):
            x = stage(max_unpool(x, idx, before))
        return x


def segnet(n_classes: int, channels: Sequence[int] = VGG16_WIDTHS, head=None, aux_channels: int = 0):
    """A ``SegmentationModel`` with a SegNet encoder and decoder (same heads and auxiliary head as the U-Net)."""
    from tmf.models.decoder import SegmentationModel

    return SegmentationModel(SegNetEncoder(channels), n_classes, head=head, aux_channels=aux_channels,
                             decoder=SegNetDecoder(channels))
