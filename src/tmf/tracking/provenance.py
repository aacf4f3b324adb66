"""The workflow's parent run: one per invocation, tagged with what produced it (git commit, a hash of the
parameters, the data version), opened by ``tmf track-start`` and closed by ``tmf track-end``; and the runs that a
killed invocation or job left RUNNING, marked FAILED when the next invocation starts."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tmf.io import write_json, write_text
from tmf.tracking.runs import RUNS_DIR, JobRun, read_record
from tmf.tracking.store import MLFLOW_DIR, Store, enabled

log = logging.getLogger(__name__)

#: the parent run's id, for the jobs of the workflow (set by workflow/rules/tracking.smk)
PARENT_ENV = "TMF_MLFLOW_PARENT_RUN_ID"
PARENT_FILE = MLFLOW_DIR / "parent_run_id"
#: the tag that tells a workflow's parent run from its jobs' runs
WORKFLOW_TAG = "tmf.workflow"


def git_commit(cwd: str | Path = ".") -> tuple[str, bool]:
    """``(HEAD commit, dirty)`` of the git repository at ``cwd``; ``("unknown", False)`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return head.stdout.strip(), bool(dirty.stdout.strip())


def data_version(dvc_file: str | Path = "data.dvc") -> str:
    """The md5 that ``data.dvc`` records for ``data/`` (DVC's directory hash), or ``untracked``."""
    import yaml

    try:
        doc = yaml.safe_load(Path(dvc_file).read_text()) or {}
    except FileNotFoundError:
        return "untracked"
    outs = doc.get("outs") or []
    if not outs or not outs[0].get("md5"):
        raise ValueError(f"{dvc_file}: no outs[0].md5; is it a DVC pointer file?")
    return str(outs[0]["md5"])


def params_hash(params: Mapping[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the parameters as canonical JSON."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_parent_run_id() -> str | None:
    """The workflow's parent run: ``$TMF_MLFLOW_PARENT_RUN_ID``, else ``results/mlflow/parent_run_id``."""
    env = os.environ.get(PARENT_ENV, "").strip()
    if env:
        return env
    try:
        return PARENT_FILE.read_text().strip() or None
    except FileNotFoundError:
        return None


def live_parent(store: Store, experiment_id: str):
    """The parent run (an MLflow ``Run``) if it exists in this store and experiment and is RUNNING, else None."""
    parent = read_parent_run_id()
    if not parent:
        return None
    try:
        run = store.retry(store.client.get_run, parent)
    except Exception as e:  # not in this store (another URI, a deleted database)
        log.warning("parent MLflow run %s not found (%s); logging a standalone run", parent, e)
        return None
    if run.info.experiment_id != experiment_id or run.info.status != "RUNNING":
        return None  # left over from an earlier workflow invocation, or another experiment
    return run


def start_parent(cfg: Mapping[str, Any] | None, params: Mapping[str, Any],
                 params_file: str | Path | None = None, name: str | None = None) -> str | None:
    """Create the workflow's parent run and write its id to ``results/mlflow/parent_run_id``.

    First the runs that earlier invocations of this project left RUNNING are marked FAILED
    (:func:`fail_leftovers`). Tags: ``mlflow.source.git.commit`` / ``tmf.git_commit`` (+ ``tmf.git_dirty``),
    ``tmf.params_hash`` (:func:`params_hash` of ``params``), ``tmf.data_version`` (:func:`data_version`).
    ``params`` are logged as the run's parameters and ``params_file`` as an artifact. Returns the run id (None
    when tracking is off).
    """
    if not enabled(cfg):
        return None
    store = Store.of(cfg)
    exp_id = store.experiment_id(cfg["experiment"])
    fail_leftovers(store)
    commit, dirty = git_commit()
    tags = {
        "mlflow.source.git.commit": commit,
        "tmf.git_commit": commit,
        "tmf.git_dirty": str(dirty).lower(),
        "tmf.params_hash": params_hash(params),
        "tmf.data_version": data_version(),
        WORKFLOW_TAG: "true",
    }
    run_name = name or time.strftime("workflow-%Y%m%d-%H%M%S", time.gmtime())
    info = store.write(store.client.create_run, exp_id, run_name=run_name, tags=tags)
    run = JobRun(store, info.info.run_id)
    run.log_params(params)
    if params_file:
        run.log_artifact(params_file)
    write_text(PARENT_FILE, run.run_id + "\n")
    return run.run_id


def parent_run(cfg: Mapping[str, Any] | None) -> JobRun | None:
    """The workflow's parent run, while it is RUNNING (to log artifacts or tags to it), else None."""
    if not enabled(cfg):
        return None
    store = Store.of(cfg)
    parent = live_parent(store, store.experiment_id(cfg["experiment"]))
    return JobRun(store, parent.info.run_id) if parent else None


def end_parent(cfg: Mapping[str, Any] | None, status: str = "FINISHED") -> str | None:
    """Close the workflow's parent run as ``status`` (FINISHED, FAILED or KILLED), after marking FAILED its jobs'
    runs still RUNNING (jobs killed while the workflow went on); returns its id or None."""
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise ValueError(f"--status {status!r}: expected FINISHED, FAILED or KILLED")
    run = parent_run(cfg)
    if run is None:
        log.warning("no running parent MLflow run to close")
        return None
    _fail_children(run.store, run.run_id)
    run.end(status)
    return run.run_id


# ----------------------------------------------------------------------------------------------------------
# Runs left RUNNING by killed invocations


def _fail(store: Store, run_id: str) -> None:
    store.write(store.client.set_terminated, run_id, "FAILED")


def _fail_children(store: Store, parent_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs nested under ``parent_id``; returns their ids."""
    run = store.retry(store.client.get_run, parent_id)
    children = store.retry(store.client.search_runs, [run.info.experiment_id],
                           f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'")
    for child in children:
        _fail(store, child.info.run_id)
        log.warning("MLflow run %s (%s) of a job that did not finish: marked FAILED", child.info.run_id,
                    child.info.run_name)
    return [c.info.run_id for c in children]


def _alive(pid: int, host: str | None) -> bool:
    """Whether process ``pid`` of ``host`` may still run (a process of another host is assumed alive)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


def fail_leftovers(store: Store) -> list[str]:
    """Mark FAILED the runs of this project that killed processes left RUNNING; returns their ids.

    Called when an invocation starts, when no earlier invocation can still run (Snakemake locks the working
    directory): the previous parent run (``results/mlflow/parent_run_id``) and its jobs' runs if still RUNNING,
    and the records (``results/mlflow/runs/*.json``) still RUNNING: a workflow job's (its invocation is over)
    or a command run by hand whose process is gone. Their records say FAILED too."""
    failed = []
    previous = None
    try:
        previous = PARENT_FILE.read_text().strip() or None
    except FileNotFoundError:
        pass
    if previous:
        try:
            run = store.retry(store.client.get_run, previous)
        except Exception as e:  # another store, or a deleted database: nothing of it to close here
            log.debug("previous parent run %s not in %s: %s", previous, store.uri, e)
        else:
            failed += _fail_children(store, previous)
            if run.info.status == "RUNNING":
                _fail(store, previous)
                failed.append(previous)
                log.warning("MLflow parent run %s of an invocation that did not finish: marked FAILED", previous)
    for path in sorted(RUNS_DIR.glob("*.json")) if RUNS_DIR.is_dir() else []:
        rec = read_record(path)
        if not rec or rec.get("status") != "RUNNING" or rec.get("server") != store.server:
            continue
        if rec.get("parent_run_id") is None and _alive(rec.get("pid"), rec.get("host")):
            continue  # a command run by hand that is still running
        if rec["run_id"] not in failed:
            try:
                if store.retry(store.client.get_run, rec["run_id"]).info.status == "RUNNING":
                    _fail(store, rec["run_id"])
                    failed.append(rec["run_id"])
            except Exception as e:
                log.debug("run %s of %s not in %s: %s", rec["run_id"], path, store.uri, e)
                continue
        write_json(path, {**rec, "status": "FAILED"})
    return failed

