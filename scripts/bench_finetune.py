"""Fine-tuning throughput: images/s of the real training step and its ratio to the compute-only bound.

Usage (repository root): ``PYTHONPATH=src python scripts/bench_finetune.py [--device auto] [--batch 16] [--crop 256]``

- **fine-tuning**: ``tmf.evaluate.finetune.train_segmentation`` as the ``finetune`` protocol runs it: crops cut from a
  uint8 pool of sub-tiles held on the device (random data, ``--tiles`` sub-tiles of ``--side`` px), augmentation,
  normalisation, U-Net on a ResNet, cross-entropy, AdamW; bf16 autocast + channels_last on CUDA.
- **compute-only bound**: the same model, batch and optimiser on one float batch already on the device
  (no sampling, no augmentation, no data movement).

The ratio (fine-tuning / bound) says how busy the training loop keeps the device: 1.0 means the data path costs
nothing. ``--aux kmeans`` measures the BerundaNet-late step (an unlabeled batch through the network as well).
Imports only torch, numpy and pandas from outside, so it runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from tmf.device import autocast, configure, memory_format, resolve_device
from tmf.evaluate.engine import N_SCORED, TrainPool
from tmf.evaluate.finetune import build_optimizers, train_segmentation
from tmf.evaluate.losses import relaxed_kmeans_loss
from tmf.models.decoder import SegmentationModel
from tmf.models.resnet import build_backbone


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_for(args, device):
    torch.manual_seed(0)
    aux = {"none": 0, "kmeans": 8}[args.aux]
    m = SegmentationModel(build_backbone(args.backbone), N_SCORED, aux_channels=aux)
    return m.to(device=device, memory_format=memory_format(device))


def bench_finetune(args, device) -> float:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.tiles, args.side, args.side, 3), dtype=np.uint8)
    labels = rng.integers(0, 16, (args.tiles, args.side, args.side), dtype=np.uint8)
    pool = TrainPool(images, labels, device, args.crop)
    unl = TrainPool(images, None, device, args.crop) if args.aux != "none" else None
    cfg = {"batch": args.batch, "unlabeled_batch": args.batch, "lr": 1e-3, "weight_decay": 1e-4, "warmup_frac": 0.0}
    model = model_for(args, device)
    gen = torch.Generator().manual_seed(0)
    kw = dict(encoder_lr_scale=0.1, freeze_steps=0, unlabeled=unl,
              aux=None if args.aux == "none" else args.aux, aux_weight=1.0)
    train_segmentation(model, pool, cfg, device, gen, steps=args.warmup, **kw)  # warm-up (cudnn, allocator)
    out = train_segmentation(model, pool, cfg, device, gen, steps=args.steps, **kw)
    return out["images_per_s"]


def bench_compute_only(args, device) -> float:
    model = model_for(args, device).train()
    opts = build_optimizers(model, 1e-3, 0.1, 1e-4)
    x = torch.randn(args.batch, 3, args.crop, args.crop, device=device).contiguous(
        memory_format=memory_format(device))
    y = torch.randint(0, N_SCORED, (args.batch, args.crop, args.crop), device=device)
    x01 = torch.rand(args.batch, 3, args.crop, args.crop, device=device)

    def step():
        with autocast(device):
            if args.aux == "none":
                loss = F.cross_entropy(model(x).float(), y)
            else:
                logits = model(x)
                out = model.auxiliary(x).float()
                loss = F.cross_entropy(logits.float(), y) + relaxed_kmeans_loss(torch.softmax(out, 1), x01)
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
    p.add_argument("--aux", default="none", choices=["none", "kmeans"])
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    configure(device, args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    ft = bench_finetune(args, device)
    bound = bench_compute_only(args, device)
    res = {"device": name, "torch": torch.__version__, "backbone": args.backbone, "batch": args.batch,
           "crop": args.crop, "aux": args.aux, "steps": args.steps,
           "finetune_images_per_s": round(ft, 2), "compute_only_images_per_s": round(bound, 2),
           "ratio": round(ft / bound, 3)}
    print(f"{name} | {args.backbone} U-Net, batch {args.batch}, crop {args.crop}, aux {args.aux}: "
          f"fine-tuning {ft:.1f} images/s, compute-only bound {bound:.1f} images/s, ratio {ft / bound:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
