"""One evaluation job (protocol × method × fraction × seed) end to end, and the table of all jobs.

Writes ``<out>/metrics.json`` (schema in docs/file-formats.md and docs/evaluation.md) and ``<out>/predictions.png``
(test sub-tiles: image | ground truth | prediction, in the MiniFrance class colours).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from tmf.evaluate.plan import (
    ENCODER_BASELINES,
    FINETUNE_PROTOCOLS,
    HEAD_PROTOCOLS,
    PROTOCOLS,
    TRAINED_BASELINES,
    fraction_tag,
    is_ssl,
    split_protocol,
)
from tmf.io import atomic_path, read_json, write_csv, write_json

log = logging.getLogger(__name__)

METRICS_SCHEMA_VERSION = 1
#: the measured numbers of metrics.json that become metrics of the job's MLflow run (its identity and settings
#: are the run's params and tags, see docs/tracking.md)
MEASURED = ("oa", "miou", "kappa", "hierarchical_cost", "per_class_iou", "per_city", "seconds")
MEASURED_TRAIN = ("final_loss", "images_per_s", "seconds")


def _check_job(protocol: str, method: str, fraction: float, seed: int, encoder: str | None) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
    if method in TRAINED_BASELINES and protocol not in FINETUNE_PROTOCOLS:
        raise ValueError(f"method {method!r} is a network trained end to end: it runs only the fine-tuning "
                         f"protocols {list(FINETUNE_PROTOCOLS)}, not {protocol!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must lie in (0, 1], got {fraction}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if (is_ssl(method) or method == "imagenet") and not encoder:
        raise ValueError(f"method {method!r} starts from an encoder file: give --encoder PATH")
    if method in ("random", *TRAINED_BASELINES) and encoder:
        raise ValueError(f"method {method!r} starts from a random encoder: give --encoder none, not {encoder!r}")


def run_job(protocol: str, method: str, fraction: float, seed: int, manifest: str | Path, packed: str | Path,
            encoder: str | Path | None, out: str | Path, cfg: dict, device: str = "auto",
            threads: int | None = None, run=None) -> dict[str, Any]:
    """Run one job and write ``metrics.json`` + ``predictions.png`` under ``out``. ``cfg``: the ``evaluate`` section
    (validated, defaults filled). ``encoder``: an encoder file, or ``None`` for random initialisation. ``run``:
    the job's MLflow run (``args.run``, tmf.tracking.command) that the scores are logged to; None: not logged."""
    import torch

    from tmf.device import configure, resolve_device, seed_everything
    from tmf.evaluate.data import load_packed
    from tmf.evaluate.engine import load_encoder
    from tmf.evaluate.finetune import HEAD_OF_PROTOCOL, run_finetune
    from tmf.evaluate.probes import run_linear, run_scene

    encoder = None if encoder in (None, "", "none") else str(encoder)
    fraction, seed = float(fraction), int(seed)
    name = protocol
    protocol, head_dim = split_protocol(name)
    if (protocol in HEAD_PROTOCOLS) != (head_dim is not None):
        raise ValueError(f"protocol {name!r}: the head protocols are {HEAD_PROTOCOLS} with a dimension suffix, "
                         f"e.g. {HEAD_PROTOCOLS[0]}_d3")
    _check_job(protocol, method, fraction, seed, encoder)
    if head_dim is not None:
        cfg = {**cfg, "hyperbolic": {**cfg["hyperbolic"], "dim": head_dim}}
    dev = resolve_device(device)
    configure(dev, threads)
    seed_everything(seed)
    data = load_packed(manifest, packed)
    backbone = load_encoder(cfg["backbone"], encoder)
    t0 = time.perf_counter()
    if protocol in FINETUNE_PROTOCOLS:
        res = run_finetune(data, backbone, method, fraction, seed, cfg, dev, head=HEAD_OF_PROTOCOL[protocol])
    elif protocol == "linear":
        res = run_linear(data, backbone, fraction, seed, cfg, dev)
    else:
        res = run_scene(data, backbone, protocol, fraction, seed, cfg, dev)
    examples = res.pop("_examples")
    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "protocol": name, "method": method, "fraction": fraction, "seed": seed, "head_dim": head_dim,
        "encoder": encoder or "none", "backbone": cfg["backbone"],
        "device": str(dev), "torch": torch.__version__, "seconds": time.perf_counter() - t0,
        "params": {k: v for k, v in cfg.items()},
        **res,
    }
    out = Path(out)
    write_json(out / "metrics.json", _clean(metrics))
    if run is not None:
        log_measured(run, _clean(metrics))
    predictions_figure(data, examples, out / "predictions.png",
                       title=f"{name} / {method} / {fraction_tag(fraction)} / seed {seed}")
    return metrics


def log_measured(run, metrics: dict) -> None:
    """The :data:`MEASURED` numbers of ``metrics`` (scores overall, per class, per city; undefined ones left out)
    and the training loss curve, as metrics of ``run``."""
    from tmf.tracking import flatten_numbers

    train = metrics.get("train", {})
    run.log_metrics(flatten_numbers({k: metrics[k] for k in MEASURED if k in metrics}))
    run.log_metrics(flatten_numbers({"train": {k: train[k] for k in MEASURED_TRAIN if k in train}}))
    for step, loss in train.get("history", []):
        if loss is not None:
            run.log_metrics({"train.loss": loss}, step=step)


def _clean(o):
    """NaN/inf → None so the JSON stays standard."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def colourise(labels: np.ndarray) -> np.ndarray:
    """MiniFrance ids (H, W) → RGB uint8 (H, W, 3) with ``colour_table()``; ids > 15 painted black."""
    from tmf.data.minifrance import colour_table

    table = np.zeros((256, 3), dtype=np.uint8)
    table[:16] = colour_table()
    return table[np.asarray(labels, dtype=np.uint8)]


def predictions_figure(data, examples: dict[int, np.ndarray], path: str | Path, title: str = "",
                       dpi: int = 100) -> None:
    """Rows of test sub-tiles: image | ground truth | prediction (class colours; ignored ids dark grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(examples)
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for ax, head in zip(axes[0], ("image", "ground truth", "prediction"), strict=True):
        ax.set_title(head, fontsize=9)
    for i, r in enumerate(rows):
        city = data.manifest["city"].iloc[r]
        panels = (np.asarray(data.images[r]), colourise(np.asarray(data.labels[r])), colourise(examples[r]))
        for j, img in enumerate(panels):
            axes[i, j].imshow(img, interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(city, fontsize=8)
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


# ---------------------------------------------------------------- the table of every run
SUMMARY_KEYS = ("protocol", "method", "fraction", "seed", "n_train", "oa", "miou", "kappa", "hierarchical_cost")


def summary_table(paths: list[str | Path]):
    """One tidy row per run: identity, n_train, oa, miou, kappa, hierarchical_cost, level, ``iou_<id>`` per class,
    ``oa_<city>`` / ``miou_<city>`` per test city, seconds, path."""
    import pandas as pd

    from tmf.data.minifrance import CITY_NAMES, SCORED_IDS

    if not paths:
        raise ValueError("collect: no metrics.json given")
    rows = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"metrics file not found: {p}")
        m = read_json(p)
        missing = [k for k in SUMMARY_KEYS if k not in m]
        if missing:
            raise ValueError(f"{p}: not an evaluation metrics.json (missing {missing})")
        row = {k: m[k] for k in SUMMARY_KEYS}
        row["level"] = m.get("level", "")
        for cid in SCORED_IDS:
            row[f"iou_{cid}"] = m.get("per_class_iou", {}).get(str(cid))
        for city in CITY_NAMES:
            if city in m.get("per_city", {}):
                row[f"oa_{city}"] = m["per_city"][city]["oa"]
                row[f"miou_{city}"] = m["per_city"][city]["miou"]
        row["seconds"] = m.get("seconds")
        row["path"] = str(p)
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(ENCODER_BASELINES + TRAINED_BASELINES)}
    frame["_m"] = frame["method"].map(lambda m: order.get(m, -1))
    frame = frame.sort_values(["protocol", "_m", "method", "fraction", "seed"], kind="stable").drop(columns="_m")
    return frame.reset_index(drop=True)


def aggregate_table(summary):
    """Mean and sample standard deviation (ddof = 1; empty for a single seed) over seeds of every score, per
    protocol × method × fraction, with the number of seeds."""
    cols = ["oa", "miou", "kappa", "hierarchical_cost"] + [c for c in summary.columns
                                                          if c.startswith(("iou_", "oa_", "miou_"))]
    g = summary.groupby(["protocol", "method", "fraction"], sort=False)
    agg = g[cols].agg(["mean", "std"])
    agg.columns = [f"{c}_{s}" for c, s in agg.columns]
    agg.insert(0, "n_seeds", g.size())
    agg.insert(1, "n_train", g["n_train"].first())
    return agg.reset_index()


def collect(paths: list[str | Path], out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (summary.csv: one row per run) and ``summary_agg.csv`` beside it (mean ± std over seeds)."""
    out = Path(out)
    summary = summary_table(paths)
    agg_path = out.with_name(out.stem + "_agg.csv")
    write_csv(out, summary)
    write_csv(agg_path, aggregate_table(summary))
    return out, agg_path
