"""The run of one ``tmf`` command: :func:`job_run` opens it around the subcommand (``tmf.cli.main`` hands it to
the handler as ``args.run``), names it, gives it the job's identity as params and tags, and closes it.

Which run a command gets:

* in a job of a tracked workflow (the parent run's id in ``$TMF_MLFLOW_PARENT_RUN_ID``): a child run of it;
* by hand, given a tracking section (``--tracking-cfg``, ``$TMF_TRACKING_CFG`` or the ``tracking`` section of
  ``--params FILE``) that says ``enabled``: a standalone run; given none, or ``enabled: false``: no run
  (a :class:`~tmf.tracking.runs.NoRun`);
* in a worker process of a job (``tmf pretrain`` re-launched under torchrun, ``$TMF_JOB_RUN_ID`` set by
  :func:`worker_env`): rank 0 logs into the launcher's run, which the launcher closes; other ranks get no run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tmf.tracking.provenance import PARENT_ENV, live_parent
from tmf.tracking.runs import JobRun, NoRun, field_value, job_name, run_record_path, write_record
from tmf.tracking.store import Store, config_from_env, enabled

log = logging.getLogger(__name__)

#: the run id of a job that starts worker processes (set for them by :func:`worker_env`)
JOB_RUN_ENV = "TMF_JOB_RUN_ID"

#: What identifies a job's run, logged as params *and* tags of it, so that runs filter in the MLflow UI and API
#: (``params.method = 'simclr' and tags.protocol = 'linear'``). Each is read from the command's argument of that
#: name, else from the top level of its ``--cfg`` (``backbone``), else (``source``) from the workflow's
#: parameters. Adding a field (the test set, once evaluation has one) is adding its name here.
IDENTITY = ("protocol", "method", "fraction", "seed", "encoder", "backbone", "source")
#: the identity fields that name a job (its run and record, :func:`tmf.tracking.runs.job_name`); a command
#: named by none of ``method`` / ``protocol`` adds its output to the name, which then stays unique
NAME_FIELDS = ("protocol", "method", "fraction", "seed")
#: arguments holding a job's output (file or folder), whose small files become the run's artifacts
_OUT_ARGS = ("out", "out_dir", "html")
_MAX_ARTIFACT_BYTES = 5_000_000
_ARTIFACT_SUFFIXES = (".json", ".csv", ".png", ".svg", ".html", ".txt", ".yaml")


def tracking_section(args: Any) -> dict[str, Any] | None:
    """The ``tracking`` section a command was given: ``--tracking-cfg`` > ``$TMF_TRACKING_CFG`` > the
    ``tracking`` section of ``--params FILE``; None when none was given (validated, defaults filled in)."""
    from tmf.config import ParamsError, load_params, validate

    text = getattr(args, "tracking_cfg", None)
    if text:
        try:
            cfg = json.loads(text)
        except json.JSONDecodeError as e:
            raise ParamsError(f"--tracking-cfg: not valid JSON: {e}") from None
        return validate({"tracking": cfg}, source="--tracking-cfg")["tracking"]
    env = config_from_env()
    if env is not None:
        return env
    if getattr(args, "params", None):
        return load_params(args.params)["tracking"]
    return None


def _output(args: Any) -> str | None:
    return next((str(getattr(args, k)) for k in (*_OUT_ARGS, "dir") if getattr(args, k, None)), None)


def command_job_name(args: Any) -> str:
    """The job name of a parsed command line (:func:`tmf.tracking.runs.job_name` of its naming arguments)."""
    fields = {k: getattr(args, k) for k in NAME_FIELDS if getattr(args, k, None) is not None}
    named = "method" in fields or "protocol" in fields
    return job_name(args.command, fields, None if named else _output(args))


def _cfg_arg(args: Any) -> dict[str, Any]:
    """The ``--cfg`` JSON object, or {} (a bad one is the handler's to report)."""
    try:
        cfg = json.loads(getattr(args, "cfg", None) or "{}")
    except json.JSONDecodeError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def identity(args: Any, cfg: Mapping[str, Any], workflow_params: Mapping[str, str]) -> dict[str, str]:
    """The :data:`IDENTITY` fields of a job that has them (``workflow_params``: the parent run's params)."""
    out = {}
    for field in IDENTITY:
        value = getattr(args, field, None)
        if value is None and isinstance(cfg.get(field), str | int | float):
            value = cfg[field]
        if value is None and field == "source":
            value = workflow_params.get("data.source")
        if value is not None:
            out[field] = field_value(value)
    return out


def command_outputs(args: Any) -> list[Path]:
    """The small result files of a job: its output file, or the top-level files of its output folder."""
    found = []
    for k in _OUT_ARGS:
        v = getattr(args, k, None)
        if not v or not isinstance(v, str | Path):
            continue
        p = Path(v)
        files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p] if p.is_file() else []
        found += [q for q in files if q.suffix in _ARTIFACT_SUFFIXES and not q.name.startswith(".")
                  and q.stat().st_size <= _MAX_ARTIFACT_BYTES]
    return found


def worker_env(run: JobRun | NoRun) -> dict[str, str]:
    """Environment for the worker processes of a job: its run id, when it has a run."""
    return {**os.environ, **({JOB_RUN_ENV: run.run_id} if run.run_id else {})}


@contextlib.contextmanager
def job_run(args: Any) -> Iterator[JobRun | NoRun]:
    """The run of the command ``args`` (parsed by ``tmf.cli``; see the module docstring for which run).

    A new run is named :func:`command_job_name`, tagged and parametrised with the job's :func:`identity` (plus
    ``tmf.command``, ``tmf.job``), and carries the ``--cfg`` parameters (``cfg.<key>``: exactly what the job
    depends on) or the ``--params`` file (as an artifact). When the block returns: the run time
    (``job.duration_s``), the small files of the command's output as artifacts, and the end as ``run.status``
    (FINISHED; the caller sets FAILED for an exit status); when it raises: FAILED (KILLED on Ctrl-C).
    Its record (``results/mlflow/runs/<job>.json``) follows each step.
    """
    if not getattr(args, "tracked", True) or os.environ.get("RANK", "0") != "0":
        yield NoRun()  # the parent run's own commands; a worker of another rank
        return
    cfg = tracking_section(args)
    if os.environ.get(JOB_RUN_ENV):  # a worker of a job whose launcher holds the run
        if not enabled(cfg):
            yield NoRun()
            return
        run = JobRun(Store.of(cfg), os.environ[JOB_RUN_ENV])
        try:
            yield run
        finally:
            run.flush()
        return
    name = command_job_name(args)
    if not enabled(cfg):
        if cfg is not None:
            run_record_path(name).unlink(missing_ok=True)  # tracking switched off: no stale link to an old run
        yield NoRun()
        return
    run = _open(Store.of(cfg), cfg, args, name)
    t0 = time.monotonic()
    try:
        yield run
    except BaseException as e:
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        try:
            run.end(status)
        except Exception as end_error:  # keep the job's own error, not tracking's
            log.error("could not close MLflow run %s as %s: %s", run.run_id, status, end_error)
        write_record(run, status)
        raise
    run.log_metrics({"job.duration_s": time.monotonic() - t0})
    if run.status == "FINISHED":
        for path in command_outputs(args):
            run.log_artifact(path)
    run.end(run.status)
    write_record(run, run.status)


def _open(store: Store, cfg: Mapping[str, Any], args: Any, name: str) -> JobRun:
    exp_id = store.experiment_id(cfg["experiment"])
    parent = live_parent(store, exp_id) if os.environ.get(PARENT_ENV) else None
    cfg_arg = _cfg_arg(args)
    ident = identity(args, cfg_arg, parent.data.params if parent else {})
    tags = {**ident, "tmf.command": args.command, "tmf.job": name}
    if parent:
        tags["mlflow.parentRunId"] = parent.info.run_id
    info = store.write(store.client.create_run, exp_id, run_name=name, tags=tags)
    run = JobRun(store, info.info.run_id, name)
    run.record = {"experiment_id": exp_id, "parent_run_id": parent.info.run_id if parent else None,
                  "server": store.server}
    write_record(run, "RUNNING")
    run.log_params({**ident, **({"cfg": cfg_arg} if cfg_arg else {})})
    # by hand from a params file (a missing one is the handler's to report)
    if getattr(args, "params", None) and not cfg_arg and Path(args.params).is_file():
        run.log_params({"params_file": args.params})
        run.log_artifact(args.params)
    return run
