"""Fine-tuning on a subset of the modalities (protocols ``finetune_mm`` and ``supcon_mm``; seed 000 §4.2–4.3).

- Encoders (:func:`load_modal_encoders`): per modality of the subset, the pretrained one from ``encoder.pt`` (the
  RGB ResNet's ``state_dict``; the DEM encoder's under ``dem``) or a random one. They are fused by concatenating
  their stage outputs (:class:`tmf.models.elevation.FusedEncoder`, seed 000 §4.2), and the U-Net decoder of the
  ``finetune`` protocol sits on the fused stages; same recipe as ``finetune`` (frozen encoder for the first
  ``freeze_encoder_frac`` of the steps, then ``encoder_lr_scale``), the same for every row of Table 4.3.
- Inputs (:class:`ModalInputs`): the normalised RGB and/or the elevation input (``elevation`` section), stacked;
  training crops cut both with the same geometry (:class:`tmf.evaluate.engine.TrainPool`).
- ``finetune_mm``: cross-entropy (Table 4.3). ``supcon_mm``: L = α·L_MM-S + (1 − α)·L_CE (eq. 4.5), L_MM-S the
  MM-SupCon loss (eq. 4.4, :func:`tmf.ssl.losses.mm_supcon`) over the crops' pooled last-stage features of each
  modality, projected (a 2-layer MLP per modality) onto the sphere. Positives: the other modality's view of the
  same crop and every view of the crops whose **dominant scored class** is the same (a crop without a scored
  pixel has none but its own). Why dominant classes and not pixel labels: eqs. 4.2–4.4 compare one representation
  per sample and modality, and the encoders' pooled features are that representation; pixel-level positives
  would need pixel embeddings of each modality before fusion (the fused decoder has none) and a pixel sampler,
  O(pixels²) pairs. The dominant class of a 1,000 px sub-tile covers most of it (Table 2.6's classes are large
  parcels), and the term shapes the encoders, while the cross-entropy trains every pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tmf.data.packed import Packed
from tmf.modalities import DEM, RGB, SUBSETS
from tmf.models.elevation import (
    INPUT_KEYS,
    RGB_CHANNELS,
    FusedEncoder,
    absolute_reference,
    build_elevation_encoder,
    elevation_channels,
    elevation_input,
)
from tmf.models.resnet import normalise_uint8


def load_modal_encoders(backbone: str, elevation: dict | None, path: str | Path | None,
                        modalities: tuple[str, ...]) -> dict[str, nn.Module]:
    """One encoder per modality: from ``path`` (an ``encoder.pt`` of the pretraining stage, docs/file-formats.md) or
    random (``path`` None). The DEM encoder must have been pretrained with the ``elevation`` settings used here
    (encoder shape and input normalisation), else an error names both."""
    from tmf.evaluate.engine import load_encoder

    obj = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"encoder file not found: {path}")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    out: dict[str, nn.Module] = {}
    for m in modalities:
        if m == RGB:
            if obj is not None and "state_dict" not in obj:
                raise ValueError(f"{path}: no RGB encoder (pretrained on {obj.get('modalities')}); the rgb subsets "
                                 "need a method that saw RGB")
            out[m] = load_encoder(backbone, path)
            continue
        enc = build_elevation_encoder(elevation)
        if obj is not None:
            saved = obj.get("dem") if isinstance(obj, dict) else None
            if saved is None:
                raise ValueError(f"{path}: no DEM encoder (method {obj.get('method')!r} did not pretrain on "
                                 "elevation); the dem subsets need a method that saw it")
            want = {k: elevation[k] for k in INPUT_KEYS}
            if saved["config"] != enc.config or saved["input"] != want:
                raise ValueError(f"{path}: its DEM encoder was pretrained with {saved['config']} on input "
                                 f"{saved['input']}, but elevation.encoder / normalise / scale_m / slope give "
                                 f"{enc.config} on {want}")
            enc.load_state_dict(saved["state_dict"])
        out[m] = enc
    return out


class ModalInputs:
    """The model input of packed rows for a subset of modalities: normalised RGB (3 channels) then the elevation
    input (:func:`tmf.models.elevation.elevation_input`), on ``device``."""

    def __init__(self, packed: Packed, modalities: tuple[str, ...], elevation: dict | None, device: torch.device):
        self.packed, self.modalities, self.elevation, self.device = packed, modalities, elevation, device
        self.reference = absolute_reference(packed.manifest) if DEM in modalities and \
            elevation["normalise"] == "absolute" else None

    @property
    def channels(self) -> dict[str, int]:
        return {m: RGB_CHANNELS if m == RGB else elevation_channels(self.elevation) for m in self.modalities}

    def elevation_of(self, rows: np.ndarray) -> torch.Tensor:
        """(n, C, S, S) float32 elevation input of ``rows``."""
        p = self.packed
        dem = torch.from_numpy(np.ascontiguousarray(p.dem[rows])).to(self.device)
        valid = torch.from_numpy(np.ascontiguousarray(p.dem_valid[rows])).to(self.device)
        return elevation_input(dem, valid, self.elevation, self.reference)

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        from tmf.device import memory_format

        parts = []
        if RGB in self.modalities:
            x = torch.from_numpy(np.ascontiguousarray(self.packed.images[rows])).to(self.device)
            parts.append(normalise_uint8(x.permute(0, 3, 1, 2)))
        if DEM in self.modalities:
            parts.append(self.elevation_of(rows))
        return torch.cat(parts, 1).contiguous(memory_format=memory_format(self.device))


def dominant_scored_class(y: torch.Tensor, n_classes: int, ignore: int) -> torch.Tensor:
    """(B,) the most frequent scored target of each crop (B, H, W) (ties: the smaller), −1 where none is scored."""
    flat = y.reshape(y.shape[0], -1)
    counts = F.one_hot(torch.where(flat == ignore, n_classes, flat), n_classes + 1)[..., :n_classes].sum(1)
    return torch.where(counts.sum(1) > 0, counts.argmax(1), -1)


class ModalSupCon(nn.Module):
    """The MM-SupCon term of eq. 4.5: a projection MLP per modality of the fused encoder's pooled last stage, then
    :func:`tmf.ssl.losses.mm_supcon` with the crops' dominant scored classes as labels."""

    def __init__(self, encoder: FusedEncoder, proj_dim: int, temperature: float, n_classes: int, ignore: int):
        super().__init__()
        # the encoder in a list: read here, trained (and registered) as the model's backbone, not a second time
        self.encoder, self.temperature, self.n_classes, self.ignore = [encoder], temperature, n_classes, ignore
        self.projectors = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(e.out_dim, e.out_dim), nn.ReLU(inplace=True), nn.Linear(e.out_dim, proj_dim))
            for m, e in encoder.encoders.items()})

    def forward(self, stages: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        from tmf.ssl.losses import mm_supcon

        pooled = self.encoder[0].pooled_by_modality(stages[-1])
        z = [self.projectors[m](v.float()) for m, v in pooled.items()]
        labels = dominant_scored_class(y, self.n_classes, self.ignore)
        if len(z) == 1 and not _has_pair(labels):  # SupCon on one modality: no two crops of one class here
            return z[0].sum() * 0.0
        return mm_supcon(z, labels, self.temperature)


def _has_pair(labels: torch.Tensor) -> bool:
    lab = labels[labels >= 0]
    return bool(lab.numel() > lab.unique().numel())


def run_finetune_mm(packed: Packed, encoders: dict[str, nn.Module], method: str, fraction: float, seed: int,
                    cfg: dict, device: torch.device, fold, subset: str, alpha: float = 0.0) -> dict:
    """Fine-tune the fused ``encoders`` of ``subset`` on a label fraction of ``fold.train`` and score ``fold.test``
    (:mod:`tmf.evaluate.testsets`); ``alpha`` > 0 adds the MM-SupCon term (``supcon_mm``). ``cfg``: the
    ``evaluate`` section (``finetune``, ``multimodal``) plus ``elevation`` for the dem subsets. Returns the metrics
    dict, ``_confusions`` and ``_examples``, as :func:`tmf.evaluate.finetune.run_finetune`."""
    from tmf.data.minifrance import IGNORE_INDEX
    from tmf.evaluate.data import nested_fraction
    from tmf.evaluate.engine import N_SCORED, TrainPool, example_rows, predict_dense, score_cities
    from tmf.evaluate.finetune import decoder_widths, finetune_steps, train_segmentation
    from tmf.models.decoder import SegmentationModel

    modalities = SUBSETS[subset]
    ft = cfg["finetune"]
    pool_rows = fold.train
    train_rows = nested_fraction(pool_rows, fraction, seed)
    test_rows = fold.test
    elevation = cfg.get("elevation") if DEM in modalities else None
    if DEM in modalities:
        packed.require_dem(f"evaluate.protocols: {'supcon_mm' if alpha else 'finetune_mm'} ({subset})",
                           np.concatenate([train_rows, test_rows]))
    inputs = ModalInputs(packed, modalities, elevation, device)
    gen = torch.Generator(device=device).manual_seed(int(seed))  # draws where the pools live
    torch.manual_seed(int(seed))  # decoder / head initialisation
    fused = FusedEncoder({m: encoders[m] for m in modalities}, inputs.channels)
    widths = decoder_widths(cfg, "conv")
    model = SegmentationModel(fused, N_SCORED, decoder_channels=widths)
    contrast = None
    if alpha > 0:
        mm = cfg["multimodal"]
        contrast = ModalSupCon(fused, int(mm["proj_dim"]), float(mm["temperature"]), N_SCORED, IGNORE_INDEX)
        model.extra_heads["mm_supcon"] = contrast
    extra = inputs.elevation_of(train_rows) if DEM in modalities else None
    pool = TrainPool(packed.images[train_rows], packed.labels[train_rows], device, ft["crop"], ft["augment"],
                     extra=extra, rgb=RGB in modalities)
    enc_scale = float(ft["encoder_lr_scale"])
    steps = finetune_steps(ft, len(train_rows))  # the same schedule as finetune (evaluate.finetune)
    freeze = int(round(float(ft["freeze_encoder_frac"]) * steps))
    train = train_segmentation(model, pool, {**ft, "steps": steps}, device, gen, encoder_lr_scale=enc_scale,
                               freeze_steps=freeze, log_every=max(1, steps // 10), contrast=contrast, alpha=alpha)
    model.eval()
    ex = example_rows(test_rows, int(cfg["examples"]))
    per_city, kept = predict_dense(model, packed, test_rows, device, int(cfg["eval_batch"]), keep=ex, inputs=inputs)
    out = score_cities(per_city)
    out.update({"_confusions": per_city,
        "n_train": int(len(train_rows)), "n_pool": int(len(pool_rows)), "n_test": int(len(test_rows)),
        "level": "pixel", "head": "conv", "modalities": list(modalities), "subset": subset,
        "recipe": {"encoder_lr_scale": enc_scale, "freeze_steps": freeze, "decoder_channels": list(widths),
                   "alpha": float(alpha)},
        "train": dict(train), "_examples": kept,
    })
    return out
