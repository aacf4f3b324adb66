"""Multi-modal self-supervised pretraining, MM-SSL (seed 000 §4.2, eq. 4.1; Berg et al. 2023): one encoder per
modality, a projection MLP each onto a common sphere, the multi-positive NT-Xent over every view of every modality.

- ``mm_ssl``: RGB + elevation, two augmented views per modality (an RGB view has three positives: the other RGB
  view and both DEM views). ``mm_ssl_star``: the ⋆ rows of Table 4.3, one view per modality, the sub-tile as it
  is (no random augmentation): an RGB view's only positive is its DEM view. ``mm_ssl_rgb`` / ``mm_ssl_dem``: one
  modality, two augmented views (Table 4.3's single-modality rows; eq. 4.1 is then NT-Xent).
- The encoders: the RGB ResNet of ``pretrain.backbone`` and the DEM encoder of ``elevation.encoder``
  (:class:`tmf.models.elevation.ElevationEncoder`). ``backbone`` is the first modality's (what the engine's
  diagnostics and ``encoder.pt`` read first); the others are in ``encoders``.
- Views (:func:`modal_views`): the packed rows' RGB and their elevation input (:func:`tmf.models.elevation.
  elevation_input`) through :func:`tmf.ssl.augment.make_paired_views`, so both modalities get the same crop, flips
  and rotation (the optical steps only touch RGB). A method's ``forward`` takes ``{modality: [views]}``.
- ``encoder.pt`` (:meth:`MMSSL.encoder_payload`): the RGB ResNet's ``state_dict`` (torchvision keys, what every
  RGB protocol and the appearance analysis read) when the method has RGB, and ``dem``: the DEM encoder's
  configuration, input normalisation and ``state_dict``.
"""

from __future__ import annotations

import torch
from torch import nn

from tmf.modalities import DEM, RGB, method_modalities
from tmf.models.elevation import INPUT_KEYS, build_elevation_encoder, elevation_input
from tmf.ssl import distributed as D
from tmf.ssl import losses as L
from tmf.ssl.augment import AugmentConfig, make_paired_views, make_views
from tmf.ssl.method_base import TWO_VIEWS, CropSpec, SSLMethod, StepOutput, mlp, unit_rows

#: the ⋆ rows' one view: the whole sub-tile, resized to the crop size, nothing random
AS_IS = CropSpec(1.0, (1.0, 1.0))
NO_AUGMENTATION = AugmentConfig(ratio=(1.0, 1.0), flip_p=0.0, rot90=False, jitter_p=0.0, blur_p=0.0)


class MMSSL(SSLMethod):
    """MM-SSL over the modalities of :data:`tmf.modalities.METHOD_MODALITIES` (see the module docstring)."""

    name = "mm_ssl"
    star = False  # one un-augmented view per modality (Table 4.3 ⋆)
    takes_modalities = True  # the engine hands it {modality: [views]} (tmf.ssl.views)

    def __init__(self, encoders: dict[str, nn.Module], cfg: dict, elevation: dict | None = None):
        first, *rest = encoders
        super().__init__(encoders[first], cfg)
        self.modalities = tuple(encoders)
        self.others = nn.ModuleDict({m: encoders[m] for m in rest})
        self.projectors = nn.ModuleDict({m: mlp(int(e.out_dim), cfg["hidden_dim"], cfg["proj_dim"])
                                         for m, e in encoders.items()})
        self.elevation = dict(elevation) if elevation is not None else None

    @classmethod
    def build(cls, backbone: nn.Module, cfg: dict, elevation: dict | None) -> MMSSL:
        """The method around the RGB ``backbone`` and a DEM encoder of ``elevation`` (the ``elevation`` section),
        for the modalities of its name."""
        mods = method_modalities(cls.name)
        if DEM in mods and elevation is None:
            raise ValueError(f"{cls.name}: needs the elevation section (elevation.encoder, normalise, slope)")
        if cls.star and len(mods) < 2:
            raise ValueError(f"{cls.name}: without augmented views a single modality has no positive")
        encoders = {m: backbone if m == RGB else build_elevation_encoder(elevation) for m in mods}
        return cls(encoders, cfg, elevation)

    def encoder(self, modality: str) -> nn.Module:
        return self.backbone if modality == self.modalities[0] else self.others[modality]

    def crop_specs(self) -> list[CropSpec]:
        return [AS_IS] if self.star else list(TWO_VIEWS)

    def view_augment(self, aug: AugmentConfig) -> AugmentConfig:
        return NO_AUGMENTATION if self.star else aug

    def forward(self, views: dict[str, list[torch.Tensor]]) -> StepOutput:
        if set(views) != set(self.modalities) or any(len(v) != len(self.crop_specs()) for v in views.values()):
            raise ValueError(f"{self.name}: expected {len(self.crop_specs())} view(s) of each of {self.modalities}, "
                             f"got {({m: len(v) for m, v in views.items()})}")
        z = [self.projectors[m](self.encoder(m).features(v)) for m in self.modalities for v in views[m]]
        loss = L.mm_ssl([D.gather(t.float()) for t in z], self.cfg["temperature"])
        return StepOutput(loss, unit_rows(z[0]), unit_rows(z[1]))

    def encoder_payload(self, arch: str) -> dict:
        out = {"arch": arch, "method": self.name, "modalities": list(self.modalities)}
        if RGB in self.modalities:
            out["state_dict"] = _cpu(self.encoder(RGB).state_dict())
        if DEM in self.modalities:
            enc = self.encoder(DEM)
            out["dem"] = {"config": dict(enc.config), "input": {k: self.elevation[k] for k in INPUT_KEYS},
                          "state_dict": _cpu(enc.state_dict())}
        return out


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


class MMSSLStar(MMSSL):
    name, star = "mm_ssl_star", True


class MMSSLRGB(MMSSL):
    name = "mm_ssl_rgb"


class MMSSLDEM(MMSSL):
    name = "mm_ssl_dem"


MM_METHODS = (MMSSL, MMSSLStar, MMSSLRGB, MMSSLDEM)


def modal_views(arrays: dict[str, torch.Tensor], modalities, specs, crop_size: int, aug: AugmentConfig,
                gen: torch.Generator, elevation: dict | None, reference, **kw) -> dict[str, list[torch.Tensor]]:
    """The views of each modality of a batch (``arrays``: the feed's ``images`` and, for elevation, ``dem`` and
    ``dem_valid`` rows), the same geometry for all; ``kw``: batch, offset, memory_format, out_dtype of
    :func:`tmf.ssl.augment.make_views`."""
    if DEM not in modalities:
        return {RGB: make_views(arrays["images"], specs, crop_size, aug, gen, **kw)}
    dem = elevation_input(arrays["dem"], arrays["dem_valid"], elevation, reference)
    rgb, other = make_paired_views(arrays["images"], dem, specs, crop_size, aug, gen, rgb=RGB in modalities, **kw)
    return {m: rgb if m == RGB else other for m in modalities}
