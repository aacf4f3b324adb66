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
    FIXMATCH_PROTOCOL,
    HEAD_PROTOCOLS,
    MODAL_PROTOCOLS,
    PROTOCOLS,
    SCENE_PROTOCOLS,
    SEGNET_PROTOCOL,
    TRAINED_BASELINES,
    fraction_tag,
    is_ssl,
    runs,
    runs_subset,
    split_modal,
    split_protocol,
)

log = logging.getLogger(__name__)

METRICS_SCHEMA_VERSION = 2  # 2: status, test_set, test_set_info
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
    if subset is None and not runs(protocol, method):
        if method in TRAINED_BASELINES:
            usable = [p for p in FINETUNE_PROTOCOLS if runs(p, method)]
            hint = " (FixMatch from scratch is the method 'fixmatch')" if protocol == FIXMATCH_PROTOCOL else ""
            raise ValueError(f"method {method!r} is a network trained end to end: it runs only the fine-tuning "
                             f"protocols {usable}, not {protocol!r}{hint}")
        raise ValueError(f"protocol {SEGNET_PROTOCOL!r} trains a SegNet from scratch: it runs the methods "
                         f"{list(TRAINED_BASELINES)}, not the encoder {method!r}")
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
            threads: int | None = None, run=None, save_model: str | Path | None = None) -> dict[str, Any]:
    """Run one job and write ``metrics.json`` + ``predictions.png`` under ``out``. ``cfg``: the ``evaluate`` section
    (validated, defaults filled). ``encoder``: an encoder file, or ``None`` for random initialisation. ``run``:
    the job's MLflow run (``args.run``, tmf.tracking.command) that the scores are logged to; None: not logged.
    ``save_model``: also write the trained model there (:mod:`tmf.evaluate.saved_model`; pixel protocols, a test
    set of one fold).

    What is scored is the job's test set (``evaluate.test_set``, :mod:`tmf.evaluate.testsets`), recorded in
    ``metrics.json`` as ``test_set`` (and ``test_set_info``); a test set of several folds (``cross_city``) trains
    one model per fold from the same start and pools their confusion matrices. A method that needs labels the
    data does not have (the oracle on the public releases) writes ``status: skipped`` with the reason instead.

    The multi-modal protocols (``finetune_mm_<subset>``, ``supcon_mm_<subset>``) also read ``cfg["elevation"]``
    (the ``elevation`` section) for the dem subsets and ``cfg["multimodal"]`` for supcon_mm."""
    import torch

    from tmf.data.packed import open_packed
    from tmf.device import configure, resolve_device, seed_everything
    from tmf.evaluate import testsets
    from tmf.evaluate.data import MissingLabels
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
    if save_model and protocol in SCENE_PROTOCOLS:
        raise ValueError(f"--save-model: protocol {protocol!r} classifies whole sub-tiles; it trains no model that "
                         "maps pixels")
    if save_model and subset is not None:
        raise ValueError(f"--save-model: protocol {name!r} also reads elevation; the maps read the RGB tiles only")
    if head_dim is not None:
        cfg = {**cfg, "hyperbolic": {**cfg["hyperbolic"], "dim": head_dim}}
    dev = resolve_device(device)
    configure(dev, threads)
    data = open_packed(manifest, packed)
    identity = {"schema_version": METRICS_SCHEMA_VERSION, "protocol": name, "method": method, "fraction": fraction,
                "seed": seed, "head_dim": head_dim, "subset": subset, "encoder": encoder or "none",
                "backbone": None if protocol == SEGNET_PROTOCOL else cfg["backbone"]}
    title = f"{name} / {method} / {fraction_tag(fraction)} / seed {seed}"
    out = Path(out)
    test_set, why = testsets.resolve(data.manifest, cfg["test_set"])
    try:
        ts = testsets.build(data.manifest, cfg, method)
    except MissingLabels as e:
        log.warning("%s / %s skipped: %s", name, method, e)
        metrics = {**identity, "status": "skipped", "reason": str(e), "test_set": test_set,
                   "test_set_info": {"requested": cfg["test_set"], "why": why},
                   **dict.fromkeys(("oa", "miou", "kappa", "hierarchical_cost")), "n_train": 0,
                   "params": dict(cfg)}
        if save_model:  # the maps need this job's model (predict.*), and there is none
            raise ValueError(f"predict names {title}, which is skipped ({e}): name another predict.method") from None
        write_json(out / "metrics.json", metrics)
        predictions_figure(data, {}, out / "predictions.png", title=f"{title}: skipped ({e})")
        return metrics
    log.info("%s", testsets.describe(ts, data.manifest))
    t0 = time.perf_counter()
    folds = []
    for fold in ts.folds:
        seed_everything(seed)  # every fold starts from the same initialisation
        if subset is not None:  # the multi-modal protocols: an encoder per modality of the subset, fused
            from tmf.evaluate.multimodal import load_modal_encoders, run_finetune_mm
            from tmf.modalities import SUBSETS

            encoders = load_modal_encoders(cfg["backbone"], cfg.get("elevation"), encoder, SUBSETS[subset])
            alpha = float(cfg["multimodal"]["alpha"]) if protocol == "supcon_mm" else 0.0
            res = run_finetune_mm(data, encoders, method, fraction, seed, cfg, dev, fold, subset, alpha)
            folds.append(res)
            continue
        backbone = None if protocol == SEGNET_PROTOCOL else load_encoder(cfg["backbone"], encoder)
        if protocol in FINETUNE_PROTOCOLS:
            res = run_finetune(data, backbone, method, fraction, seed, cfg, dev, fold, head=HEAD_OF_PROTOCOL[protocol],
                               protocol=protocol)
        elif protocol == "linear":
            res = run_linear(data, backbone, fraction, seed, cfg, dev, fold)
        else:
            res = run_scene(data, backbone, protocol, fraction, seed, cfg, dev, fold)
        folds.append(res)
    models = [(r.pop("_model", None), r.pop("_architecture", None)) for r in folds]
    res, examples = _pool_folds(folds, ts)
    metrics = {
        **identity, "status": "ok", "test_set": ts.name, "test_set_info": ts.info(data.manifest),
        "device": str(dev), "torch": torch.__version__, "seconds": time.perf_counter() - t0,
        "params": {k: v for k, v in cfg.items()},
        **res,
    }
    if save_model:
        from tmf.evaluate.saved_model import save_model as write_model

        if len(models) != 1:
            raise ValueError(f"--save-model: test set {ts.name} trains {len(models)} models (one per fold); the maps "
                             "need one (predict.enabled: false, or another evaluate.test_set)")
        write_model(save_model, *models[0], {"protocol": name, "method": method, "fraction": fraction, "seed": seed})
    write_json(out / "metrics.json", _clean(metrics))
    if run is not None:
        log_measured(run, _clean(metrics))
    predictions_figure(data, examples, out / "predictions.png", title=f"{title} — test set {ts.name}")
    return metrics


def _pool_folds(results: list[dict[str, Any]], ts) -> tuple[dict[str, Any], dict]:
    """One job's scores from its folds' results: a single fold as it is; several (cross_city) from the sum of
    their per-city confusion matrices (the folds score disjoint cities), with the counts summed, ``train`` and
    the counts of each fold under ``folds``, and the predictions.png examples of all folds."""
    from tmf.evaluate.engine import score_cities

    examples = {k: v for r in results for k, v in r.pop("_examples").items()}
    confusions = [r.pop("_confusions") for r in results]
    if len(results) == 1:
        return results[0], examples
    per_city: dict[str, Any] = {}
    for cms in confusions:
        for city, cm in cms.items():
            per_city[city] = per_city[city] + cm if city in per_city else cm
    out = {k: v for k, v in results[0].items() if k not in ("train", "n_train", "n_pool", "n_test")}
    out.update(score_cities(per_city))
    for key in ("n_train", "n_pool", "n_test"):
        out[key] = int(sum(r.get(key, 0) for r in results))
    out["folds"] = [{"name": f.name, **{k: r[k] for k in ("n_train", "n_pool", "n_test") if k in r},
                     "oa": r["oa"], "miou": r["miou"], "train": r["train"]} for f, r in zip(ts.folds, results,
                                                                                           strict=True)]
    out["train"] = {"seconds": float(sum(r["train"]["seconds"] for r in results))}
    return out, examples


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
