"""``tmf track-start`` / ``tmf track-end``: the workflow's parent MLflow run (``workflow/rules/tracking.smk``);
``tmf dvc-track``: version data, models and reports with DVC (``workflow/rules/dvc.smk``).

Without ``--cfg`` or ``--params`` the tracking section comes from ``$TMF_TRACKING_CFG`` (set by the workflow for
every job), else from the schema's defaults. Every other subcommand's run is opened by ``tmf.cli.main``
(:func:`tmf.tracking.command.job_run`); ``dvc-track`` is a job like the others."""

from __future__ import annotations

import argparse
import logging
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
    p.set_defaults(func=_start, tracked=False)  # the parent run is its own: no job run around it

    p = sub.add_parser(
        "track-end",
        help="close the workflow's parent MLflow run",
        description="Close the running parent MLflow run (results/mlflow/parent_run_id or "
        "$TMF_MLFLOW_PARENT_RUN_ID) with the given status.",
    )
    add_cfg_arguments(p)
    p.add_argument("--status", default="FINISHED", choices=["FINISHED", "FAILED", "KILLED"],
                   help="how the workflow ended")
    p.set_defaults(func=_end, tracked=False)

    p = sub.add_parser(
        "dvc-track",
        help="version data/, results/* and reports/* with DVC (dvc add), the workflow's last step",
        description="Run `dvc add` on data/ (data.dvc) and on each entry of results/ (but mlflow/) and reports/ "
        "(results/<entry>.dvc, reports/<entry>.dvc), attach the pointers to the workflow's parent MLflow run, "
        "and list them. Never run it in parallel with another DVC command (DVC locks the repository). "
        "Afterwards: git add the printed .dvc files, git commit, dvc push.",
    )
    add_cfg_arguments(p)
    p.add_argument("--root", default=".", help="the repository (default: the working directory)")
    p.add_argument("--targets", nargs="+", help="paths to version (default: data, results/*, reports/*)")
    p.add_argument("--out", help="also write {pointer file: md5} to this JSON file")
    p.set_defaults(func=_dvc_track)


def _tracking_cfg(args) -> dict:
    """``--cfg`` / ``--params``, else ``$TMF_TRACKING_CFG``, else the schema's defaults."""
    from tmf.config import section_arg
    from tmf.tracking.store import config_from_env

    if args.cfg or args.params:
        return section_arg(args.cfg, args.params, "tracking")
    env = config_from_env()
    return env if env is not None else section_arg(None, None, "tracking")


def _start(args) -> int:
    from pathlib import Path

    import yaml

    from tmf.tracking.provenance import start_parent

    cfg = _tracking_cfg(args)
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
    run_id = start_parent(cfg, params, params_file, name=args.name)
    if run_id:
        print(run_id, file=sys.stdout)
    return 0


def _end(args) -> int:
    from tmf.tracking.provenance import end_parent

    end_parent(_tracking_cfg(args), args.status)
    return 0


def _dvc_track(args) -> int:
    from tmf import versioning
    from tmf.io import write_json

    pointers = versioning.dvc_track(args.root, args.targets)
    cfg = _tracking_cfg(args)
    try:
        parent = versioning.log_pointers_to_parent(pointers, cfg, args.root)
    except Exception as e:  # the data is versioned; a tracking hiccup must not fail the workflow's last step
        logging.getLogger(__name__).warning("could not attach the DVC pointers to the MLflow parent run: %s", e)
        parent = None
    for pointer, md5 in pointers.items():
        print(f"{pointer}\t{md5}")
    if parent:
        print(f"pointers attached to MLflow run {parent}", file=sys.stderr)
    if args.out:
        write_json(args.out, pointers)
    print("to version this state: git add " + " ".join(pointers) + " && git commit, then dvc push", file=sys.stderr)
    return 0
