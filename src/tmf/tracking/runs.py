"""Run objects (a live MLflow run, or a no-op one when tracking is off), job names, and the per-job records the
report reads to link a table row to its run (``results/mlflow/runs/<job>.json``, docs/file-formats.md)."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tmf.io import write_json
from tmf.tracking.store import MLFLOW_DIR, Store

RUNS_DIR = MLFLOW_DIR / "runs"

# MLflow limits (mlflow.utils.validation): 1000 metrics / 100 params per log_batch, 6000 characters per value.
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_LEN = 6000
_FLUSH_EVERY_S = 15.0


# ----------------------------------------------------------------------------------------------------------
# Keys and values


def key(name: str) -> str:
    """MLflow keys allow alphanumerics, ``_ - . / : `` and spaces; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./: ]", "_", str(name))


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts to dotted keys, values as strings (lists as JSON), cut to MLflow's 6000 characters."""
    out: dict[str, str] = {}
    for k, v in params.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_params(v, name + "."))
            continue
        if isinstance(v, str):
            text = v
        elif isinstance(v, list | tuple | Mapping):
            text = json.dumps(v, sort_keys=True, default=str)
        else:
            text = str(v)
        if len(text) > _MAX_PARAM_LEN:
            text = text[: _MAX_PARAM_LEN - 3] + "..."
        out[key(name)] = text
    return out


def flatten_numbers(obj: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested dict as dotted keys (``per_city.Nice.miou``); lists, strings, booleans and None
    (an undefined score) are left out. For a stage's measured numbers, not for its settings."""
    out: dict[str, float] = {}
    for k, v in obj.items():
        if isinstance(v, Mapping):
            out.update(flatten_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key(f"{prefix}{k}")] = float(v)
    return out


def _check_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            out[key(k)] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"metric {k!r}: not a number: {v!r}") from None
    return out


# ----------------------------------------------------------------------------------------------------------
# Job names


def field_value(v: Any) -> str:
    """Name values as the command line gives them: ``1.0`` for a fraction, ``0`` for a seed (numpy or not)."""
    if isinstance(v, bool):
        return str(v).lower()
    if hasattr(v, "item") and not isinstance(v, str):  # numpy scalars (a pandas row)
        v = v.item()
    return repr(float(v)) if isinstance(v, float) else str(v)


def job_name(command: str, fields: Mapping[str, Any], output: str | None = None) -> str:
    """The name of a job's run and record: ``<command>[k=v,...]`` from its naming fields, in the order given
    (``evaluate[protocol=linear,method=random,fraction=1.0,seed=0]``), then ``output`` when given
    (``report-notebook[reports/notebooks/data.html]``). The writer (:mod:`tmf.tracking.command`) and the
    report (``tmf.report.tables``) both build names here."""
    parts = [f"{k}={field_value(v)}" for k, v in fields.items() if v is not None]
    parts += [str(output)] if output else []
    return f"{command}[{','.join(parts)}]" if parts else command


# ----------------------------------------------------------------------------------------------------------
# Runs


class NoRun:
    """The run of a job that is not tracked: every call does nothing; ``run_id`` is None."""

    run_id: str | None = None
    name: str | None = None
    status = "FINISHED"

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        _check_metrics(metrics)

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"artifact not found: {path}")

    def flush(self) -> None:
        pass


class JobRun:
    """A live MLflow run: metrics are buffered and sent with ``log_batch``. ``status`` is how it ends when its
    job returns (set it to ``FAILED`` for a job that exits with an error)."""

    def __init__(self, store: Store, run_id: str, name: str | None = None):
        self.store = store
        self.run_id = run_id
        self.name = name
        self.status = "FINISHED"
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
            self.store.write(self.store.client.log_batch, self.run_id, metrics=batch)
            del self._buffer[: len(batch)]
        self._last_flush = time.monotonic()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) parameters; a key logged again with the same value is skipped (MLflow forbids changes)."""
        from mlflow.entities import Param

        flat = {k: v for k, v in flatten_params(params).items() if self._logged_params.get(k) != v}
        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self.store.write(self.store.client.log_batch, self.run_id, params=items[i: i + _MAX_PARAMS_PER_BATCH])
        self._logged_params.update(flat)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(key(k), str(v)) for k, v in tags.items()]
        if items:
            self.store.write(self.store.client.log_batch, self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file (or a folder's content, under its name) to the run's artifacts, under the folder
        ``artifact_path`` (None: the top)."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"artifact not found: {p}")
        if p.is_dir():
            self.store.retry(self.store.client.log_artifacts, self.run_id, str(p),
                             artifact_path="/".join(filter(None, (artifact_path, p.name))))
        else:
            self.store.retry(self.store.client.log_artifact, self.run_id, str(p), artifact_path=artifact_path)

    def end(self, status: str) -> None:
        self.flush()
        self.store.write(self.store.client.set_terminated, self.run_id, status)


# ----------------------------------------------------------------------------------------------------------
# Records: where the report finds a job's run


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "run"


def run_record_path(name: str) -> Path:
    return RUNS_DIR / f"{_safe_name(name)}.json"


def write_record(run: JobRun, status: str) -> None:
    """``results/mlflow/runs/<name>.json``: ``run.record`` (experiment, parent, store...) with the run's id and
    status and the process that runs it (host, pid: how a later invocation tells a killed job's run from a live
    one)."""
    run.record.update(name=run.name, run_id=run.run_id, status=status, host=socket.gethostname(), pid=os.getpid())
    write_json(run_record_path(run.name), run.record)


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def run_record(name: str) -> dict[str, Any] | None:
    """The record of job ``name``'s last run (``run_id``, ``experiment_id``, ...) or None when not tracked."""
    return read_record(run_record_path(name))


def run_records() -> dict[str, dict[str, Any]]:
    """Every job's record, by job name."""
    out = {}
    for p in sorted(RUNS_DIR.glob("*.json")) if RUNS_DIR.is_dir() else []:
        rec = json.loads(p.read_text())
        out[rec["name"]] = rec
    return out


def run_url(record: Mapping[str, Any], ui: str) -> str:
    """Link to a recorded run in the MLflow UI: on the tracking server that holds it (``record["server"]``),
    else at ``ui`` (where ``mlflow ui`` serves a SQLite store, parameter ``tracking.ui``)."""
    base = record.get("server") or ui
    return f"{base.rstrip('/')}/#/experiments/{record['experiment_id']}/runs/{record['run_id']}"
