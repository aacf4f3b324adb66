"""MLflow tracking: one parent run per workflow invocation, one child run per job.

The workflow's ``onstart`` hook runs ``tmf track-start``, which creates the parent run (tagged with the git
commit, a hash of the parameters and the data version from ``data.dvc``) and writes its id to
``results/mlflow/parent_run_id``; every job then opens :func:`job_run`, which creates a child run nested under
that parent (tag ``mlflow.parentRunId``). A ``tmf`` command run by hand, with no running parent, gets a standalone
run. ``onsuccess`` / ``onerror`` close the parent (``tmf track-end``).

Where runs go: ``MLFLOW_TRACKING_URI`` (environment) > ``tracking.uri`` (parameter) >
``sqlite:///<cwd>/results/mlflow/mlflow.db``. For a SQLite store the artifacts go to ``artifacts/`` beside the
database file (``results/mlflow/artifacts`` by default); a tracking server keeps its own artifact root.

Many jobs may write to one SQLite file at once. SQLite allows a single writer, and a deferred transaction that
must upgrade to a write lock can fail at once with "database is locked" whatever the busy timeout. So, for a
SQLite store, every write here is serialised across processes by an advisory lock on ``<db>.lock``
(``fcntl.flock``; SQLite itself requires a local file system, where flock works), the database is switched to
WAL journaling once (readers such as ``mlflow ui`` then never block writers), metrics are buffered and sent
with ``log_batch`` (one transaction per batch), and a call that still fails with a transient error is retried
with exponential backoff. The first creation of the database (MLflow's alembic migrations) happens under the
same lock, so concurrent first jobs cannot race on the schema.

Each job's run id is also written to ``results/mlflow/runs/<name>.json`` (see ``docs/file-formats.md``,
"Tracking"), where the report finds it with :func:`run_record` to link a table row to its run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tmf.io import write_json

log = logging.getLogger(__name__)

# Telemetry of MLflow (and of DVC, for the commands this process starts) stays off unless the user asks.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

PARENT_ENV = "TMF_MLFLOW_PARENT_RUN_ID"
MLFLOW_DIR = Path("results/mlflow")
PARENT_FILE = MLFLOW_DIR / "parent_run_id"
RUNS_DIR = MLFLOW_DIR / "runs"
DEFAULT_DB = MLFLOW_DIR / "mlflow.db"

# MLflow limits (mlflow.utils.validation): 1000 metrics / 100 params per log_batch, 6000 characters per value.
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_LEN = 6000
_FLUSH_EVERY_S = 15.0
_TRANSIENT = ("database is locked", "database table is locked", "busy", "disk i/o error",
              "unable to open database", "timed out", "timeout", "connection")


# ----------------------------------------------------------------------------------------------------------
# Where the runs go


def tracking_uri(cfg: Mapping[str, Any] | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` > ``cfg["uri"]`` > ``sqlite:///<cwd>/results/mlflow/mlflow.db`` (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    uri = str((cfg or {}).get("uri") or "").strip()
    if uri:
        return uri
    return "sqlite:///" + str((Path.cwd() / DEFAULT_DB).resolve())


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths against the working directory), else None."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///"):
        raise ValueError(f"tracking.uri {uri!r}: a SQLite store needs a file path, sqlite:///path/to/mlflow.db")
    path = unquote(rest[3:].split("?", 1)[0])
    if not path or path == ":memory:":
        raise ValueError(f"tracking.uri {uri!r}: an in-memory SQLite store cannot be shared between jobs")
    return Path(path) if os.path.isabs(path) else Path.cwd() / path


def artifact_location(uri: str) -> str | None:
    """``artifacts/`` beside a SQLite database (as a file URI); None (the server's own root) otherwise."""
    db = sqlite_path(uri)
    return (db.parent / "artifacts").resolve().as_uri() if db is not None else None


def _is_transient(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}".lower()
    return "operationalerror" in text or any(t in text for t in _TRANSIENT)


class _Store:
    """An MLflow client on one tracking URI, with cross-process write serialisation for SQLite."""

    _cache: dict[str, _Store] = {}

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.db = sqlite_path(uri)
        if self.db is not None:
            self.db.parent.mkdir(parents=True, exist_ok=True)
        # Creating the client creates the store, which creates (or migrates) the database: under the lock, so
        # that jobs starting together do not run the schema migrations concurrently.
        with self.locked():
            self.client = self.retry(MlflowClient, tracking_uri=uri)
            self.retry(self.client.search_experiments, max_results=1)
            if self.db is not None:
                self._enable_wal()

    @classmethod
    def get(cls, uri: str) -> _Store:
        if uri not in cls._cache:
            cls._cache[uri] = cls(uri)
        return cls._cache[uri]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        if self.db is None:
            yield
            return
        with open(str(self.db) + ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _enable_wal(self) -> None:
        import sqlite3

        con = sqlite3.connect(str(self.db), timeout=60)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()

    def retry(self, fn, *args, attempts: int = 10, **kwargs):
        """Call ``fn``; on a transient error (locked database, lost connection) retry with backoff (~1 min)."""
        delay = 0.05
        for i in range(attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                if i == attempts - 1 or not _is_transient(e):
                    raise
                log.debug("MLflow call %s failed (%s); retrying in %.2f s", getattr(fn, "__name__", fn), e, delay)
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 10.0)

    def write(self, fn, *args, **kwargs):
        """A database write: serialised across processes (SQLite) and retried."""
        def call():
            with self.locked():
                return fn(*args, **kwargs)

        return self.retry(call)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created (artifacts beside a SQLite database) when missing."""
        from mlflow.exceptions import MlflowException

        exp = self.retry(self.client.get_experiment_by_name, name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise ValueError(f"tracking.experiment {name!r} is deleted in {self.uri}: restore it "
                                 "(`mlflow experiments restore`) or choose another name")
            return exp.experiment_id

        def create():
            with self.locked():
                again = self.client.get_experiment_by_name(name)
                if again is not None:
                    return again.experiment_id
                try:
                    return self.client.create_experiment(name, artifact_location=artifact_location(self.uri))
                except MlflowException as e:  # created meanwhile by another client (a tracking server)
                    if "already exists" not in str(e).lower():
                        raise
                    return self.client.get_experiment_by_name(name).experiment_id

        return self.retry(create)


# ----------------------------------------------------------------------------------------------------------
# Parameters and metrics


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts to dotted keys, values as strings (lists as JSON), cut to MLflow's 6000 characters."""
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_params(v, key + "."))
            continue
        if isinstance(v, str):
            text = v
        elif isinstance(v, list | tuple | Mapping):
            text = json.dumps(v, sort_keys=True, default=str)
        else:
            text = str(v)
        if len(text) > _MAX_PARAM_LEN:
            text = text[: _MAX_PARAM_LEN - 3] + "..."
        out[_key(key)] = text
    return out


def _key(key: str) -> str:
    """MLflow keys allow alphanumerics, ``_ - . / : `` and spaces; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./: ]", "_", str(key))


def params_hash(params: Mapping[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the parameters as canonical JSON."""
    import hashlib

    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# Runs


class NoRun:
    """What :func:`job_run` yields when tracking is off: every call does nothing; ``run_id`` is None."""

    run_id: str | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        _check_metrics(metrics)

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path: str | Path) -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"artifact not found: {path}")

    def flush(self) -> None:
        pass


def _check_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[_key(k)] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"metric {k!r}: not a number: {v!r}") from None
    return out


class JobRun:
    """A live MLflow run: metrics are buffered and sent with ``log_batch``."""

    def __init__(self, store: _Store, run_id: str, name: str | None = None):
        self._store = store
        self.run_id = run_id
        self.name = name
        self.record: dict[str, Any] = {}
        self._buffer: list = []
        self._last_flush = time.monotonic()
        self._logged_params: dict[str, str] = {}

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Buffer ``{key: value}`` at ``step`` (0 when None); sent every 1000 values or 15 s, and at the end."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for k, v in _check_metrics(metrics).items():
            self._buffer.append(Metric(k, v, ts, int(step or 0)))
        if len(self._buffer) >= _MAX_METRICS_PER_BATCH or time.monotonic() - self._last_flush > _FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            batch = self._buffer[:_MAX_METRICS_PER_BATCH]
            self._store.write(self._store.client.log_batch, self.run_id, metrics=batch)
            del self._buffer[: len(batch)]
        self._last_flush = time.monotonic()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) parameters; a key logged again with the same value is skipped (MLflow forbids changes)."""
        from mlflow.entities import Param

        flat = {k: v for k, v in flatten_params(params).items() if self._logged_params.get(k) != v}
        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self._store.write(self._store.client.log_batch, self.run_id, params=items[i: i + _MAX_PARAMS_PER_BATCH])
        self._logged_params.update(flat)

    def log_artifact(self, path: str | Path) -> None:
        """Copy a file (or a folder's content, under its name) to the run's artifacts."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"artifact not found: {p}")
        if p.is_dir():
            self._store.retry(self._store.client.log_artifacts, self.run_id, str(p), artifact_path=p.name)
        else:
            self._store.retry(self._store.client.log_artifact, self.run_id, str(p))

    def log_artifact_as(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file to the run's artifacts, under the folder ``artifact_path`` (None: the top)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"artifact not found: {p}")
        self._store.retry(self._store.client.log_artifact, self.run_id, str(p), artifact_path=artifact_path or None)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(_key(k), str(v)) for k, v in tags.items()]
        self._store.write(self._store.client.log_batch, self.run_id, tags=items)

    def end(self, status: str) -> None:
        self.flush()
        self._store.write(self._store.client.set_terminated, self.run_id, status)

    def write_record(self, status: str) -> None:
        """``results/mlflow/runs/<name>.json``: where the report finds this job's run."""
        if self.name:
            self.record.update(name=self.name, run_id=self.run_id, status=status)
            write_json(run_record_path(self.name), self.record)

    def rename(self, name: str) -> None:
        """Give the run (and its record) the name the stage chose."""
        if name == self.name:
            return
        if self.name:
            run_record_path(self.name).unlink(missing_ok=True)
        self.set_tags({"mlflow.runName": name, "tmf.job": name})
        self.name = name
        self.write_record(self.record.get("status", "RUNNING"))


CFG_ENV = "TMF_TRACKING_CFG"


def config_from_env() -> dict[str, Any]:
    """The ``tracking`` section the workflow passes to every job in ``$TMF_TRACKING_CFG`` (JSON), validated;
    the schema's defaults when unset. (By environment, not by rule params: switching tracking on or off must not
    make Snakemake re-run anything.)"""
    from tmf.config import ParamsError, validate

    text = os.environ.get(CFG_ENV, "").strip()
    try:
        cfg = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ParamsError(f"${CFG_ENV}: not valid JSON: {e}") from None
    return validate({"tracking": cfg}, source=f"${CFG_ENV}")["tracking"]


def enabled(cfg: Mapping[str, Any] | None) -> bool:
    return bool((cfg or {}).get("enabled", True))


def experiment_name(cfg: Mapping[str, Any] | None) -> str:
    return str((cfg or {}).get("experiment") or "tmf")


def read_parent_run_id() -> str | None:
    """The workflow's parent run: ``$TMF_MLFLOW_PARENT_RUN_ID``, else ``results/mlflow/parent_run_id``."""
    env = os.environ.get(PARENT_ENV, "").strip()
    if env:
        return env
    try:
        return PARENT_FILE.read_text().strip() or None
    except FileNotFoundError:
        return None


def _live_parent(store: _Store, experiment_id: str) -> str | None:
    """The parent run id if it exists in this store and experiment and is still RUNNING, else None."""
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
    return parent


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "run"


def run_record_path(name: str) -> Path:
    return RUNS_DIR / f"{_safe_name(name)}.json"


def run_record(name: str) -> dict[str, Any] | None:
    """The record of job ``name``'s last run (``run_id``, ``experiment_id``, ...) or None when not tracked."""
    try:
        return json.loads(run_record_path(name).read_text())
    except FileNotFoundError:
        return None


def run_records() -> dict[str, dict[str, Any]]:
    """Every job's record, by job name."""
    out = {}
    for p in sorted(RUNS_DIR.glob("*.json")) if RUNS_DIR.is_dir() else []:
        rec = json.loads(p.read_text())
        out[rec["name"]] = rec
    return out


#: the run of the job this process is running (at most one), so that a stage's own job_run joins it
_ACTIVE: list[JobRun] = []
# Set by a job that starts worker processes (data-parallel pretraining under torchrun) to its run's id: the
# workers log into that run instead of opening their own; the launcher ends it.
JOB_RUN_ENV = "TMF_JOB_RUN_ID"


def worker_env() -> dict[str, str]:
    """Environment for the worker processes of the job running now: its run id, when one is open."""
    return {**os.environ, **({JOB_RUN_ENV: _ACTIVE[-1].run_id} if _ACTIVE else {})}


def run_url(run_id: str, experiment_id: str, ui: str = "http://127.0.0.1:5000") -> str:
    """Link to a run in the MLflow UI (``mlflow ui`` / ``mlflow server`` at ``ui``), for the report's tables."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


@contextlib.contextmanager
def job_run(name: str, params: Mapping[str, Any], cfg: Mapping[str, Any] | None) -> Iterator[JobRun | NoRun]:
    """One MLflow run for one job: a child of the workflow's parent run when one is running, else standalone.

    ``name`` names the run (the rule and its wildcards, e.g. ``pretrain[method=simclr,seed=0]``); ``params`` are
    logged as the run's parameters; ``cfg`` is the ``tracking`` parameter section (``enabled``, ``uri``,
    ``experiment``; None: :func:`config_from_env`). The run ends FINISHED, or FAILED (KILLED on Ctrl-C) when the
    block raises; buffered metrics are sent either way. With ``enabled: false`` it yields a :class:`NoRun`.
    Inside another ``job_run`` of the same process (``tmf`` opens one for every workflow job, see
    :func:`command_run`) it yields that run, renamed ``name``, and leaves ending it to the outer block.
    """
    if cfg is None:
        cfg = config_from_env()
    if not enabled(cfg):
        run_record_path(name).unlink(missing_ok=True)  # no stale link to an earlier run
        yield NoRun()
        return
    if _ACTIVE:  # the job's run is already open (tmf opened it for a workflow job): this is the same job
        run = _ACTIVE[-1]
        run.rename(name)
        if params:
            run.log_params(params)
        yield run
        return
    store = _Store.get(tracking_uri(cfg))
    if os.environ.get(JOB_RUN_ENV):  # a worker process of a job whose launcher holds the run: log into it
        run = JobRun(store, os.environ[JOB_RUN_ENV], name)
        if params:
            run.log_params(params)
        try:
            yield run
        finally:
            run.flush()
        return
    exp_id = store.experiment_id(experiment_name(cfg))
    parent = _live_parent(store, exp_id)
    tags = {"tmf.job": name}
    if parent:
        tags["mlflow.parentRunId"] = parent
    info = store.write(store.client.create_run, exp_id, run_name=name, tags=tags)
    run = JobRun(store, info.info.run_id, name)
    run.record = {"parent_run_id": parent, "experiment_id": exp_id}
    run.write_record("RUNNING")
    _ACTIVE.append(run)
    try:
        if params:
            run.log_params(params)
        yield run
    except BaseException as e:
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        try:
            run.end(status)
        except Exception as end_error:  # keep the job's own error, not tracking's
            log.error("could not close MLflow run %s as %s: %s", run.run_id, status, end_error)
        run.write_record(status)
        raise
    finally:
        _ACTIVE.remove(run)
    run.end("FINISHED")
    run.write_record("FINISHED")



# ----------------------------------------------------------------------------------------------------------
# The workflow's parent run


def git_commit(cwd: str | Path = ".") -> tuple[str, bool]:
    """``(HEAD commit, dirty)`` of the git repository at ``cwd``; ``("unknown", False)`` outside git."""
    import subprocess

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


def start_parent(cfg: Mapping[str, Any] | None, params: Mapping[str, Any],
                 params_file: str | Path | None = None, name: str | None = None) -> str | None:
    """Create the workflow's parent run and write its id to ``results/mlflow/parent_run_id``.

    Tags: ``mlflow.source.git.commit`` / ``tmf.git_commit`` (+ ``tmf.git_dirty``), ``tmf.params_hash``
    (:func:`params_hash` of ``params``), ``tmf.data_version`` (:func:`data_version`). ``params`` are logged as the
    run's parameters and ``params_file`` as an artifact. Returns the run id (None when tracking is off).
    """
    if not enabled(cfg):
        return None
    store = _Store.get(tracking_uri(cfg))
    exp_id = store.experiment_id(experiment_name(cfg))
    commit, dirty = git_commit()
    tags = {
        "mlflow.source.git.commit": commit,
        "tmf.git_commit": commit,
        "tmf.git_dirty": str(dirty).lower(),
        "tmf.params_hash": params_hash(params),
        "tmf.data_version": data_version(),
        "tmf.workflow": "true",
    }
    run_name = name or time.strftime("workflow-%Y%m%d-%H%M%S", time.gmtime())
    info = store.write(store.client.create_run, exp_id, run_name=run_name, tags=tags)
    run = JobRun(store, info.info.run_id)
    run.log_params(params)
    if params_file:
        run.log_artifact(params_file)
    from tmf.io import write_text

    write_text(PARENT_FILE, run.run_id + "\n")
    return run.run_id


def parent_run(cfg: Mapping[str, Any] | None) -> JobRun | None:
    """The workflow's parent run, while it is RUNNING (to log artifacts or tags to it), else None."""
    if not enabled(cfg):
        return None
    store = _Store.get(tracking_uri(cfg))
    parent = _live_parent(store, store.experiment_id(experiment_name(cfg)))
    return JobRun(store, parent) if parent else None


def end_parent(cfg: Mapping[str, Any] | None, status: str = "FINISHED") -> str | None:
    """Close the workflow's parent run as ``status`` (FINISHED, FAILED or KILLED); returns its id or None."""
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise ValueError(f"--status {status!r}: expected FINISHED, FAILED or KILLED")
    run = parent_run(cfg)
    if run is None:
        log.warning("no running parent MLflow run to close")
        return None
    run.end(status)
    return run.run_id


# ----------------------------------------------------------------------------------------------------------
# Every workflow job: the run opened around a `tmf` command


#: arguments that name a job (Snakemake wildcards); arguments like these but holding a path are left out
_NAME_ARGS = ("protocol", "method", "encoder", "fraction", "seed", "source")
#: arguments holding a job's output (file or folder), whose small results become the run's artifacts
_OUT_ARGS = ("out", "out_dir", "html")
_MAX_ARTIFACT_BYTES = 5_000_000
_ARTIFACT_SUFFIXES = (".json", ".csv", ".png", ".svg", ".html", ".txt", ".yaml")


def command_run_name(command: str, args: Any) -> str:
    """``<command>[k=v,...]`` from the job-naming arguments (``pretrain[method=simclr,seed=0]``), plus its output
    when they name no method, encoder or protocol (``report-notebook[reports/notebooks/data.html]``,
    ``appearance-embed[seed=0,results/appearance/random-resnet34/embedding_seed0.npy]``)."""
    keys = []
    for k in _NAME_ARGS:
        v = getattr(args, k, None)
        if v is not None and not (isinstance(v, str) and ("/" in v or v.endswith((".pt", ".pth")))):
            keys.append(f"{k}={v}")
    # Without a method, encoder or protocol (e.g. appearance-embed[seed=0]) the name would repeat across jobs:
    # the output path tells them apart.
    if not any(k.startswith(("method=", "encoder=", "protocol=")) for k in keys):
        out = next((getattr(args, k) for k in _OUT_ARGS if getattr(args, k, None)), None)
        keys += [str(out)] if out else []
    return f"{command}[{','.join(keys)}]" if keys else command


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


def _scalar_metrics(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, float]:
    """Numbers of a metrics JSON (nested dicts to dotted keys, three levels deep; lists left out)."""
    out: dict[str, float] = {}
    if not isinstance(obj, Mapping) or depth > 2:
        return out
    for k, v in obj.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            out[_key(f"{prefix}{k}")] = float(v)
        elif isinstance(v, Mapping):
            out.update(_scalar_metrics(v, f"{prefix}{k}.", depth + 1))
    return out


def under_workflow() -> bool:
    """True in a job of a tracked workflow run (the parent run's id is in the environment), on the main rank."""
    return bool(os.environ.get(PARENT_ENV)) and os.environ.get("RANK", "0") == "0"


def command_run(command: str, handler, args: Any) -> int:
    """Run a ``tmf`` subcommand as one MLflow child run of the workflow's parent: named after the command and its
    wildcard-like arguments, with the ``--cfg`` parameters (under ``cfg.``), the run time, and afterwards the
    small files of its output as artifacts and the numbers of its ``metrics.json`` / ``summary.json`` as metrics.
    Outside a tracked workflow (no parent run in the environment, or tracking off) the handler runs alone."""
    cfg = config_from_env() if under_workflow() else None
    if cfg is None or not enabled(cfg) or os.environ.get(JOB_RUN_ENV):  # a worker: the launcher tracks the job
        return handler(args)
    params = {}
    if getattr(args, "cfg", None):
        try:
            params = {"cfg": json.loads(args.cfg)}
        except json.JSONDecodeError:
            params = {}  # the handler reports the bad --cfg
    t0 = time.monotonic()
    with job_run(command_run_name(command, args), params, cfg) as run:
        run.set_tags({"tmf.command": command})
        rc = handler(args)
        run.log_metrics({"job.duration_s": time.monotonic() - t0})
        for path in command_outputs(args):
            if path.name in ("metrics.json", "summary.json"):
                try:
                    run.log_metrics(_scalar_metrics(json.loads(path.read_text())))
                except (ValueError, OSError) as e:
                    log.warning("metrics of %s not logged: %s", path, e)
            run.log_artifact(path)
        if rc:
            raise _CommandFailed(rc)
    return rc


class _CommandFailed(RuntimeError):
    def __init__(self, rc: int):
        super().__init__(f"exit status {rc}")
        self.rc = rc
