"""Time one training step of every pretraining method at the study's defaults (SPEC.md §4; schema defaults of
``pretrain.method_params``): ResNet-18, random images already on the device, SGD, bf16 autocast and
channels_last on CUDA. Prints images/s, peak memory and whether the loss stayed finite; ``--out`` writes JSON.
Not a test: timings depend on the machine (recorded in docs/ssl-methods.md).

    PYTHONPATH=src python3 scripts/bench_ssl_methods.py [--batch 256] [--crop 224] [--steps 10] [--methods a,b]
    .venv/bin/python scripts/bench_ssl_methods.py --matching-only   # CPU cost of the POT patch matchings

Needs only torch and PyYAML (the dense OT matchings also need POT).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch


def bench_method(name: str, batch: int, crop: int, steps: int, warmup: int, dev: torch.device, lr: float = 0.001,
                 amp: bool = True) -> dict:
    from tmf.models.resnet import resnet18
    from tmf.ssl.methods import build_method, default_method_cfg

    torch.manual_seed(0)
    method = build_method(name, resnet18(), default_method_cfg(name))
    cuda = dev.type == "cuda"
    method = method.to(dev, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    method.train()
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    g = torch.Generator(device=dev).manual_seed(0)
    base = torch.randn(batch, 3, crop, crop, device=dev, generator=g)  # views: one image each, resized + noise
    views = []
    for s in method.crop_specs():
        side = max(8, round(s.size_factor * crop))
        v = torch.nn.functional.interpolate(base, size=(side, side), mode="bilinear", antialias=True)
        v = v + 0.3 * torch.randn(v.shape, device=dev, generator=g)
        views.append(v.contiguous(memory_format=torch.channels_last) if cuda else v)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda and amp else contextlib.nullcontext
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses = []
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with ctx():
            out = method(views)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        method.update_targets(step / (warmup + steps))
        losses.append(out.loss.detach())
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    losses = torch.stack(losses).float().cpu()
    return {
        "method": name, "batch": batch, "crop": crop, "views": len(views), "lr": lr, "amp": amp and cuda,
        "images_per_s": round(batch * steps / dt, 1), "step_ms": round(1000 * dt / steps, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "loss_first": round(float(losses[0]), 4), "loss_last": round(float(losses[-1]), 4),
        "finite": bool(torch.isfinite(losses).all()),
        "losses": [round(float(x), 4) for x in losses[:: max(1, len(losses) // 8)]],
    }


def bench_matching(batch: int, patches: int, dim: int) -> list[dict]:
    from tmf.ssl.losses import match_plans

    g = torch.Generator().manual_seed(0)
    f_a = torch.randn(batch, patches, dim, generator=g)
    f_b = torch.randn(batch, patches, dim, generator=g)
    rows = []
    for matching in ("argmax", "exact", "entropic", "unbalanced", "uniform"):
        match_plans(f_a, f_b, matching, eps=10.0, reg_m=0.05)  # first call pays the imports
        t0 = time.perf_counter()
        match_plans(f_a, f_b, matching, eps=10.0, reg_m=0.05)
        rows.append({"matching": matching, "batch": batch, "patches": patches,
                     "ms": round(1000 * (time.perf_counter() - t0), 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--methods", default="", help="comma-separated; default: every registered method")
    ap.add_argument("--lr", type=float, default=0.001,
                    help="SGD learning rate (momentum 0.9; 0.01 diverges to collapse on these noise images at 224 px)")
    ap.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast on CUDA")
    ap.add_argument("--matching-only", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.matching_only:
        rows = bench_matching(args.batch, (args.crop // 32) ** 2, 128)
    else:
        from tmf.ssl.methods import METHODS

        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        names = [m for m in args.methods.split(",") if m] or list(METHODS)
        rows = []
        for name in names:
            try:
                rows.append(bench_method(name, args.batch, args.crop, args.steps, args.warmup, dev, args.lr,
                                         not args.no_amp))
            except Exception as e:  # report and go on: one method's failure should not hide the others
                rows.append({"method": name, "error": f"{type(e).__name__}: {e}"[:300]})
            print(json.dumps(rows[-1]), flush=True)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    if args.matching_only:
        for r in rows:
            print(json.dumps(r))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
