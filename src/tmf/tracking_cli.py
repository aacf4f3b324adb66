"""``tmf track-start`` / ``tmf track-end``: the workflow's parent MLflow run (called by ``workflow/rules/tracking.smk``)."""

from __future__ import annotations

import argparse
import sys

from tmf.cli import add_cfg_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track-start",
        help="create the workflow's parent MLflow run (tags: git commit, parameter hash, data version)",
        description="Create the parent MLflow run of one workflow invocation and write its id to "
        "results/mlflow/parent_run_id; every job's run is then nested under it. Does nothing when "
        "tracking.enabled is false.",
    )
    add_cfg_arguments(p)
    p.add_argument("--params-file", help="the workflow's full parameters (YAML or JSON): logged as the parent's "
                   "parameters and artifact, hashed into the tmf.params_hash tag (default: --params, else none)")
    p.add_argument("--name", help="run name (default: workflow-<UTC date-time>)")
    p.set_defaults(func=_start)

    p = sub.add_parser(
        "track-end",
        help="close the workflow's parent MLflow run",
        description="Close the running parent MLflow run (results/mlflow/parent_run_id or "
        "$TMF_MLFLOW_PARENT_RUN_ID) with the given status.",
    )
    add_cfg_arguments(p)
    p.add_argument("--status", default="FINISHED", choices=["FINISHED", "FAILED", "KILLED"])
    p.set_defaults(func=_end)


def _start(args) -> int:
    from pathlib import Path

    import yaml

    from tmf import tracking
    from tmf.config import section_arg

    cfg = section_arg(args.cfg, args.params, "tracking")
    params_file = args.params_file or args.params
    params = {}
    if params_file:
        path = Path(params_file)
        if not path.is_file():
            raise FileNotFoundError(f"--params-file not found: {path}")
        try:
            params = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML/JSON: {e}") from None
    run_id = tracking.start_parent(cfg, params, params_file, name=args.name)
    if run_id:
        print(run_id, file=sys.stdout)
    return 0


def _end(args) -> int:
    from tmf import tracking
    from tmf.config import section_arg

    tracking.end_parent(section_arg(args.cfg, args.params, "tracking"), args.status)
    return 0
