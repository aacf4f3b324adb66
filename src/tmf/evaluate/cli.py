"""``tmf evaluate`` (one evaluation job) and ``tmf collect`` (the table of every job)."""

from __future__ import annotations

import argparse
import logging

from tmf.cli import add_cfg_arguments, choices_help

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from tmf.config import method_names
    from tmf.modalities import SUBSETS
    from tmf.plan import BASELINES, HEAD_PROTOCOLS, MODAL_PROTOCOLS, PROTOCOLS

    p = sub.add_parser(
        "evaluate",
        help="score one encoder/method on tinyMiniFrance segmentation (one protocol, label fraction and seed)",
        description="One evaluation job (SPEC.md §5). Writes OUT/metrics.json and OUT/predictions.png.",
    )
    p.add_argument("--protocol", required=True,
                   help=choices_help("the protocol (docs/evaluation.md)", PROTOCOLS)
                   + f"; {' and '.join(HEAD_PROTOCOLS)} with their head dimension: <protocol>_d<dim>; "
                   + f"{' and '.join(MODAL_PROTOCOLS)} with their subset of modalities: <protocol>_<subset> "
                   + f"(subset: {', '.join(SUBSETS)})")
    p.add_argument("--method", required=True,
                   help=choices_help("a pretraining method (with --encoder results/pretrain/<method>/seed<k>/"
                                     "encoder.pt) or a baseline", [*method_names(), *BASELINES]))
    p.add_argument("--fraction", type=float, required=True, help="label fraction in (0, 1]")
    p.add_argument("--seed", type=int, required=True, help="the run's seed (one of evaluate.seeds)")
    p.add_argument("--manifest", default="data/tinyminifrance/manifest.csv", help="tinyMiniFrance manifest.csv")
    p.add_argument("--packed", default="data/tinyminifrance/packed", help="folder with images.npy and labels.npy")
    p.add_argument("--encoder", default="none", help="encoder file (encoder.pt or torchvision weights) or 'none'")
    p.add_argument("--out", required=True, help="output folder (results/evaluate/<protocol>/<method>/frac<f>/seed<k>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--save-model", default=None, metavar="PATH",
                   help="also save the trained model there (OUT/model.pt), for `tmf predict`; the workflow asks "
                        "only the evaluation job named by predict.* (pixel protocols only)")
    add_cfg_arguments(p)
    p.set_defaults(func=_evaluate)

    c = sub.add_parser(
        "collect",
        help="gather evaluation metrics.json files into summary.csv (one row per run) and summary_agg.csv",
        description="Tidy table of every evaluation run, and mean ± std over seeds per protocol × method × fraction.",
    )
    c.add_argument("--inputs", nargs="+", required=True, help="metrics.json files")
    c.add_argument("--out", default="results/evaluate/summary.csv",
                   help="summary.csv to write (summary_agg.csv goes beside it)")
    c.add_argument("--grid", default="", help="also write the multi-modal runs in seed 000 Table 4.3's shape to this "
                   "CSV (results/evaluate/modality_grid.csv); empty: not written")
    c.set_defaults(func=_collect)


def _evaluate(args) -> int:
    import json

    from tmf.config import ParamsError, check_name, method_names, section_arg
    from tmf.evaluate.run import run_job
    from tmf.plan import BASELINES, PROTOCOLS, split_modal, split_protocol

    base, subset = split_modal(split_protocol(args.protocol)[0])
    check_name("--protocol", base, PROTOCOLS, "protocol")
    check_name("--method", args.method, [*method_names(), *BASELINES], "method")
    cfg_json, elevation = args.cfg, None
    if cfg_json:  # the workflow adds the elevation section to the dem subsets' evaluate section
        try:
            d = json.loads(cfg_json)
        except json.JSONDecodeError as e:
            raise ParamsError(f"--cfg for evaluate: not valid JSON: {e}") from None
        if isinstance(d, dict) and "elevation" in d:
            elevation = d.pop("elevation")
            cfg_json = json.dumps(d)
    cfg = section_arg(cfg_json, args.params, "evaluate")
    if subset is not None and "dem" in subset:
        cfg["elevation"] = section_arg(json.dumps(elevation) if elevation is not None else None, args.params,
                                       "elevation")
    m = run_job(args.protocol, args.method, args.fraction, args.seed, args.manifest, args.packed, args.encoder,
                args.out, cfg, device=args.device, threads=args.threads, run=args.run,
                save_model=args.save_model)
    run = args.run  # the job's MLflow run (tmf.tracking.command), or None
    if run is not None:  # the test set `auto` chose is known only now (cfg.test_set is the one requested)
        run.log_params({"test_set": m["test_set"]})
        run.set_tags({"test_set": m["test_set"], "status": m["status"]})
    if m["status"] == "skipped":
        log.info("%s/%s frac %s seed %d: skipped (%s)", m["protocol"], m["method"], m["fraction"], m["seed"],
                 m["reason"])
        return 0
    log.info("%s/%s frac %s seed %d, test set %s: OA %.4f mIoU %.4f kappa %.4f (%.1f s)", m["protocol"],
             m["method"], m["fraction"], m["seed"], m["test_set"], m["oa"] or float("nan"),
             m["miou"] or float("nan"), m["kappa"] or float("nan"), m["seconds"])
    return 0


def _collect(args) -> int:
    from tmf.evaluate.summary import collect

    out, agg = collect(args.inputs, args.out, grid=args.grid or None)
    log.info("wrote %s and %s", out, agg)
    return 0
