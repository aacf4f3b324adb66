"""Full fine-tuning of an encoder–decoder (SPEC.md §5; seed 000 §4.1 Table 4.2 protocol; seed 004 Table 3.1).

One recipe, several starting points and label pools (docs/evaluation.md):

- SSL methods, ``random`` and ``imagenet``: the pretrained (or random) ResNet becomes the U-Net's encoder; the
  encoder is frozen for the first ``freeze_encoder_frac`` of the steps (the decoder learns on fixed features, so a
  good encoder is not wrecked by a random decoder's gradients), then trained at ``lr × encoder_lr_scale``.
  ``random`` uses exactly this recipe, so "pretrained vs random" isolates the encoder's weights.
- ``supervised`` (seed 004 Table 3.1 "Supervised"): a U-Net trained from scratch on the labeled cities, every
  part at ``lr``, no freezing (the recipe a from-scratch network needs).
- ``oracle`` (Table 3.1 "Oracle"): as ``supervised``, with the labels of all eight training cities.
- ``berundanet_l1`` / ``_l2`` / ``_kmeans`` / ``_mumford_shah`` (seed 004 §3.2.2 BerundaNet-late, §3.2.3,
  Table 3.3): as ``supervised``, plus an auxiliary 1×1 head on the shared decoder and, at every step, λ·L_u on a
  batch of unlabeled-city sub-tiles: L1 / L2 reconstruction of the image (eqs. 3.6, 3.7), the relaxed k-means loss
  (eqs. 3.8–3.11) or the Mumford–Shah loss (eq. 3.12).
- ``fixmatch`` (seed 004 §3.3.2): as ``supervised``, plus λ_u·L_u of FixMatch on µ·B unlabeled crops per step
  (eqs. 3.24–3.26); the ``finetune_fixmatch`` protocol adds the same term to the SSL encoders' recipe.
- the ``segnet`` protocol trains the from-scratch methods as a SegNet instead of the U-Net (Table 3.1).

The unlabeled terms are :mod:`tmf.evaluate.semisup`. The label fraction selects a seeded, nested subset of the label pool (``tmf.evaluate.data.nested_fraction``).
Optimiser AdamW for every head (plus Riemannian Adam from geoopt for the prototypes of the horospherical head of
seed 000 ch. 5, and for nothing else), linear warm-up + cosine decay; bf16 autocast + channels_last on CUDA;
float32 on the CPU.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from torch import nn

from tmf.data.packed import Packed
from tmf.device import autocast, memory_format
from tmf.evaluate.data import nested_fraction, unlabeled_pool
from tmf.evaluate.engine import (
    N_SCORED,
    TrainPool,
    example_rows,
    masked_cross_entropy,
    predict_dense,
    score_cities,
)
from tmf.evaluate.semisup import UnlabeledTerm, aux_channels
from tmf.evaluate.testsets import Fold
from tmf.models.decoder import SegmentationModel
from tmf.models.segnet import segnet
from tmf.plan import TRAINED_BASELINES as SCRATCH_METHODS
from tmf.plan import architecture, semisup_term
from tmf.schedule import lr_at

log = logging.getLogger(__name__)

HEAD_OF_PROTOCOL = {"finetune": "conv", "finetune_horospherical": "horospherical",
                    "finetune_euclidean": "euclidean", "finetune_fixmatch": "conv", "segnet": "conv"}


def build_head(kind: str, cfg: dict, seed: int):
    """Head factory for ``SegmentationModel``: ``conv`` (1×1 conv, default) or a head of tmf.models.hyperbolic."""
    if kind == "conv":
        return None
    from tmf.models.hyperbolic import make_head

    h = cfg["hyperbolic"]
    if kind == "horospherical":  # φ keeps the head's λ = 0.5 (seed 000 §5.3.3): it cancels in the softmax
        return lambda c: make_head("horospherical", c, N_SCORED, h["dim"], prototypes=h["prototypes"], seed=seed)
    return lambda c: make_head("euclidean", c, N_SCORED, h["dim"])


def decoder_widths(cfg: dict, head: str) -> tuple[int, ...]:
    """``finetune.decoder_channels``, with the last width raised to the head's dimension d for the horospherical and
    Euclidean heads: their embedding ``u = conv1x1(features) ∈ R^d`` has rank ≤ the number of decoder channels, so
    a d = 128 head on 16 channels (the default decoder) would compare 16-d embeddings, not 128-d ones (seed 000
    Table 5.3). Smaller d keep the configured decoder; both heads at one d always share the same decoder."""
    widths = [int(c) for c in cfg["finetune"]["decoder_channels"]]
    if head != "conv":
        widths[-1] = max(widths[-1], int(cfg["hyperbolic"]["dim"]))
    return tuple(widths)


def build_optimizers(model: SegmentationModel, lr: float, encoder_lr_scale: float,
                     weight_decay: float) -> list[torch.optim.Optimizer]:
    """AdamW over the encoder (``lr × encoder_lr_scale``), decoder and head (``lr``) groups, the same for every head,
    plus Riemannian Adam over the horospherical head's prototypes (``tmf.models.optim``). Each group
    keeps its ``base_lr`` for the schedule."""
    from tmf.models.optim import make_optimizers

    parts = model.parameter_groups()
    groups = [{"name": "encoder", "params": parts["encoder"], "lr": lr * encoder_lr_scale, "weight_decay": weight_decay},
              {"name": "decoder", "params": parts["decoder"], "lr": lr, "weight_decay": weight_decay},
              {"name": "head", "params": parts["head"], "lr": lr, "weight_decay": weight_decay}]
    opts = make_optimizers(groups, lr, weight_decay)
    for opt in opts:
        for g in opt.param_groups:
            g["base_lr"] = g["lr"]
    return opts


def finetune_steps(ft: dict, n_train: int) -> int:
    """Optimiser steps of a fine-tuning job on ``n_train`` sub-tiles (``evaluate.finetune``): ``steps`` when it is
    positive (every label fraction alike), else ``ceil(epochs · n_train / batch)`` within ``[min_steps, max_steps]``
    — a schedule that grows with the label pool, as training each fraction to convergence does (seed 000 Table 4.2
    protocol; the floor and cap are ours)."""
    if int(ft["steps"]) > 0:
        return int(ft["steps"])
    if n_train < 1:
        raise ValueError("finetune_steps: no training sub-tile")
    lo, hi = int(ft["min_steps"]), int(ft["max_steps"])
    if hi < lo:
        raise ValueError(f"evaluate.finetune.max_steps = {hi} is below min_steps = {lo}")
    return min(hi, max(lo, math.ceil(float(ft["epochs"]) * n_train / int(ft["batch"]) - 1e-9)))


def train_segmentation(model: SegmentationModel, pool: TrainPool, cfg: dict, device: torch.device,
                       gen: torch.Generator, *, encoder_lr_scale: float, freeze_steps: int,
                       term: UnlabeledTerm | None = None, log_every: int = 0, contrast=None,
                       alpha: float = 0.0) -> dict[str, Any]:
    """Train ``model`` for ``cfg['steps']`` steps on batches of ``pool``, plus λ·L_u of ``term`` (semi-supervised).
    ``contrast(stage_outputs, y) → scalar``: a representation term weighted ``alpha`` against the cross-entropy,
    L = α·contrast + (1 − α)·CE (MM-SupCon + CE, seed 000 eq. 4.5; tmf.evaluate.multimodal).

    Returns ``{"steps", "seconds", "images_per_s", "crops_per_s", "final_loss", "history": [[step, loss], ...]}``
    and, with a term, ``final_unlabeled_loss``, ``confident_share`` (FixMatch: share of unlabeled pixels above ω,
    else ``None``) and ``history_unlabeled: [[step, L_u, share], ...]``. ``images_per_s`` counts the labeled crops,
    ``crops_per_s`` every crop through the network (labeled, unlabeled, weak and strong views).
    """
    steps, batch = int(cfg["steps"]), int(cfg["batch"])
    opts = build_optimizers(model, float(cfg["lr"]), encoder_lr_scale, float(cfg["weight_decay"]))
    groups = [g for opt in opts for g in opt.param_groups]
    warmup = int(round(float(cfg["warmup_frac"]) * steps))
    model.to(device=device, memory_format=memory_format(device))
    model.train()
    history, history_u, losses, tail_u, tail_share = [], [], [], [], []
    n_images = n_crops = 0
    t0 = time.perf_counter()
    for step in range(steps):
        frozen = step < freeze_steps
        f = lr_at(step, steps, 1.0, warmup)
        for g in groups:
            g["lr"] = g["base_lr"] * f * (0.0 if (frozen and g["name"] == "encoder") else 1.0)
        model.backbone.train(not frozen)
        x8, y = pool.sample(batch, gen)
        x = pool.to_input(x8)  # the RGB, and the pool's extra channels (elevation) after them
        drawn = term.sample(gen) if term is not None else None
        extra = term.inputs(drawn) if term is not None else []
        inputs = torch.cat([x, *extra]) if extra else x
        with autocast(device):
            with torch.set_grad_enabled(not frozen):
                feats = model.backbone.feature_maps(inputs)
            logits = model.head(model.decoder(feats, inputs.shape[-2:]))
            loss = masked_cross_entropy(logits[:batch], y)
            if contrast is not None and alpha > 0:
                loss = (1 - alpha) * loss + alpha * contrast([f[:batch] for f in feats], y)
            if term is not None:
                lu, share = term.loss(model, logits[batch:], drawn, frozen)
                loss = loss + term.weight * lu
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()
        n_images += batch
        n_crops += int(inputs.shape[0]) + (term.n if term is not None and not term.joint else 0)
        if log_every and (step % log_every == 0 or step == steps - 1):
            lv = float(loss.detach())
            history.append([step, lv])
            if term is not None:
                history_u.append([step, float(lu.detach()), float(share) if share is not None else None])
            log.info("step %d/%d loss %.4f%s", step, steps, lv,
                     f" L_u {history_u[-1][1]:.4f}" if term is not None else "")
        if step >= steps - 10:
            losses.append(loss.detach())
            if term is not None:
                tail_u.append(lu.detach())
                if share is not None:
                    tail_share.append(share)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    out = {"steps": steps, "seconds": seconds, "images_per_s": n_images / max(seconds, 1e-9),
           "crops_per_s": n_crops / max(seconds, 1e-9),
           "final_loss": float(torch.stack(losses).mean()) if losses else float("nan"), "history": history}
    if term is not None:
        out["final_unlabeled_loss"] = float(torch.stack(tail_u).mean()) if tail_u else float("nan")
        out["confident_share"] = float(torch.stack(tail_share).mean()) if tail_share else None
        out["history_unlabeled"] = history_u
    return out


def build_model(protocol: str, backbone: nn.Module | None, cfg: dict, head: str, seed: int, aux: int):
    """The network of a fine-tuning protocol: the U-Net on ``backbone`` or, for ``segnet``, a SegNet."""
    if architecture(protocol) == "segnet":
        return segnet(N_SCORED, cfg["segnet"]["channels"], head=build_head(head, cfg, seed), aux_channels=aux)
    return SegmentationModel(backbone, N_SCORED, head=build_head(head, cfg, seed),
                             decoder_channels=decoder_widths(cfg, head), aux_channels=aux)


def run_finetune(packed: Packed, backbone: nn.Module | None, method: str, fraction: float, seed: int, cfg: dict,
                 device: torch.device, fold: Fold, head: str = "conv", protocol: str = "finetune") -> dict[str, Any]:
    """Fine-tune on a label fraction of ``fold.train`` and score ``fold.test`` (:mod:`tmf.evaluate.testsets`).
    ``cfg`` is the ``evaluate`` section; ``backbone`` the encoder (``None`` for the ``segnet`` protocol, which
    builds its own).

    Returns the metrics dict (without the job's identity), ``_confusions`` (per city) and ``_examples`` for the
    figure.
    """
    ft = cfg["finetune"]
    frame = packed.manifest
    pool_rows = fold.train
    train_rows = nested_fraction(pool_rows, fraction, seed)
    aux = semisup_term(protocol, method)
    semi = cfg["semisup"][aux] if aux is not None else {}
    scratch = method in SCRATCH_METHODS
    gen = torch.Generator(device=device).manual_seed(int(seed))  # draws where the pools live: no host sync
    torch.manual_seed(int(seed))  # decoder / head initialisation
    model = build_model(protocol, backbone, cfg, head, seed, aux_channels(aux, semi))
    pool = TrainPool(packed.images[train_rows], packed.labels[train_rows], device, ft["crop"], ft["augment"])
    term = None
    if aux is not None:
        urows = unlabeled_pool(frame)
        n = int(semi["mu"]) * int(ft["batch"]) if aux == "fixmatch" else int(ft["unlabeled_batch"])
        term = UnlabeledTerm(aux, semi, TrainPool(packed.images[urows], None, device, ft["crop"], ft["augment"]),
                             n, device)
    enc_scale = 1.0 if scratch else float(ft["encoder_lr_scale"])
    steps = finetune_steps(ft, len(train_rows))
    freeze = 0 if scratch else int(round(float(ft["freeze_encoder_frac"]) * steps))
    train = train_segmentation(model, pool, {**ft, "steps": steps}, device, gen, encoder_lr_scale=enc_scale,
                               freeze_steps=freeze, term=term, log_every=max(1, steps // 10))
    model.eval()
    test_rows = fold.test
    ex = example_rows(test_rows, int(cfg["examples"]))
    per_city, kept = predict_dense(model, packed, test_rows, device, int(cfg["eval_batch"]), keep=ex)
    out = score_cities(per_city)
    arch = architecture(protocol)
    out.update({"_confusions": per_city,
        "n_train": int(len(train_rows)), "n_pool": int(len(pool_rows)), "n_test": int(len(test_rows)),
        "n_unlabeled": int(term.pool.n) if term is not None else 0, "level": "pixel", "head": head,
        "architecture": arch,
        "recipe": {"encoder_lr_scale": enc_scale, "freeze_steps": freeze,
                   "decoder_channels": list(decoder_widths(cfg, head)) if arch == "unet" else None,
                   "segnet_channels": list(cfg["segnet"]["channels"]) if arch == "segnet" else None,
                   "aux": aux, "aux_weight": term.weight if term is not None else 0.0,
                   "unlabeled_per_step": term.n if term is not None else 0, "semisup": semi or None},
        "train": {k: v for k, v in train.items()},
        "_examples": kept,
        "_model": model,  # what tmf.evaluate.saved_model saves for the maps, and how to rebuild it
        "_architecture": {"kind": arch, **({"channels": list(cfg["segnet"]["channels"])} if arch == "segnet" else
                                           {"backbone": cfg["backbone"],
                                            "decoder_channels": list(decoder_widths(cfg, head))}),
                          "head": head, "head_dim": int(cfg["hyperbolic"]["dim"]) if head != "conv" else None,
                          "aux_channels": aux_channels(aux, semi)},
    })
    return out
