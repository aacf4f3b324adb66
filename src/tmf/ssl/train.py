"""The pretraining engine: one (method, seed) run from the packed tinyMiniFrance images to ``encoder.pt``.

Per step: the feed gathers the global batch's rows (on the device when the packed set fits there), the
augmentations make the method's views on the same device (:mod:`tmf.ssl.views`, :mod:`tmf.ssl.augment`), the
method returns its loss (:mod:`tmf.ssl.methods`), the optimizer steps (SGD / LARS / AdamW, warm-up + cosine,
:mod:`tmf.ssl.optim`) and the method updates its targets (EMA, queue). On CUDA: bf16 autocast and channels_last, no
host synchronisation except every ``log_every`` steps. On the CPU: float32 and deterministic algorithms, so the same
seed gives the same weights, and a run killed and resumed from ``checkpoint.pt`` ends with bit-identical weights.

A run is prepared (:func:`_prepare`), resumed where a checkpoint of the same run allows (:func:`_resume`,
:mod:`tmf.ssl.checkpoint`: bound to the parameters and the training data, checksummed), trained (:func:`_train`)
and written out (:func:`_write_outputs`). Every ``log_every`` steps the log gets a progress line (step, loss,
learning rate, images/s, time left; flushed, so ``tail -f logs/pretrain/<m>/seed<k>.log`` follows it) and the
point goes to ``history.csv`` and MLflow (:func:`_log_point`).

Data parallel (``torchrun``, or ``pretrain.ddp`` with ``nproc`` > 1 through ``tmf pretrain``): see
:mod:`tmf.ssl.distributed`. Only rank 0 writes files and logs to MLflow.

Outputs (docs/file-formats.md, "Pretraining"): ``encoder.pt``, ``metrics.json``, ``history.csv``, and
``checkpoint.pt``, which is kept after the run (about 100 MB for ResNet-18 with its optimizer state): running the
same command again then only re-writes the outputs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tmf import device as devmod
from tmf.io import atomic_path, write_csv, write_json
from tmf.schedule import lr_at
from tmf.ssl import distributed as D
from tmf.ssl.augment import AugmentConfig
from tmf.ssl.checkpoint import CHECKPOINT, resumable_state, rng_state, save_checkpoint, set_rng_state
from tmf.ssl.diagnostics import held_batch_diagnostics
from tmf.ssl.feed import PackedFeed
from tmf.ssl.method_base import SSLMethod
from tmf.ssl.optim import build_optimizer
from tmf.ssl.views import ViewSource, view_dtype_for

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["step", "epoch", "loss", "lr", "images_per_s"]
__all__ = ["CHECKPOINT", "HISTORY_COLUMNS", "pretrain"]


def pretrain(cfg: dict[str, Any], manifest, packed_dir, out_dir, *, method: str | None = None,
             seed: int | None = None, device: str = "auto", run=None,
             threads: int | None = None, method_factory: Callable[[nn.Module], nn.Module] | None = None,
             stop_after: int | None = None, elevation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pretrain one (method, seed) and write ``encoder.pt``, ``metrics.json``, ``history.csv`` to ``out_dir``.

    ``cfg``: the validated ``pretrain`` params section. ``method``/``seed``: default the first of
    ``cfg["methods"]``/``cfg["seeds"]``. ``run``: the job's MLflow run (``args.run`` of ``tmf pretrain``, see
    tmf.tracking.command) that the training curve is logged to; None: not logged.
    ``method_factory``: build the method from a backbone instead of the registry (tests, benchmarks).
    ``stop_after``: stop after this many steps without writing outputs, as if killed (tests of resumption).
    ``elevation``: the validated ``elevation`` params section, for the multi-modal methods (:mod:`tmf.ssl.multimodal`),
    which also read the packed elevation; it then belongs to the run's parameters (checkpoint, metrics.json).
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
        job = _prepare(cfg, manifest, packed_dir, out_dir, method, seed, dev, info, method_factory, elevation)
        _resume(job)
        net: nn.Module = job.model
        if info.is_distributed:
            # Every trainable parameter of every method gets a gradient in each step (tests/test_methods.py checks
            # it), so DDP needs no extra search of the autograd graph for unused ones (find_unused_parameters).
            net = nn.parallel.DistributedDataParallel(job.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        run = run if info.is_main else None  # rank 0 logs for the job
        timing = _train(job, net, run, stop_after)
        if timing is None:
            return {"stopped_at": job.step}
        return _write_outputs(job, out_dir, run, *timing) if info.is_main else {}
    finally:
        if info.is_distributed and D.is_active():
            D.dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------
# Preparing and resuming


@dataclass
class _Job:
    """One (method, seed) run: what it trains, on what, for how long, and where it stands (step, history)."""

    cfg: dict
    method_name: str
    seed: int
    dev: torch.device
    info: D.DistInfo
    model: nn.Module
    opt: torch.optim.Optimizer
    feed: PackedFeed
    aug: AugmentConfig
    aug_gen: torch.Generator
    data: str  # fingerprint of the training data (tmf.data.packed.Packed.fingerprint)
    ckpt_path: Path
    total: int
    warmup: int
    spe: int  # steps per epoch
    step: int = 0
    history: list[dict] = field(default_factory=list)
    elapsed_before: float = 0.0  # wall time of the runs this one resumes
    modal: tuple | None = None  # (modalities, elevation, reference) of a multi-modal method (tmf.ssl.views)

    @property
    def batch(self) -> int:
        return int(self.cfg["batch_size"])


def _prepare(cfg, manifest, packed_dir, out_dir, method_name, seed, dev, info, method_factory, elevation) -> _Job:
    from tmf.data.packed import DEM_ARRAY_NAMES, open_packed
    from tmf.modalities import DEM
    from tmf.models.elevation import absolute_reference
    from tmf.models.resnet import build_backbone
    from tmf.ssl.methods import build_method

    batch = int(cfg["batch_size"])
    if batch % info.world_size:
        raise ValueError(f"pretrain.batch_size {batch} is not divisible by the {info.world_size} processes")
    packed = open_packed(manifest, packed_dir)
    devmod.seed_everything(seed)  # identical initial weights on every rank
    backbone = build_backbone(cfg["backbone"])
    model = method_factory(backbone) if method_factory else \
        build_method(method_name, backbone, cfg["method_params"].get(method_name), elevation=elevation)
    model = model.to(dev, memory_format=devmod.memory_format(dev))
    if info.is_distributed:
        model = D.convert_sync_batchnorm(model, dev)

    names, modal = ("images",), None
    if getattr(model, "takes_modalities", False):  # views {modality: [...]}; the DEM rows stay with the images
        uses_dem = DEM in model.modalities
        ref = None
        if uses_dem:
            packed.require_dem(f"pretrain.methods: {method_name}", packed.rows(cfg["splits"]))
            names = ("images", *DEM_ARRAY_NAMES)
            ref = absolute_reference(packed.manifest) if elevation["normalise"] == "absolute" else None
            cfg = {**cfg, "elevation": elevation}  # part of the run's parameters: a checkpoint resumes only with it
        modal = (model.modalities, elevation, ref)
    feed = PackedFeed(packed, cfg["splits"], device=dev, seed=seed, device_cache=cfg["device_cache"], names=names)
    if feed.n < batch:
        log.warning("only %d images in splits %s for a batch of %d: images repeat within a batch", feed.n,
                    cfg["splits"], batch)
    spe = feed.steps_per_epoch(batch)
    total = int(cfg["steps"]) if int(cfg["steps"]) > 0 else int(cfg["epochs"]) * spe
    if total < 1:
        raise ValueError("pretrain.steps / pretrain.epochs: the run has no step")
    warmup = int(cfg["warmup_steps"]) or int(round(float(cfg["warmup_epochs"]) * spe))
    opt = build_optimizer(model, cfg["optimizer"], float(cfg["lr"]), float(cfg["weight_decay"]),
                          float(cfg["momentum"]))
    return _Job(cfg, method_name, seed, dev, info, model, opt, feed, AugmentConfig.from_dict(cfg["augment"]),
                torch.Generator(device=dev).manual_seed(seed), packed.fingerprint(names),
                out_dir / CHECKPOINT, total, min(warmup, total), spe, modal=modal)


def _resume(job: _Job) -> None:
    """Continue from ``checkpoint.pt`` when it is intact and was written by this run (same method, seed,
    parameters and data); else leave the job at step 0."""
    barrier = D.dist.barrier if job.info.is_distributed else None
    state = resumable_state(job.ckpt_path, job.method_name, job.seed, job.cfg, job.data, job.info.is_main, barrier)
    if state is None:
        return
    job.model.load_state_dict(state["model"])
    job.opt.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"], job.aug_gen)
    job.step, job.history, job.elapsed_before = int(state["step"]), list(state["history"]), float(state["elapsed_s"])
    if job.info.is_main:
        log.info("resumed from %s at step %d of %d", job.ckpt_path, job.step, job.total)


def _save(job: _Job, source: ViewSource, elapsed: float) -> None:
    if job.info.is_main:
        save_checkpoint(job.ckpt_path, {
            "method": job.method_name, "seed": job.seed, "params": job.cfg, "data": job.data, "step": job.step,
            "model": job.model.state_dict(), "optimizer": job.opt.state_dict(),
            "schedule": {"total": job.total, "warmup": job.warmup, "steps_per_epoch": job.spe},
            "rng": rng_state(source.generator_state()), "history": job.history, "elapsed_s": elapsed})
    if job.info.is_distributed:
        D.dist.barrier()


# ---------------------------------------------------------------------------------------------------------
# The loop


def _log_metrics(run, metrics: dict[str, float], step: int) -> None:
    """The one place where pretraining sends numbers to the job's MLflow run."""
    if run is not None:
        run.log_metrics(metrics, step=step)


def _hms(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _log_point(job: _Job, run, row: dict, logs: dict, rate: float) -> None:
    """A logged point: ``history.csv``'s row, the MLflow metrics and the progress line of the log.
    ``rate``: steps per second of this process so far (for the time left)."""
    job.history.append(row)
    if job.info.is_main:
        _log_metrics(run, {"loss": row["loss"], "lr": row["lr"], "images_per_s": row["images_per_s"],
                           **{f"method/{k}": float(v) for k, v in logs.items()}}, row["step"])
        left = (job.total - row["step"]) / rate if rate > 0 else float("nan")
        log.info("step %d/%d (%.0f%%): loss %.4f, lr %.4g, %.1f images/s, about %s left", row["step"], job.total,
                 100.0 * row["step"] / job.total, row["loss"], row["lr"], row["images_per_s"],
                 _hms(left) if math.isfinite(left) else "?")


def _train(job: _Job, net: nn.Module, run, stop_after: int | None) -> tuple[float, float] | None:
    """Train from ``job.step`` to the end; return (wall seconds of the whole run, images/s after the first
    logged window), or None when stopped by ``stop_after``."""
    cfg, dev, batch, total, model, opt = job.cfg, job.dev, job.batch, job.total, job.model, job.opt
    base_lrs = [float(cfg["lr"])] * len(opt.param_groups)
    log_every = max(1, int(cfg["log_every"]))
    ckpt_every = max(1, int(cfg["checkpoint_every"]))
    mf = devmod.memory_format(dev)
    aug = model.view_augment(job.aug) if hasattr(model, "view_augment") else job.aug  # methods not of the registry
    source = ViewSource(job.feed, list(model.crop_specs()), int(cfg["crop_size"]), aug, job.aug_gen, batch, job.info,
                        mf, view_dtype_for(dev), dev, modal=job.modal)
    loss_acc = torch.zeros((), device=dev)
    n_acc, t_win, steps_win = 0, time.perf_counter(), 0
    t_start, step_start = time.perf_counter(), job.step
    timed_images, timed_s = 0, 0.0
    first_logged = False
    while job.step < total:
        step = job.step
        lr_factor = lr_at(step, total, 1.0, job.warmup, float(cfg["final_lr_ratio"]))
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
        step = job.step = step + 1
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
            row = {"step": step, "epoch": step / job.spe, "loss": mean_loss, "lr": float(cfg["lr"]) * lr_factor,
                   "images_per_s": ips}
            _log_point(job, run, row, out.logs or {}, (step - step_start) / max(now - t_start, 1e-9))
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"pretraining {job.method_name} seed {job.seed}: loss is {mean_loss} at "
                                         f"step {step}; lower pretrain.lr or check the method parameters")
            loss_acc.zero_()
            n_acc, steps_win, t_win = 0, 0, time.perf_counter()
        if step % ckpt_every == 0 or step == total:
            t_ck = time.perf_counter()
            _save(job, source, job.elapsed_before + time.perf_counter() - t_start)
            t_win += time.perf_counter() - t_ck  # checkpoint time is not training throughput
        if stop_after is not None and step >= stop_after and step < total:
            return None
    wall = job.elapsed_before + time.perf_counter() - t_start
    # throughput after the first log window; with a single window, that window's
    images_per_s = timed_images / timed_s if timed_s > 0 else float(job.history[-1]["images_per_s"])
    return wall, images_per_s


# ---------------------------------------------------------------------------------------------------------
# Outputs


def _write_outputs(job: _Job, out_dir: Path, run, wall: float, images_per_s: float) -> dict[str, Any]:
    """``encoder.pt`` (the backbone, torchvision keys), ``history.csv``, ``metrics.json`` (with the held-batch
    diagnostics); the metrics and files also go to the MLflow run."""
    import pandas as pd

    cfg, model = job.cfg, job.model
    diag = held_batch_diagnostics(model, job.feed, int(cfg["crop_size"]), job.aug, int(cfg["held_batch"]), job.dev,
                                  modal=job.modal)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = model.encoder_payload(cfg["backbone"]) if hasattr(model, "encoder_payload") else \
        SSLMethod.encoder_payload(model, cfg["backbone"])  # a method not of the registry: its backbone
    with atomic_path(out_dir / "encoder.pt") as tmp:
        torch.save(payload, tmp)
    write_csv(out_dir / "history.csv", pd.DataFrame(job.history, columns=HISTORY_COLUMNS))
    metrics = {
        "method": job.method_name, "seed": job.seed, "arch": cfg["backbone"], "params": cfg,
        "steps": job.step, "epochs": job.step / job.spe, "steps_per_epoch": job.spe, "batch_size": job.batch,
        "n_images": job.feed.n, "world_size": job.info.world_size, "device": str(job.dev),
        "final_loss": job.history[-1]["loss"], "images_per_s": images_per_s, "wall_s": wall,
        "diagnostics": diag,
    }
    write_json(out_dir / "metrics.json", metrics)
    _log_metrics(run, {"final_loss": metrics["final_loss"], "images_per_s_mean": images_per_s,
                       **{f"diag/{k}": float(v) for k, v in diag.items()}}, job.step)
    log.info("pretrained %s seed %d: %d steps, final loss %.4f, %.1f images/s", job.method_name, job.seed, job.step,
             metrics["final_loss"], images_per_s)
    return metrics
