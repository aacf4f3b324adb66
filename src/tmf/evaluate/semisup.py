"""The unlabeled-data term of a semi-supervised training step (seed 004 ch. 3): BerundaNet-late's auxiliary loss
(§3.2, eq. 3.3) or FixMatch's pseudo-label consistency (§3.3.2, eqs. 3.24–3.26), and what each needs of the
network (an auxiliary head) and of the batch.

- BerundaNet-late (``l1``, ``l2``, ``kmeans``, ``mumford_shah``): a batch of ``finetune.unlabeled_batch`` weakly
  augmented unlabeled crops goes through the shared encoder–decoder and the auxiliary 1×1 head (3 channels, a
  sigmoid: the reconstructed image in [0, 1]; or K channels, a softmax: the soft segmentation); L_u compares it
  with the image (:mod:`tmf.evaluate.losses`).
- FixMatch (``fixmatch``): µ·B unlabeled crops, each as a weak view α(u) (crop, flip, 90° rotation) and a strong
  view A(α(u)) (RandAugment, :mod:`tmf.evaluate.augment`), go through the network *in the same forward pass as the
  labeled batch* (one batch-norm batch, as Sohn et al. 2020 and the implementation seed 004 uses); the weak view's
  confident argmax (ω) is the pseudo-label map, moved by the strong view's geometry, and L_u the cross-entropy of
  the strong view's logits against it (eq. 3.25). Everything stays on the device; no per-sample loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from tmf.data.minifrance import IGNORE_INDEX
from tmf.device import memory_format
from tmf.evaluate.augment import strong_augment, warp_labels
from tmf.evaluate.engine import TrainPool, to_input
from tmf.evaluate.losses import (
    fixmatch_loss,
    l1_reconstruction,
    l2_reconstruction,
    mumford_shah_loss,
    pseudo_labels,
    relaxed_kmeans_loss,
)
from tmf.models.resnet import IMAGENET_MEAN, IMAGENET_STD

AUXILIARY = ("l1", "l2", "kmeans", "mumford_shah")  # BerundaNet-late's losses: an auxiliary head
TERMS = (*AUXILIARY, "fixmatch")


def aux_channels(term: str | None, params: dict) -> int:
    """Width of the auxiliary head a term needs: 3 (an RGB reconstruction), K (a soft segmentation) or 0."""
    if term in ("l1", "l2"):
        return 3
    if term in ("kmeans", "mumford_shah"):
        return int(params["k"])
    return 0


def _normalise01(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] → ImageNet-normalised, in the device's memory format (as ``to_input``)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=memory_format(device))


@dataclass
class UnlabeledTerm:
    """λ·L_u of one method: ``name`` (a key of ``evaluate.semisup``), its ``params`` (that section), the pool of
    unlabeled crops and the number of crops per step. ``joint``: its inputs join the labeled batch's forward pass.
    """

    name: str
    params: dict[str, Any]
    pool: TrainPool
    n: int
    device: torch.device
    weight: float = field(init=False)

    def __post_init__(self):
        if self.name not in TERMS:
            raise ValueError(f"unknown unlabeled term {self.name!r}; expected one of {TERMS}")
        self.weight = float(self.params["lambda"])

    @property
    def joint(self) -> bool:
        return self.name == "fixmatch"

    def sample(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Draw this step's unlabeled crops (and FixMatch's strong views) from ``gen``."""
        u8, _ = self.pool.sample(self.n, gen)
        if not self.joint:
            return {"u8": u8}
        p = self.params
        strong, theta = strong_augment(u8.float() / 255, gen, int(p["n_ops"]), float(p["magnitude"]))
        return {"weak": to_input(u8, self.device), "strong": _normalise01(strong, self.device), "theta": theta}

    def inputs(self, drawn: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """What joins the labeled batch in the forward pass: FixMatch's weak and strong views, else nothing."""
        return [drawn["weak"], drawn["strong"]] if self.joint else []

    def loss(self, model, extra_logits: torch.Tensor, drawn: dict[str, torch.Tensor],
             frozen: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(L_u, share of confident weak-view pixels or None)``. ``extra_logits``: the logits of :meth:`inputs`
        (FixMatch); BerundaNet runs its own forward pass through the auxiliary head."""
        if self.joint:
            weak, strong = extra_logits.split(self.n)
            target = pseudo_labels(weak, float(self.params["threshold"]))
            share = (target != IGNORE_INDEX).float().mean()
            return fixmatch_loss(strong, warp_labels(target, drawn["theta"])), share
        u8 = drawn["u8"]
        u = to_input(u8, self.device)
        with torch.set_grad_enabled(not frozen):
            feats = model.backbone.feature_maps(u)
        out = model.aux_head(model.decoder(feats, u.shape[-2:])).float()
        u01 = u8.float() / 255.0
        if self.name == "l1":
            return l1_reconstruction(torch.sigmoid(out), u01), None
        if self.name == "l2":
            return l2_reconstruction(torch.sigmoid(out), u01), None
        if self.name == "kmeans":
            return relaxed_kmeans_loss(torch.softmax(out, 1), u01, 1.0, float(self.params["alpha_reg"])), None
        return mumford_shah_loss(torch.softmax(out, 1), u01, float(self.params["alpha_reg"])), None
