"""Fine-tuning throughput: images/s of the real training step and its ratio to the compute-only bound.

Usage (repository root): ``PYTHONPATH=src python scripts/bench_finetune.py [--device auto] [--batch 16] [--crop 256]``

- **fine-tuning**: ``tmf.evaluate.finetune.train_segmentation`` as the ``finetune`` protocol runs it: crops cut from a
  uint8 pool of sub-tiles held on the device (random data, ``--tiles`` sub-tiles of ``--side`` px), augmentation,
  normalisation, U-Net on a ResNet, cross-entropy, AdamW; bf16 autocast + channels_last on CUDA.
- **compute-only bound**: the same model, batch and optimiser on one float batch already on the device
  (no sampling, no augmentation, no data movement).

The ratio (fine-tuning / bound) says how busy the training loop keeps the device: 1.0 means the data path costs
nothing. ``--aux`` measures a semi-supervised step: ``l1`` / ``l2`` / ``kmeans`` / ``mumford_shah`` the
BerundaNet-late step (an unlabeled batch of ``--unlabeled-batch`` crops through the network and the auxiliary head as
well), ``fixmatch`` the FixMatch step (µ·B unlabeled crops, ``--mu``, each as a weak and a strong RandAugment view in
the labeled batch's forward pass; the bound gets the same views ready-made, so the ratio prices the sampling and
the strong augmentation). images/s count labeled crops, as the step's throughput in labeled images; "crops/s"
counts every crop through the network.
From outside it imports torch, numpy, pandas, PyYAML and jsonschema (tmf.config), so it runs on a bare GPU machine
with those five.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tmf.device import autocast, configure, memory_format, resolve_device
from tmf.evaluate.engine import N_SCORED, TrainPool, masked_cross_entropy
from tmf.evaluate.finetune import build_optimizers, train_segmentation
from tmf.evaluate.semisup import UnlabeledTerm, aux_channels
from tmf.models.decoder import SegmentationModel
from tmf.models.resnet import build_backbone

K = 8  # clusters / segments of the k-means and Mumford-Shah heads (evaluate.semisup.*.k default)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def term_params(args) -> dict:
    """The evaluate.semisup section of ``--aux`` with the schema's defaults (µ from ``--mu``)."""
    from tmf.config import validate

    semi = validate({"evaluate": {"semisup": {"fixmatch": {"mu": args.mu}}}})["evaluate"]["semisup"]
    return semi[args.aux]


def model_for(args, device):
    torch.manual_seed(0)
    aux = aux_channels(args.aux, term_params(args)) if args.aux != "none" else 0
    m = SegmentationModel(build_backbone(args.backbone), N_SCORED, aux_channels=aux)
    return m.to(device=device, memory_format=memory_format(device))


def make_term(args, pool, device):
    if args.aux == "none":
        return None
    n = args.mu * args.batch if args.aux == "fixmatch" else args.unlabeled_batch
    return UnlabeledTerm(args.aux, term_params(args), pool, n, device)


def pool_of(args, device, labels: bool):
    rng = np.random.default_rng(0 if labels else 1)
    images = rng.integers(0, 256, (args.tiles, args.side, args.side, 3), dtype=np.uint8)
    lab = rng.integers(0, 16, (args.tiles, args.side, args.side), dtype=np.uint8) if labels else None
    return TrainPool(images, lab, device, args.crop)


def bench_finetune(args, device) -> tuple[float, float]:
    pool = pool_of(args, device, True)
    term = make_term(args, pool_of(args, device, False), device)
    cfg = {"steps": args.warmup, "batch": args.batch, "lr": 1e-3, "weight_decay": 1e-4, "warmup_frac": 0.0}
    model = model_for(args, device)
    gen = torch.Generator(device=device).manual_seed(0)
    kw = dict(encoder_lr_scale=0.1, freeze_steps=0, term=term)
    train_segmentation(model, pool, cfg, device, gen, **kw)  # warm-up (cudnn autotuning, allocator)
    cfg["steps"] = args.steps
    out = train_segmentation(model, pool, cfg, device, gen, **kw)
    return out["images_per_s"], out["crops_per_s"]


def bench_compute_only(args, device) -> float:
    """The same step on inputs already on the device: no crop sampling, no augmentation, no normalisation."""
    model = model_for(args, device).train()
    opts = build_optimizers(model, 1e-3, 0.1, 1e-4)
    x = torch.randn(args.batch, 3, args.crop, args.crop, device=device).contiguous(
        memory_format=memory_format(device))
    y = torch.randint(0, N_SCORED, (args.batch, args.crop, args.crop), device=device)
    term = make_term(args, pool_of(args, device, False), device)
    drawn = term.sample(torch.Generator(device=device).manual_seed(0)) if term is not None else None
    inputs = torch.cat([x, *term.inputs(drawn)]) if term is not None and term.joint else x

    def step():
        with autocast(device):
            logits = model(inputs)
            loss = masked_cross_entropy(logits[:args.batch], y)
            if term is not None:
                loss = loss + term.weight * term.loss(model, logits[args.batch:], drawn, False)[0]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()

    for _ in range(args.warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return args.steps * args.batch / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--side", type=int, default=512, help="side of the random sub-tiles in the pool")
    p.add_argument("--tiles", type=int, default=64, help="sub-tiles in the pool")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--aux", default="none", choices=["none", "l1", "l2", "kmeans", "mumford_shah", "fixmatch"])
    p.add_argument("--unlabeled-batch", type=int, default=32, help="unlabeled crops per step of the BerundaNet losses")
    p.add_argument("--mu", type=int, default=7, help="FixMatch: unlabeled crops per labeled crop (Sohn et al. 2020)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    configure(device, args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    ft, crops = bench_finetune(args, device)
    bound = bench_compute_only(args, device)
    res = {"device": name, "torch": torch.__version__, "backbone": args.backbone, "batch": args.batch,
           "crop": args.crop, "aux": args.aux, "mu": args.mu if args.aux == "fixmatch" else None, "steps": args.steps,
           "finetune_images_per_s": round(ft, 2), "finetune_crops_per_s": round(crops, 2),
           "compute_only_images_per_s": round(bound, 2), "ratio": round(ft / bound, 3)}
    extra = f" (mu {args.mu})" if args.aux == "fixmatch" else ""
    print(f"{name} | {args.backbone} U-Net, batch {args.batch}, crop {args.crop}, aux {args.aux}{extra}: "
          f"fine-tuning {ft:.1f} images/s ({crops:.1f} crops/s), compute-only bound {bound:.1f} images/s, "
          f"ratio {ft / bound:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
