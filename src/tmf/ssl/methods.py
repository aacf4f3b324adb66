"""The registry of self-supervised pretraining methods (SPEC.md §4): heads, targets and queues around the losses of
:mod:`tmf.ssl.losses`.

A method is an ``nn.Module`` holding the backbone being trained (``backbone``, a :class:`tmf.models.resnet.ResNet`),
its heads, and for BYOL / MoCo-v2 / DenseCL an EMA copy (no gradient) and queues. The training engine
(:mod:`tmf.ssl.train`) asks it for its crops (:meth:`SSLMethod.crop_specs`), calls it on the augmented views
(:meth:`SSLMethod.forward` → :class:`StepOutput`), steps the optimizer over the parameters that require grad, then
calls :meth:`SSLMethod.update_targets`. Parameters come from ``pretrain.method_params.<name>`` of the params
schema (the one place where they and their defaults are defined); :func:`default_method_cfg` reads them there.

Embeddings go through :func:`tmf.ssl.distributed.gather` before batch losses, so that data-parallel runs compute
the loss over the global batch (a no-op in one process). MoCo's shuffled batch norm is not implemented (the
batch-norm of the key encoder sees its own batch, as in one-GPU MoCo).
"""

from __future__ import annotations

import copy
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from tmf.ssl import distributed as D
from tmf.ssl import losses as L
from tmf.ssl.method_base import (
    TWO_VIEWS,
    CropSpec,
    QueuedMethod,
    SSLMethod,
    StepOutput,
    ema_update,
    frozen_copy,
    mlp,
    unit_rows,
)
from tmf.ssl.multimodal import MM_METHODS

__all__ = ["METHODS", "CropSpec", "SSLMethod", "StepOutput", "TWO_VIEWS", "build_method", "default_method_cfg",
           "ema_update", "mlp"]


class _Projected(SSLMethod):
    """Backbone → projection MLP on each view; a symmetric loss of the first two projections."""

    n_layers, batch_norm = 2, False

    def __init__(self, backbone: nn.Module, cfg: dict):
        super().__init__(backbone, cfg)
        self.projector = mlp(self.feat_dim, cfg["hidden_dim"], cfg["proj_dim"], self.n_layers, self.batch_norm)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone.features(x))

    def loss(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        self._check_views(views)
        z_a, z_b = self.embed(views[0]), self.embed(views[1])
        loss = self.loss(D.gather(z_a.float()), D.gather(z_b.float()))
        return StepOutput(loss, unit_rows(z_a), unit_rows(z_b))


class SimCLR(_Projected):
    name = "simclr"

    def loss(self, z_a, z_b):
        return L.nt_xent(z_a, z_b, self.cfg["temperature"])


class BarlowTwins(_Projected):
    name = "barlow_twins"
    n_layers, batch_norm = 3, True

    def loss(self, z_a, z_b):
        return L.barlow_twins(z_a, z_b, self.cfg["lambd"])


class _IOT(_Projected):
    coupling = "ua"

    def loss(self, z_a, z_b):
        return L.iot_loss(z_a, z_b, self.cfg["eps"], self.coupling, self.cfg.get("iters", 1),
                          self.cfg["uniformity"])


class IOTUa(_IOT):
    name, coupling = "iot_ua", "ua"


class IOTU1(_IOT):
    name, coupling = "iot_u1", "u1"


class IOTUab(_IOT):
    name, coupling = "iot_uab", "uab"


class OTSample(_Projected):
    name = "ot_sample"

    def loss(self, z_a, z_b):
        return L.ot_sample(z_a, z_b, self.cfg["eps"], self.cfg["iters"])


class OTFeature(_Projected):
    name = "ot_feature"

    def loss(self, z_a, z_b):
        return L.ot_feature(z_a, z_b, self.cfg["eps"], self.cfg["iters"])


class SSW(_Projected):
    name = "ssw"

    def loss(self, z_a, z_b):
        return L.ssw_ssl(z_a, z_b, self.cfg["lambd"], self.cfg["n_projections"])


class SW(_Projected):
    name = "sw"

    def loss(self, z_a, z_b):
        return L.sw_ssl(z_a, z_b, self.cfg["lambd"], self.cfg["n_projections"])


class WangIsola(_Projected):
    name = "wang_isola"

    def loss(self, z_a, z_b):
        return L.wang_isola(z_a, z_b, self.cfg["t"], self.cfg["weight"])


class HyDeS(SSLMethod):
    """Multi-crop (2 global + 6 local by default) vMF density shaping; views of the same size go through the
    backbone together (as DINO), so batch norm sees each crop resolution as one batch."""

    name = "hydes"

    def __init__(self, backbone: nn.Module, cfg: dict):
        super().__init__(backbone, cfg)
        self.projector = mlp(self.feat_dim, cfg["hidden_dim"], cfg["proj_dim"])

    def crop_specs(self) -> list[CropSpec]:
        c = self.cfg
        return ([CropSpec(1.0, tuple(c["global_scale"]))] * c["n_global"]
                + [CropSpec(c["local_size_factor"], tuple(c["local_scale"]))] * c["n_local"])

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        self._check_views(views)
        if len(views) < 2:
            raise ValueError("hydes: needs at least 2 views (n_global + n_local >= 2)")
        n = views[0].shape[0]
        z: list[torch.Tensor | None] = [None] * len(views)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, v in enumerate(views):
            groups.setdefault(tuple(v.shape[1:]), []).append(i)
        for idx in groups.values():
            out = self.projector(self.backbone.features(torch.cat([views[i] for i in idx])))
            for k, i in enumerate(idx):
                z[i] = out[k * n:(k + 1) * n]
        loss = L.hydes([D.gather(t.float()) for t in z], self.cfg["kappa"], self.cfg["local_weight"])
        return StepOutput(loss, unit_rows(z[0]), unit_rows(z[1]))


class BYOL(SSLMethod):
    """Online backbone → projector → predictor; target backbone → projector as an EMA of the online ones with
    momentum 1 − (1 − m₀)(cos(π·progress) + 1)/2 (m₀ = 0.996 → 1). Symmetrised loss."""

    name = "byol"

    def __init__(self, backbone: nn.Module, cfg: dict):
        super().__init__(backbone, cfg)
        h, p = cfg["hidden_dim"], cfg["proj_dim"]
        self.projector = mlp(self.feat_dim, h, p, 2, batch_norm=True)
        self.predictor = mlp(p, h, p, 2, batch_norm=True)
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)
        self.momentum = float(cfg["momentum"])

    def momentum_at(self, progress: float) -> float:
        m0 = float(self.cfg["momentum"])
        return 1.0 - (1.0 - m0) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1.0) / 2.0

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        self._check_views(views)
        za = self.projector(self.backbone.features(views[0]))
        zb = self.projector(self.backbone.features(views[1]))
        pa, pb = self.predictor(za), self.predictor(zb)
        with torch.no_grad():
            ta = self.target_projector(self.target_backbone.features(views[0]))
            tb = self.target_projector(self.target_backbone.features(views[1]))
        loss = L.byol(pa.float(), tb.float()) + L.byol(pb.float(), ta.float())
        return StepOutput(loss, unit_rows(za), unit_rows(zb), {"momentum": self.momentum})

    def update_targets(self, progress: float) -> None:
        self.momentum = self.momentum_at(progress)
        ema_update(self.backbone, self.target_backbone, self.momentum)
        ema_update(self.projector, self.target_projector, self.momentum)


class MoCoV2(QueuedMethod):
    """MoCo-v2: query = backbone → 2-layer MLP; key = EMA copy (m = 0.999); InfoNCE against the queue (τ = 0.2);
    the batch's keys are enqueued after the loss."""

    name = "mocov2"

    def __init__(self, backbone: nn.Module, cfg: dict):
        super().__init__(backbone, cfg)
        self.projector = mlp(self.feat_dim, cfg["hidden_dim"], cfg["proj_dim"])
        self.key_backbone = frozen_copy(backbone)
        self.key_projector = frozen_copy(self.projector)
        self._init_queue("key", int(cfg["queue_size"]), cfg["proj_dim"])

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        self._check_views(views)
        q = self.projector(self.backbone.features(views[0]))
        with torch.no_grad():
            k = F.normalize(self.key_projector(self.key_backbone.features(views[1])).float(), dim=1)
        k_all = D.gather(k)
        loss = L.moco_infonce(D.gather(q.float()), k_all, self.key_queue.clone(), self.cfg["temperature"])
        self._enqueue("key", k_all)
        return StepOutput(loss, unit_rows(q), unit_rows(k))

    def update_targets(self, progress: float) -> None:
        m = float(self.cfg["momentum"])
        ema_update(self.backbone, self.key_backbone, m)
        ema_update(self.projector, self.key_projector, m)


class _Dense(QueuedMethod):
    """DenseCL and its OT matchings (seed 000 §3.3): global MLP head on the pooled last block and a dense head
    (1×1 conv → ReLU → 1×1 conv) on ``backbone.feature_maps(x)[-1]``; EMA key encoder (m = 0.999); a global and a
    dense queue (pooled dense keys), or in-batch negatives when queue_size is 0."""

    matching = "argmax"

    def __init__(self, backbone: nn.Module, cfg: dict):
        super().__init__(backbone, cfg)
        h, p = cfg["hidden_dim"], cfg["proj_dim"]
        self.projector = mlp(self.feat_dim, h, p)
        self.dense_projector = nn.Sequential(nn.Conv2d(self.feat_dim, h, 1), nn.ReLU(inplace=True),
                                             nn.Conv2d(h, p, 1))
        self.key_backbone = frozen_copy(backbone)
        self.key_projector = frozen_copy(self.projector)
        self.key_dense_projector = frozen_copy(self.dense_projector)
        self.queue_size = int(cfg["queue_size"])
        if self.queue_size > 0:
            self._init_queue("global", self.queue_size, p)
            self._init_queue("dense", self.queue_size, p)

    @staticmethod
    def _heads(backbone, projector, dense_projector, x):
        fmap = backbone.feature_maps(x)[-1]
        g = projector(torch.flatten(F.adaptive_avg_pool2d(fmap, 1), 1))
        f = dense_projector(fmap).flatten(2).transpose(1, 2)  # (N, P, d)
        return g, f

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        self._check_views(views)
        g_q, f_q = self._heads(self.backbone, self.projector, self.dense_projector, views[0])
        with torch.no_grad():
            g_k, f_k = self._heads(self.key_backbone, self.key_projector, self.key_dense_projector, views[1])
            g_k = F.normalize(g_k.float(), dim=1)
            f_k = F.normalize(f_k.float(), dim=2)
        g_k_all, f_k_all = D.gather(g_k), D.gather(f_k)
        queue = (self.global_queue.clone(), self.dense_queue.clone()) if self.queue_size > 0 else None
        c = self.cfg
        loss = L.dense_contrastive(D.gather(f_q.float()), f_k_all, D.gather(g_q.float()), g_k_all,
                                   matching=self.matching, soft=bool(c.get("soft", False)),
                                   eps=float(c.get("eps", 10.0)), reg_m=float(c.get("reg_m", 0.05)),
                                   temperature=c["temperature"], queue=queue)
        if self.queue_size > 0:
            self._enqueue("global", g_k_all)
            self._enqueue("dense", F.normalize(f_k_all.mean(1), dim=1))
        return StepOutput(loss, unit_rows(g_q), unit_rows(g_k))

    def update_targets(self, progress: float) -> None:
        m = float(self.cfg["momentum"])
        ema_update(self.backbone, self.key_backbone, m)
        ema_update(self.projector, self.key_projector, m)
        ema_update(self.dense_projector, self.key_dense_projector, m)


class DenseCL(_Dense):
    name, matching = "densecl", "argmax"


class DenseOTExact(_Dense):
    name, matching = "dense_ot_exact", "exact"


class DenseOTEntropic(_Dense):
    name, matching = "dense_ot_entropic", "entropic"


class DenseOTUnbalanced(_Dense):
    name, matching = "dense_ot_unbalanced", "unbalanced"


class DenseOTUniform(_Dense):
    name, matching = "dense_ot_uniform", "uniform"


METHODS: dict[str, type[SSLMethod]] = {
    cls.name: cls
    for cls in (SimCLR, MoCoV2, BYOL, BarlowTwins, IOTUa, IOTU1, IOTUab, OTSample, OTFeature, SSW, SW, WangIsola,
                HyDeS, DenseCL, DenseOTExact, DenseOTEntropic, DenseOTUnbalanced, DenseOTUniform, *MM_METHODS)
}


@functools.lru_cache(maxsize=1)
def _method_params_schema() -> dict:
    # read the schema file directly (not through tmf.config) so that the methods need only torch and PyYAML
    from importlib import resources

    import yaml

    text = resources.files("tmf").joinpath("schema/params.schema.yaml").read_text()
    return yaml.safe_load(text)["properties"]["pretrain"]["properties"]["method_params"]["properties"]


def _schema_properties(name: str) -> dict:
    try:
        return _method_params_schema()[name]["properties"]
    except KeyError:
        raise ValueError(f"pretraining method {name!r} has no parameters in the schema "
                         f"(pretrain.method_params.{name})") from None


def _check_name(name: str) -> None:
    if name not in METHODS:
        raise ValueError(f"unknown pretraining method {name!r}; expected one of {sorted(METHODS)}")


def default_method_cfg(name: str) -> dict:
    """The defaults of ``pretrain.method_params.<name>`` from the params schema."""
    _check_name(name)
    return {k: copy.deepcopy(v["default"]) for k, v in _schema_properties(name).items()}


def build_method(name: str, backbone: nn.Module, cfg: dict | None = None, elevation: dict | None = None) -> SSLMethod:
    """Method ``name`` around ``backbone`` with parameters ``cfg`` (missing ones take the schema's defaults;
    unknown ones are an error naming them). ``elevation``: the ``elevation`` params section, which the
    multi-modal methods build their DEM encoder from (:mod:`tmf.ssl.multimodal`)."""
    _check_name(name)
    full = default_method_cfg(name)
    unknown = sorted(set(cfg or {}) - set(full))
    if unknown:
        raise ValueError(f"pretrain.method_params.{name}: unknown parameter(s) {unknown}; expected {sorted(full)}")
    full.update(cfg or {})
    cls = METHODS[name]
    if hasattr(cls, "build"):  # the multi-modal family: encoders per modality
        return cls.build(backbone, full, elevation)
    return cls(backbone, full)
