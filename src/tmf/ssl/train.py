"""The pretraining engine: one (method, seed) run from the packed tinyMiniFrance array to ``encoder.pt``.

Per step: the feed gathers the global batch's rows (on the device when the packed set fits there), the
augmentations make the method's views on the same device (:mod:`tmf.ssl.augment`), the method returns its loss
(:mod:`tmf.ssl.methods`), the optimizer steps (SGD / LARS / AdamW, warm-up + cosine, :mod:`tmf.ssl.optim`) and
the method updates its targets (EMA, queue). On CUDA: bf16 autocast and channels_last, no host synchronisation
except every ``log_every`` steps. On the CPU: float32 and deterministic algorithms, so the same seed gives the
same weights, and a run killed and resumed from ``checkpoint.pt`` ends with bit-identical weights.

Data parallel (``torchrun``, or ``pretrain.ddp`` with ``nproc`` > 1 through ``tmf pretrain``): see
:mod:`tmf.ssl.distributed`. Only rank 0 writes files and logs to MLflow.

Outputs (docs/file-formats.md, "Pretraining"): ``encoder.pt``, ``metrics.json``, ``history.csv``, and
``checkpoint.pt``, which is kept after the run (about 100 MB for ResNet-18 with its optimizer state): running the
same command again then only re-writes the outputs, and a run with other parameters (more steps, another
temperature...) cannot silently reuse it because the checkpoint records its parameters: it trains afresh.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tmf import device as devmod
from tmf.io import atomic_path, write_csv, write_json
from tmf.ssl import distributed as D
from tmf.ssl.augment import AugmentConfig, make_views
from tmf.ssl.feed import PackedFeed
from tmf.ssl.optim import build_optimizer, lr_at

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
HISTORY_COLUMNS = ["step", "epoch", "loss", "lr", "images_per_s"]
# Parameters that may change between a run and its resumption without changing its result.
_RESUME_FREE = {"checkpoint_every", "ddp", "nproc", "device", "threads"}
DIAGNOSTIC_SEED = 20_231_123  # the held batch and its views are the same for every method and seed


# ---------------------------------------------------------------------------------------------------------
# Methods


def build_method(name: str, backbone: nn.Module, cfg: dict) -> nn.Module:
    """The registry's method ``name`` (tmf.ssl.methods) with its parameters ``pretrain.method_params.<name>``
    over the registry's defaults."""
    from tmf.ssl import methods as registry

    if name not in registry.METHODS:
        raise ValueError(f"unknown pretraining method {name!r}; expected one of {sorted(registry.METHODS)}")
    mcfg = dict(registry.default_method_cfg(name))
    mcfg.update((cfg.get("method_params") or {}).get(name) or {})
    return registry.build_method(name, backbone, mcfg)


def view_dtype_for(device: torch.device) -> torch.dtype:
    """The dtype the augmentations hand to the model: their own working dtype (float16 on CUDA, where bf16
    autocast casts it at the first convolution; float32 on the CPU), so that no extra pass converts them."""
    from tmf.ssl.augment import work_dtype

    return work_dtype(device)


# ---------------------------------------------------------------------------------------------------------
# Diagnostics of the representation


def embedding_diagnostics(h_a: torch.Tensor, h_b: torch.Tensor, t: float = 2.0) -> dict[str, float]:
    """Alignment and uniformity (Wang & Isola 2020, α = 2, t = 2) of the L2-normalised features of two views,
    and the effective rank (Roy & Vetterli 2007) of the first view's feature matrix (:mod:`tmf.ssl.diagnostics`)."""
    from tmf.ssl import diagnostics

    return {"alignment": float(diagnostics.alignment(h_a, h_b)),
            "uniformity": float(diagnostics.uniformity(h_a, t=t)),
            "effective_rank": float(diagnostics.effective_rank(h_a)),
            "n_held": int(h_a.shape[0]), "feature_dim": int(h_a.shape[1])}


@torch.no_grad()
def held_batch_diagnostics(method: nn.Module, feed: PackedFeed, crop_size: int, aug: AugmentConfig,
                           n_held: int, device: torch.device) -> dict[str, float]:
    """Diagnostics of the backbone's pooled features on a fixed held batch (same images and views for every
    method and seed), the model in eval mode (batch-norm running statistics)."""
    g = torch.Generator().manual_seed(DIAGNOSTIC_SEED)
    n = min(n_held, feed.n)
    pos = torch.randperm(feed.n, generator=g)[:n]
    if feed.on_device:
        pos = pos.to(device)
    imgs = feed.gather(pos)
    ga = torch.Generator(device=device).manual_seed(DIAGNOSTIC_SEED)

    class _Spec:
        size_factor, scale = 1.0, (0.2, 1.0)

    mf = devmod.memory_format(device)
    va, vb = make_views(imgs, [_Spec, _Spec], crop_size, aug, ga, memory_format=mf, out_dtype=view_dtype_for(device))
    backbone = method.backbone
    was = backbone.training
    backbone.eval()
    try:
        feats = []
        for v in (va, vb):
            chunks = []
            for i in range(0, n, 256):
                with devmod.autocast(device):
                    chunks.append(backbone.features(v[i:i + 256]).float())
            feats.append(torch.cat(chunks))
    finally:
        backbone.train(was)
    return embedding_diagnostics(feats[0].cpu(), feats[1].cpu())


# ---------------------------------------------------------------------------------------------------------
# Views


class _ViewSource:
    """Each step's views. On CUDA they are made one step ahead on a side stream, so that the feed and the
    augmentation of step s+1 (memory-bound) overlap the model's step s (mostly compute-bound) on the GPU; the
    random numbers are drawn in the same order as without prefetching. :meth:`generator_state` is the
    augmentation generator's state as if nothing had been prefetched: what a checkpoint stores."""

    def __init__(self, feed, specs, crop_size, aug, gen, batch, info, mf, dtype, dev):
        self.feed, self.specs, self.crop_size, self.aug, self.gen = feed, specs, crop_size, aug, gen
        self.batch, self.info, self.mf, self.dtype, self.dev = batch, info, mf, dtype, dev
        self.side = torch.cuda.Stream(dev) if dev.type == "cuda" else None
        self._next = None  # (step, views, event, generator state before they were drawn)

    def _make(self, step: int) -> list[torch.Tensor]:
        local = self.batch // self.info.world_size
        imgs = self.feed.batch(step, self.batch, self.info.rank, self.info.world_size)
        return make_views(imgs, self.specs, self.crop_size, self.aug, self.gen, batch=self.batch,
                          offset=self.info.rank * local, memory_format=self.mf, out_dtype=self.dtype)

    def _produce(self, step: int):
        state = self.gen.get_state()
        with torch.cuda.stream(self.side):
            views = self._make(step)
            ev = torch.cuda.Event()
            ev.record(self.side)
        return step, views, ev, state

    def views(self, step: int, total: int) -> list[torch.Tensor]:
        if self.side is None:
            return self._make(step)
        nxt = self._next if self._next is not None and self._next[0] == step else self._produce(step)
        _, views, ev, _ = nxt
        cur = torch.cuda.current_stream(self.dev)
        cur.wait_event(ev)
        for v in views:
            v.record_stream(cur)  # made on the side stream, used on this one
        self._next = self._produce(step + 1) if step + 1 < total else None
        return views

    def generator_state(self) -> torch.Tensor:
        return self._next[3] if self._next is not None else self.gen.get_state()


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def _rng_state(aug_state: torch.Tensor) -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
          "augment": aug_state}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict, aug_gen: torch.Generator) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    aug_gen.set_state(st["augment"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _comparable(cfg: dict, method: str) -> dict:
    """What a run's result depends on: the pretrain section minus what only enumerates jobs (methods, seeds) or
    cannot change the result, with the method parameters of this method only."""
    out = {k: v for k, v in cfg.items() if k not in _RESUME_FREE | {"methods", "seeds", "method_params"}}
    out["method_params"] = (cfg.get("method_params") or {}).get(method) or {}
    return out


# ---------------------------------------------------------------------------------------------------------
# The run


def pretrain(cfg: dict[str, Any], manifest, packed_dir, out_dir, *, method: str | None = None,
             seed: int | None = None, device: str = "auto", run=None,
             threads: int | None = None, method_factory: Callable[[nn.Module], nn.Module] | None = None,
             stop_after: int | None = None) -> dict[str, Any]:
    """Pretrain one (method, seed) and write ``encoder.pt``, ``metrics.json``, ``history.csv`` to ``out_dir``.

    ``cfg``: the validated ``pretrain`` params section. ``method``/``seed``: default the first of
    ``cfg["methods"]``/``cfg["seeds"]``. ``run``: the job's MLflow run (``args.run`` of ``tmf pretrain``, see
    tmf.tracking.command) that the training curve is logged to; None: not logged.
    ``method_factory``: build the method from a backbone instead of the registry (tests, benchmarks).
    ``stop_after``: stop after this many steps without writing outputs, as if killed (tests of resumption).
    Returns the metrics (rank 0) or ``{}`` (other ranks).
    """
    method = method or cfg["methods"][0]
    seed = int(cfg["seeds"][0] if seed is None else seed)
    out_dir = Path(out_dir)
    info = D.env_info()
    dev = devmod.resolve_device(device)
    if info.is_distributed and dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    devmod.configure(dev, threads)
    D.init(info, dev)
    try:
        return _run(cfg, manifest, packed_dir, out_dir, method, seed, dev, info, run if info.is_main else None,
                    method_factory, stop_after)
    finally:
        if info.is_distributed and D.is_active():
            D.dist.destroy_process_group()


def _run(cfg, manifest, packed_dir, out_dir, method_name, seed, dev, info, run, method_factory,
         stop_after):
    from tmf.models.resnet import build_backbone

    batch = int(cfg["batch_size"])
    if batch % info.world_size:
        raise ValueError(f"pretrain.batch_size {batch} is not divisible by the {info.world_size} processes")
    crop_size = int(cfg["crop_size"])
    aug = AugmentConfig.from_dict(cfg.get("augment"))
    mf = devmod.memory_format(dev)
    view_dtype = view_dtype_for(dev)

    devmod.seed_everything(seed)  # identical initial weights on every rank
    backbone = build_backbone(cfg["backbone"])
    backbone.fc.requires_grad_(False)  # the ImageNet classifier is not part of self-supervised training
    model = method_factory(backbone) if method_factory else build_method(method_name, backbone, cfg)
    model = model.to(dev, memory_format=mf)
    if info.is_distributed:
        model = D.convert_sync_batchnorm(model, dev)
    specs = list(model.crop_specs())

    feed = PackedFeed(packed_dir, manifest, cfg["splits"], device=dev, seed=seed,
                      device_cache=cfg.get("device_cache", "auto"))
    if feed.n < batch:
        log.warning("only %d images in splits %s for a batch of %d: images repeat within a batch", feed.n,
                    cfg["splits"], batch)
    spe = feed.steps_per_epoch(batch)
    total = int(cfg["steps"]) if int(cfg.get("steps") or 0) > 0 else int(cfg["epochs"]) * spe
    if total < 1:
        raise ValueError("pretrain.steps / pretrain.epochs: the run has no step")
    warmup = int(cfg.get("warmup_steps") or 0) or int(round(float(cfg.get("warmup_epochs", 0)) * spe))
    warmup = min(warmup, total)
    opt = build_optimizer(model, cfg["optimizer"], float(cfg["lr"]), float(cfg["weight_decay"]),
                          float(cfg["momentum"]))
    base_lrs = [float(cfg["lr"])] * len(opt.param_groups)
    aug_gen = torch.Generator(device=dev).manual_seed(seed)
    log_every = max(1, int(cfg["log_every"]))
    ckpt_every = max(1, int(cfg["checkpoint_every"]))
    ckpt_path = out_dir / CHECKPOINT

    step, history, elapsed_before = 0, [], 0.0
    ck = None
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck.get("method") != method_name or ck.get("seed") != seed or \
                _comparable(ck.get("params", {}), method_name) != _comparable(cfg, method_name):
            # A parameter changed since that run (the workflow re-runs the job for exactly that reason): its
            # checkpoint is stale, so train afresh; the next checkpoint replaces it.
            if info.is_main:
                log.warning("%s was written with other parameters (method, seed or pretrain section): "
                            "not resuming from it, training afresh", ckpt_path)
            ck = None
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        _set_rng_state(ck["rng"], aug_gen)
        step, history, elapsed_before = int(ck["step"]), list(ck["history"]), float(ck.get("elapsed_s", 0.0))
        if info.is_main:
            log.info("resumed from %s at step %d of %d", ckpt_path, step, total)

    net: nn.Module = model
    if info.is_distributed:
        # Every trainable parameter of every method gets a gradient in each step (tests/test_methods.py checks
        # it), so DDP needs no extra search of the autograd graph for unused ones (find_unused_parameters).
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    loss_acc = torch.zeros((), device=dev)
    n_acc, t_win, steps_win = 0, time.perf_counter(), 0
    t_start = time.perf_counter()
    timed_images, timed_s = 0, 0.0
    first_logged = False
    source = _ViewSource(feed, specs, crop_size, aug, aug_gen, batch, info, mf, view_dtype, dev)
    while step < total:
        lr_factor = lr_at(step, total, 1.0, warmup, float(cfg.get("final_lr_ratio", 0.0)))
        for g, b0 in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = b0 * lr_factor
        views = source.views(step, total)
        with devmod.autocast(dev):
            out = net(views)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        model.update_targets(step / total)
        loss_acc += out.loss.detach().float()
        n_acc += 1
        steps_win += 1
        step += 1
        if step % log_every == 0 or step == total:
            mean_loss = float(D.all_reduce_mean(loss_acc / n_acc))  # the one host sync per log window
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            now = time.perf_counter()
            ips = steps_win * batch / max(now - t_win, 1e-9)
            if first_logged:  # the first window holds the warm-up (cudnn autotuning, allocations)
                timed_images += steps_win * batch
                timed_s += now - t_win
            first_logged = True
            row = {"step": step, "epoch": step / spe, "loss": mean_loss, "lr": float(cfg["lr"]) * lr_factor,
                   "images_per_s": ips}
            history.append(row)
            if run is not None:
                run.log_metrics({"loss": mean_loss, "lr": row["lr"], "images_per_s": ips,
                                 **{f"method/{k}": float(v) for k, v in (out.logs or {}).items()}}, step=step)
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"pretraining {method_name} seed {seed}: loss is {mean_loss} at "
                                         f"step {step}; lower pretrain.lr or check the method parameters")
            loss_acc.zero_()
            n_acc, steps_win, t_win = 0, 0, time.perf_counter()
        if step % ckpt_every == 0 or step == total:
            t_ck = time.perf_counter()
            if info.is_main:
                save_checkpoint(ckpt_path, {
                    "version": 1, "method": method_name, "seed": seed, "params": cfg, "step": step,
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "schedule": {"total": total, "warmup": warmup, "steps_per_epoch": spe},
                    "rng": _rng_state(source.generator_state()), "history": history,
                    "elapsed_s": elapsed_before + time.perf_counter() - t_start})
            if info.is_distributed:
                D.dist.barrier()
            t_win += time.perf_counter() - t_ck  # checkpoint time is not training throughput
        if stop_after is not None and step >= stop_after and step < total:
            return {"stopped_at": step}

    wall = elapsed_before + time.perf_counter() - t_start
    if not info.is_main:
        return {}
    # throughput after the first log window; with a single window, that window's
    images_per_s = timed_images / timed_s if timed_s > 0 else float(history[-1]["images_per_s"])
    diag = held_batch_diagnostics(model, feed, crop_size, aug, int(cfg.get("held_batch", 512)), dev)
    backbone_sd = {k: v.detach().cpu().contiguous() for k, v in model.backbone.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "encoder.pt") as tmp:
        torch.save({"arch": cfg["backbone"], "method": method_name, "state_dict": backbone_sd}, tmp)
    import pandas as pd

    write_csv(out_dir / "history.csv", pd.DataFrame(history, columns=HISTORY_COLUMNS))
    metrics = {
        "method": method_name, "seed": seed, "arch": cfg["backbone"], "params": cfg,
        "steps": step, "epochs": step / spe, "steps_per_epoch": spe, "batch_size": batch,
        "n_images": feed.n, "world_size": info.world_size, "device": str(dev),
        "final_loss": history[-1]["loss"], "images_per_s": images_per_s, "wall_s": wall,
        "diagnostics": diag,
    }
    write_json(out_dir / "metrics.json", metrics)
    if run is not None:
        run.log_metrics({"final_loss": metrics["final_loss"], "images_per_s_mean": images_per_s,
                         **{f"diag/{k}": float(v) for k, v in diag.items()}}, step=step)
    log.info("pretrained %s seed %d: %d steps, final loss %.4f, %.1f images/s", method_name, seed, step,
             metrics["final_loss"], images_per_s)
    return metrics
