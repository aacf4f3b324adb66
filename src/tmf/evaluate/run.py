"""One evaluation job (protocol × method × fraction × seed) end to end.

Writes ``<out>/metrics.json`` (schema in docs/file-formats.md and docs/evaluation.md) and ``<out>/predictions.png``
(:mod:`tmf.evaluate.figures`); the tables of all jobs are :mod:`tmf.evaluate.summary`.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from tmf.evaluate.figures import predictions_figure
from tmf.io import write_json
from tmf.plan import (
    FINETUNE_PROTOCOLS,
    HEAD_PROTOCOLS,
    MODAL_PROTOCOLS,
    PROTOCOLS,
    TRAINED_BASELINES,
    fraction_tag,
    is_ssl,
    runs_subset,
    split_modal,
    split_protocol,
)

log = logging.getLogger(__name__)

METRICS_SCHEMA_VERSION = 1
#: the measured numbers of metrics.json that become metrics of the job's MLflow run (its identity and settings
#: are the run's params and tags, see docs/tracking.md)
MEASURED = ("oa", "miou", "kappa", "hierarchical_cost", "per_class_iou", "per_city", "seconds")
MEASURED_TRAIN = ("final_loss", "images_per_s", "seconds")


def _check_job(protocol: str, method: str, fraction: float, seed: int, encoder: str | None,
               subset: str | None = None) -> None:
    from tmf.modalities import RGB, method_modalities

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
    if (protocol in MODAL_PROTOCOLS) != (subset is not None):
        raise ValueError(f"protocol {protocol!r}: the multi-modal protocols are {MODAL_PROTOCOLS} with a subset "
                         f"suffix, e.g. {MODAL_PROTOCOLS[0]}_rgb_dem")
    if subset is not None and not runs_subset(method, subset):
        raise ValueError(f"method {method!r} (pretrained on {list(method_modalities(method))}) cannot be evaluated "
                         f"on the modalities {subset!r}")
    if subset is None and RGB not in method_modalities(method):
        raise ValueError(f"method {method!r} pretrained no RGB encoder: it runs only the multi-modal protocols "
                         f"{MODAL_PROTOCOLS} on its modalities {list(method_modalities(method))}")
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
    the job's MLflow run (``args.run``, tmf.tracking.command) that the scores are logged to; None: not logged.
    The multi-modal protocols (``finetune_mm_<subset>``, ``supcon_mm_<subset>``) also read ``cfg["elevation"]``
    (the ``elevation`` section) for the dem subsets and ``cfg["multimodal"]`` for supcon_mm."""
    import torch

    from tmf.data.packed import open_packed
    from tmf.device import configure, resolve_device, seed_everything
    from tmf.evaluate.engine import load_encoder
    from tmf.evaluate.finetune import HEAD_OF_PROTOCOL, run_finetune
    from tmf.evaluate.probes import run_linear, run_scene

    encoder = None if encoder in (None, "", "none") else str(encoder)
    fraction, seed = float(fraction), int(seed)
    name = protocol
    protocol, head_dim = split_protocol(name)
    protocol, subset = split_modal(protocol)
    if (protocol in HEAD_PROTOCOLS) != (head_dim is not None):
        raise ValueError(f"protocol {name!r}: the head protocols are {HEAD_PROTOCOLS} with a dimension suffix, "
                         f"e.g. {HEAD_PROTOCOLS[0]}_d3")
    _check_job(protocol, method, fraction, seed, encoder, subset)
    if head_dim is not None:
        cfg = {**cfg, "hyperbolic": {**cfg["hyperbolic"], "dim": head_dim}}
    dev = resolve_device(device)
    configure(dev, threads)
    seed_everything(seed)
    data = open_packed(manifest, packed)
    if subset is not None:
        from tmf.evaluate.multimodal import load_modal_encoders, run_finetune_mm
        from tmf.modalities import SUBSETS

        encoders = load_modal_encoders(cfg["backbone"], cfg.get("elevation"), encoder, SUBSETS[subset])
    else:
        backbone = load_encoder(cfg["backbone"], encoder)
    t0 = time.perf_counter()
    if subset is not None:
        alpha = float(cfg["multimodal"]["alpha"]) if protocol == "supcon_mm" else 0.0
        res = run_finetune_mm(data, encoders, method, fraction, seed, cfg, dev, subset, alpha)
    elif protocol in FINETUNE_PROTOCOLS:
        res = run_finetune(data, backbone, method, fraction, seed, cfg, dev, head=HEAD_OF_PROTOCOL[protocol])
    elif protocol == "linear":
        res = run_linear(data, backbone, fraction, seed, cfg, dev)
    else:
        res = run_scene(data, backbone, protocol, fraction, seed, cfg, dev)
    examples = res.pop("_examples")
    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "protocol": name, "method": method, "fraction": fraction, "seed": seed, "head_dim": head_dim,
        "subset": subset,
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
