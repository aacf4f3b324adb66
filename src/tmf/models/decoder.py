"""U-Net style decoder over a ResNet's stage outputs, and the segmentation model built from it.

SPEC.md §5 asks for "full fine-tuning of an encoder–decoder (U-Net style)" (seed 000 §4.1, Table 4.2 protocol;
seed 004 Table 3.1 uses a U-Net). We keep the pretrained ResNet as the U-Net's encoder (Ronneberger et al. 2015,
the "U-Net with a ResNet encoder" common in remote sensing): ``ResNet.feature_maps`` gives stages at strides
4, 8, 16, 32; each decoder step upsamples ×2 (bilinear), concatenates the skip of the same stride and applies two
3×3 conv–BN–ReLU; two last steps without skips bring the features back to full resolution.

BerundaNet-late (seed 004 §3.2.2, Fig. 3.2 b) is the same network with a second 1×1 head: "an almost-all shared
decoder with only a single separate convolutional layer for each task". ``aux_channels`` adds it (3 for
reconstruction, K for the relaxed k-means memberships).

Heads are pluggable: anything mapping ``(N, C_in, H, W)`` to logits ``(N, n_classes, H, W)``, for instance
``tmf.models.hyperbolic.HorosphericalHead(in_channels, n_classes, dim, ...)``. Pass a module, or a callable
``f(in_channels) -> module`` so the head can be built for the decoder's output width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3×3 conv–BN–ReLU, the U-Net unit."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNetDecoder(nn.Module):
    """Decoder over four encoder stages (strides 4, 8, 16, 32 → full resolution).

    ``channels`` gives the width after each of the five ×2 steps: 32→16 (+ stage 3), 16→8 (+ stage 2),
    8→4 (+ stage 1), 4→2, 2→1. ``out_channels`` is ``channels[-1]``.
    """

    def __init__(self, stage_channels: Sequence[int] = (64, 128, 256, 512),
                 channels: Sequence[int] = (256, 128, 64, 32, 16)):
        super().__init__()
        if len(stage_channels) != 4:
            raise ValueError(f"UNetDecoder: expected 4 encoder stages, got {len(stage_channels)}")
        if len(channels) != 5 or min(channels) < 1:
            raise ValueError(f"UNetDecoder: decoder channels must be 5 positive widths, got {list(channels)}")
        c1, c2, c3, c4 = stage_channels
        skips = (c3, c2, c1, 0, 0)
        blocks = []
        cin = c4
        for skip, cout in zip(skips, channels, strict=True):
            blocks.append(conv_block(cin + skip, cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = int(channels[-1])

    def forward(self, feats: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        f1, f2, f3, f4 = feats
        x = f4
        for i, (block, skip) in enumerate(zip(self.blocks, (f3, f2, f1, None, None), strict=True)):
            if skip is not None:
                target = skip.shape[-2:]
            elif i == len(self.blocks) - 1:
                target = size
            else:
                target = (x.shape[-2] * 2, x.shape[-1] * 2)
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
            if skip is not None:
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        return x


HeadSpec = nn.Module | Callable[[int], nn.Module] | None


class SegmentationModel(nn.Module):
    """Encoder (a ``tmf.models.resnet.ResNet``) + U-Net decoder + a segmentation head [+ an auxiliary head].

    ``decoder`` replaces the U-Net by any module called as ``decoder(backbone.feature_maps(x), (H, W))`` with an
    ``out_channels`` attribute (``tmf.models.segnet``: a SegNet encoder and decoder).

    ``forward(x)`` returns logits ``(N, n_classes, H, W)`` at the input's resolution (H, W multiples of 32 are
    fastest; others work, the decoder's last step resizes to the input). ``forward(x, aux=True)`` returns
    ``(logits, aux)``; ``auxiliary(x)`` the auxiliary output alone (BerundaNet's unlabeled batches).
    """

    def __init__(self, backbone: nn.Module, n_classes: int = 14, head: HeadSpec = None,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16), aux_channels: int = 0,
                 decoder: nn.Module | None = None):
        super().__init__()
        if decoder is None:
            if not hasattr(backbone, "feature_maps") or not hasattr(backbone, "stage_channels"):
                raise ValueError("SegmentationModel: the backbone must be a ResNet (feature_maps at strides 4..32); "
                                 f"got {type(backbone).__name__}")
            decoder = UNetDecoder(backbone.stage_channels, decoder_channels)
        self.backbone = backbone
        self.decoder = decoder
        c = self.decoder.out_channels
        if head is None:
            head = nn.Conv2d(c, n_classes, 1)
        elif not isinstance(head, nn.Module):
            head = head(c)
        self.head = head
        self.n_classes = n_classes
        self.aux_head = nn.Conv2d(c, aux_channels, 1) if aux_channels > 0 else None
        self.extra_heads = nn.ModuleDict()  # heads of training-only terms (MM-SupCon's projections), lr of the head

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.backbone.feature_maps(x), x.shape[-2:])

    def forward(self, x: torch.Tensor, aux: bool = False):
        f = self.decode(x)
        logits = self.head(f)
        if aux:
            if self.aux_head is None:
                raise ValueError("SegmentationModel: aux=True but the model has no auxiliary head")
            return logits, self.aux_head(f)
        return logits

    def auxiliary(self, x: torch.Tensor) -> torch.Tensor:
        if self.aux_head is None:
            raise ValueError("SegmentationModel: the model has no auxiliary head")
        return self.aux_head(self.decode(x))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part: ``encoder``, ``decoder`` (decoder + auxiliary head), ``head`` (+ ``extra_heads``)."""
        dec = list(self.decoder.parameters()) + (list(self.aux_head.parameters()) if self.aux_head else [])
        return {"encoder": list(self.backbone.parameters()), "decoder": dec,
                "head": list(self.head.parameters()) + list(self.extra_heads.parameters())}
