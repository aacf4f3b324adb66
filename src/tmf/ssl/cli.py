"""``tmf pretrain``: one self-supervised pretraining run (method, seed).

Runs on the CPU, on one GPU, or data-parallel: under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the
environment) every process runs this same command; with ``pretrain.ddp: true`` and ``nproc`` > 1 outside
torchrun, the command starts ``nproc`` copies of itself through ``torch.distributed.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def register(subparsers) -> None:
    from tmf.cli import add_cfg_arguments, choices_help
    from tmf.config import method_names

    p = subparsers.add_parser(
        "pretrain", help="self-supervised pretraining of one (method, seed)",
        description="Pretrain a backbone with one self-supervised method on the packed tinyMiniFrance images; "
        "writes encoder.pt, metrics.json, history.csv (and checkpoint.pt, from which a rerun resumes).")
    p.add_argument("--method", required=True, help=choices_help("the method (docs/ssl-methods.md)", method_names()))
    p.add_argument("--seed", type=int, required=True, help="the run's seed (one of pretrain.seeds)")
    p.add_argument("--manifest", required=True, help="tinyMiniFrance manifest.csv")
    p.add_argument("--packed", required=True, help="folder holding images.npy (uint8 N x S x S x 3), and dem.npy + "
                   "dem_valid.npy for the multi-modal methods")
    p.add_argument("--out", required=True, help="output folder, e.g. results/pretrain/<method>/seed<k>")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"],
                   help="default: the 'device' key of --cfg if present, else auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 'threads' of --cfg)")
    p.add_argument("--tracking-cfg", default=None,
                   help="the tracking params section as JSON (default: $TMF_TRACKING_CFG, set by the workflow; "
                   "else that of --params; else no MLflow run): read by tmf.tracking.command")
    add_cfg_arguments(p)
    p.set_defaults(func=_pretrain)


def _split_compute_keys(cfg_json: str | None) -> tuple[str | None, dict]:
    """The workflow passes the pretrain section plus the top-level compute keys (device, threads) and, for the
    multi-modal methods, the ``elevation`` section."""
    if not cfg_json:
        return cfg_json, {}
    from tmf.config import ParamsError

    try:
        d = json.loads(cfg_json)
    except json.JSONDecodeError as e:
        raise ParamsError(f"--cfg for pretrain: not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ParamsError("--cfg for pretrain: expected a JSON object")
    extra = {k: d.pop(k) for k in ("device", "threads", "elevation") if k in d}
    return json.dumps(d), extra


def _pretrain(args: argparse.Namespace) -> int:
    from tmf.config import check_name, method_names, section_arg

    check_name("--method", args.method, method_names(), "method")
    cfg_json, extra = _split_compute_keys(args.cfg)
    cfg = section_arg(cfg_json, args.params, "pretrain")
    elevation = section_arg(json.dumps(extra["elevation"]) if "elevation" in extra else None, args.params,
                            "elevation")
    device = args.device or extra.get("device", "auto")
    threads = args.threads or extra.get("threads")

    under_torchrun = "WORLD_SIZE" in os.environ
    if cfg["ddp"] and cfg["nproc"] > 1 and not under_torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(cfg["nproc"]), "-m", "tmf.cli", *sys.argv[1:]]
        from tmf.tracking import worker_env

        return subprocess.call(cmd, env=worker_env(args.run))  # rank 0 logs into this job's MLflow run

    from tmf.ssl.train import pretrain

    pretrain(cfg, args.manifest, args.packed, args.out, method=args.method, seed=args.seed, device=device,
             run=args.run, threads=threads, elevation=elevation)
    return 0
