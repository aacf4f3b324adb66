#!/usr/bin/env python3
"""Pretraining throughput: the real path against the compute-only bound, measured in the same run.

real          ``tmf.ssl.train.pretrain`` end to end on a synthetic packed array (written to a temporary folder):
              feed (rows gathered on the device) + batched augmentation + method + optimizer, logging every
              ``--warmup`` steps as in training; images (= pairs of views) per second after the first window.
compute-only  the same model, method, optimizer and batch on random views already on the device (the bound a
              data pipeline can at best reach).
augment       the feed + augmentation alone, per step (what the real path adds).

Imports only torch, numpy, pandas, PyYAML and tmf (no MLflow, POT, jsonschema), so it runs on the lent GPU
machine with ``PYTHONPATH=src``. Examples:

    python scripts/bench_pretrain.py --device cpu --crop 64 --batch 32 --packed-size 64 --steps 6 --warmup 2
    python scripts/bench_pretrain.py --device cuda            # ResNet-18, 224 px, batch 256, bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tmf import device as devmod  # noqa: E402
from tmf.data.packed import COUNT_COLUMNS, open_packed  # noqa: E402
from tmf.models.resnet import build_backbone  # noqa: E402
from tmf.schedule import lr_at  # noqa: E402
from tmf.ssl.augment import AugmentConfig, crop_size_for, make_views  # noqa: E402
from tmf.ssl.feed import PackedFeed  # noqa: E402
from tmf.ssl.methods import build_method  # noqa: E402
from tmf.ssl.optim import build_optimizer  # noqa: E402
from tmf.ssl.train import pretrain  # noqa: E402
from tmf.ssl.views import view_dtype_for  # noqa: E402


def schema_defaults() -> dict:
    """The pretrain section's defaults, read from the schema with PyYAML (tmf.config needs jsonschema)."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "src" / "tmf" / "schema" / "params.schema.yaml"
    props = yaml.safe_load(path.read_text())["properties"]["pretrain"]["properties"]

    def fill(p):
        if p.get("type") == "object" and "properties" in p:
            out = copy.deepcopy(p.get("default", {}))
            for k, sub in p["properties"].items():
                if k not in out and ("default" in sub or sub.get("type") == "object"):
                    out[k] = fill(sub)
            return out
        return copy.deepcopy(p.get("default"))

    return {k: fill(v) for k, v in props.items()}


def make_data(root: Path, n: int, size: int, seed: int = 0):
    """Smooth random uint8 images (N, S, S, 3), no labels, and a manifest with every row in the labeled split."""
    import pandas as pd

    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (n, 3, size // 16, size // 16), generator=g, dtype=torch.uint8).float()
    img = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    img = (img + 8 * torch.randn(img.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    (root / "packed").mkdir(parents=True, exist_ok=True)
    np.save(root / "packed" / "images.npy", img.permute(0, 2, 3, 1).contiguous().numpy())
    np.save(root / "packed" / "labels.npy", np.zeros((n, size, size), np.uint8))
    pd.DataFrame({"id": [f"Nice__s__r0_c{i}" for i in range(n)], "city": "Nice", "split": "labeled", "tile": "s",
                  "row_off": 0, "col_off": np.arange(n) * size, "height": size, "width": size, "image": "",
                  "label": "", "has_label": 0, **dict.fromkeys(COUNT_COLUMNS, 0)}).to_csv(root / "manifest.csv",
                                                                                        index=False)
    return root / "manifest.csv", root / "packed"


def _method(cfg, name):
    return build_method(name, build_backbone(cfg["backbone"]), cfg["method_params"].get(name))


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def compute_only(cfg, method_name, dev, steps, warmup) -> float:
    """Images per second of method + optimizer on fixed random views already on the device."""
    devmod.seed_everything(0)
    model = _method(cfg, method_name).to(dev, memory_format=devmod.memory_format(dev))
    opt = build_optimizer(model, cfg["optimizer"], cfg["lr"], cfg["weight_decay"], cfg["momentum"])
    b = cfg["batch_size"]
    sizes = [crop_size_for(s.size_factor, cfg["crop_size"]) for s in model.crop_specs()]
    # the views as the augmentations hand them over (bf16 channels_last on CUDA, float32 on the CPU)
    views = [torch.randn(b, 3, s, s, device=dev).to(dtype=view_dtype_for(dev), memory_format=devmod.memory_format(dev))
             for s in sizes]
    total = warmup + steps
    acc = torch.zeros((), device=dev)
    t0 = None
    for step in range(total):
        if step == warmup:
            float(acc)
            sync(dev)
            t0 = time.perf_counter()
        for grp in opt.param_groups:
            grp["lr"] = cfg["lr"] * lr_at(step, total, 1.0, 1)
        with devmod.autocast(dev):
            out = model(views)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        model.update_targets(step / total)
        acc += out.loss.detach().float()
    float(acc)
    sync(dev)
    return steps * b / (time.perf_counter() - t0)


def augment_only(cfg, method_name, manifest, packed, dev, steps, warmup) -> float:
    """Milliseconds per step of feed + augmentation alone."""
    model = _method(cfg, method_name)
    specs = model.crop_specs()
    feed = PackedFeed(open_packed(manifest, packed), cfg["splits"], device=dev, seed=0)
    g = torch.Generator(device=dev).manual_seed(0)
    aug = AugmentConfig.from_dict(cfg["augment"])
    mf = devmod.memory_format(dev)
    for step in range(warmup + steps):
        if step == warmup:
            sync(dev)
            t0 = time.perf_counter()
        make_views(feed.batch(step, cfg["batch_size"]), specs, cfg["crop_size"], aug, g, memory_format=mf,
                   out_dtype=view_dtype_for(dev))
    sync(dev)
    return 1000 * (time.perf_counter() - t0) / steps


def profile_augment(cfg, method_name, manifest, packed, dev, reps=5) -> str:
    """The GPU kernels of feed + augmentation (torch.profiler table), for tuning."""
    model = _method(cfg, method_name)
    specs = model.crop_specs()
    feed = PackedFeed(open_packed(manifest, packed), cfg["splits"], device=dev, seed=0)
    g = torch.Generator(device=dev).manual_seed(0)
    aug = AugmentConfig.from_dict(cfg["augment"])
    mf = devmod.memory_format(dev)

    def once(step):
        make_views(feed.batch(step, cfg["batch_size"]), specs, cfg["crop_size"], aug, g, memory_format=mf,
                   out_dtype=view_dtype_for(dev))

    once(0)
    sync(dev)
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for i in range(reps):
            once(i + 1)
        sync(dev)
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=14)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--method", default="simclr")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--optimizer", default="lars")
    ap.add_argument("--packed-size", type=int, default=256, help="side of the synthetic packed images")
    ap.add_argument("--n-images", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=40, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed first steps (= the logging window)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--profile-augment", action="store_true", help="print the augmentation's kernels")
    args = ap.parse_args(argv)

    dev = devmod.resolve_device(args.device)
    cfg = schema_defaults()
    windows = max(1, math.ceil(args.steps / args.warmup))
    cfg.update(backbone=args.arch, crop_size=args.crop, batch_size=args.batch, optimizer=args.optimizer,
               splits=["labeled"], steps=args.warmup * (1 + windows), warmup_steps=args.warmup,
               log_every=args.warmup, checkpoint_every=10**9, held_batch=min(256, args.n_images))
    timed = args.warmup * windows
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest, packed = make_data(tmp / "data", args.n_images, args.packed_size)
        t = time.perf_counter()
        m = pretrain(cfg, manifest, packed, tmp / "out", method=args.method, seed=0, device=args.device,
                     threads=args.threads)
        real_wall = time.perf_counter() - t
        aug_ms = augment_only(cfg, args.method, manifest, packed, dev, timed, args.warmup)
        table = profile_augment(cfg, args.method, manifest, packed, dev) if args.profile_augment else ""
    bound = compute_only(cfg, args.method, dev, timed, args.warmup)
    real = m["images_per_s"]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    res = {"date": time.strftime("%Y-%m-%d"), "device": name, "torch": torch.__version__, "method": args.method,
           "arch": args.arch, "crop": args.crop, "batch": args.batch, "optimizer": args.optimizer,
           "precision": "bf16 autocast, channels_last" if dev.type == "cuda" else "float32",
           "packed_on_device": dev.type == "cuda", "timed_steps": timed, "real_pairs_per_s": real,
           "compute_only_pairs_per_s": bound, "ratio": real / bound, "augment_ms_per_step": aug_ms,
           "step_ms_compute_only": 1000 * args.batch / bound, "real_run_wall_s": real_wall}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if table:
        print(table)
    print(json.dumps(res, indent=2))
    print(f"\n{name} | {args.arch} {args.crop}px batch {args.batch} {args.method}: real {real:.1f} pairs/s, "
          f"compute-only {bound:.1f} pairs/s, ratio {real / bound:.3f}; feed+augment {aug_ms:.2f} ms/step "
          f"vs {1000 * args.batch / bound:.2f} ms/step of compute")
    return 0


if __name__ == "__main__":
    sys.exit(main())
