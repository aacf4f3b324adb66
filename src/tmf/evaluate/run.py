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
    PROTOCOLS,
    SCENE_PROTOCOLS,
    TRAINED_BASELINES,
    fraction_tag,
    is_ssl,
    split_protocol,
)

log = logging.getLogger(__name__)

METRICS_SCHEMA_VERSION = 1


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
            threads: int | None = None, save_model: str | Path | None = None) -> dict[str, Any]:
    """Run one job and write ``metrics.json`` + ``predictions.png`` under ``out``. ``cfg``: the ``evaluate`` section
    (validated, defaults filled). ``encoder``: an encoder file, or ``None`` for random initialisation.
    ``save_model``: also write the trained model there (:mod:`tmf.evaluate.saved_model`; pixel protocols only)."""
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
    if save_model and protocol in SCENE_PROTOCOLS:
        raise ValueError(f"--save-model: protocol {protocol!r} classifies whole sub-tiles; it trains no model that "
                         "maps pixels")
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
    model, architecture = res.pop("_model", None), res.pop("_architecture", None)
    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "protocol": name, "method": method, "fraction": fraction, "seed": seed, "head_dim": head_dim,
        "encoder": encoder or "none", "backbone": cfg["backbone"],
        "device": str(dev), "torch": torch.__version__, "seconds": time.perf_counter() - t0,
        "params": {k: v for k, v in cfg.items()},
        **res,
    }
    out = Path(out)
    if save_model:
        from tmf.evaluate.saved_model import save_model as write_model

        write_model(save_model, model, architecture, {"protocol": name, "method": method, "fraction": fraction,
                                                      "seed": seed})
    write_json(out / "metrics.json", _clean(metrics))
    predictions_figure(data, examples, out / "predictions.png",
                       title=f"{name} / {method} / {fraction_tag(fraction)} / seed {seed}")
    return metrics


def _clean(o):
    """NaN/inf → None so the JSON stays standard."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o
