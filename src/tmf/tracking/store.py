"""Where runs go: the tracking URI, the ``tracking`` parameter section, and an MLflow client that many processes can
share safely (a SQLite lock-and-retry store whose artifact locations follow the store when it moves).

Many jobs may write to one SQLite file at once. SQLite allows a single writer, and a deferred transaction that
must upgrade to a write lock can fail at once with "database is locked" whatever the busy timeout. So, for a
SQLite store, every write is serialised across processes by an advisory lock on ``<db>.lock`` (``fcntl.flock``;
SQLite itself requires a local file system, where flock works), the database is switched to WAL journaling once
(readers such as ``mlflow ui`` then never block writers), and a call that still fails with a transient error is
retried with exponential backoff. The first creation of the database (MLflow's alembic migrations) happens under
the same lock, so concurrent first jobs cannot race on the schema.

MLflow keeps artifact locations as absolute URIs (the experiment's, and each run's, fixed when the run is created).
A project copied (``cp -a``) or moved elsewhere would go on writing artifacts into the old place. So experiments
created here carry the tag ``tmf.artifacts = beside-store``, and whenever the store is opened from a place where
``artifacts/`` beside the database is not where those URIs point, they are rewritten (experiments and runs) to
point there: a copy is self-contained and leaves the original untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

log = logging.getLogger(__name__)

# Telemetry of MLflow (and of DVC, for the commands this process starts) stays off unless the user asks.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

MLFLOW_DIR = Path("results/mlflow")
DEFAULT_DB = MLFLOW_DIR / "mlflow.db"
#: the ``tracking`` section (JSON) that the workflow passes to every job (tmf.workflow.setup_environment)
CFG_ENV = "TMF_TRACKING_CFG"
#: experiment tag: the artifacts live in ``artifacts/`` beside the SQLite database, wherever it is now
ARTIFACTS_TAG = "tmf.artifacts"
BESIDE_STORE = "beside-store"

_TRANSIENT = ("database is locked", "database table is locked", "busy", "disk i/o error",
              "unable to open database", "timed out", "timeout", "connection")


# ----------------------------------------------------------------------------------------------------------
# The URI and the parameter section


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


def config_from_env() -> dict[str, Any] | None:
    """The ``tracking`` section in ``$TMF_TRACKING_CFG`` (JSON; the workflow sets it for every job), validated
    (defaults filled in); None when the variable is unset. (By environment, not by rule params: switching
    tracking on or off must not make Snakemake re-run anything.)"""
    from tmf.config import ParamsError, validate

    text = os.environ.get(CFG_ENV, "").strip()
    if not text:
        return None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParamsError(f"${CFG_ENV}: not valid JSON: {e}") from None
    return validate({"tracking": cfg}, source=f"${CFG_ENV}")["tracking"]


def enabled(cfg: Mapping[str, Any] | None) -> bool:
    """Tracking is on: a (validated) ``tracking`` section is given and says ``enabled``."""
    return cfg is not None and bool(cfg["enabled"])


# ----------------------------------------------------------------------------------------------------------
# The store


def _is_transient(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}".lower()
    return "operationalerror" in text or any(t in text for t in _TRANSIENT)


class Store:
    """An MLflow client on one tracking URI, with cross-process write serialisation for SQLite."""

    _cache: dict[str, Store] = {}

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
                self.retry(self._enable_wal)
                self.retry(self._follow_artifacts)

    @classmethod
    def get(cls, uri: str) -> Store:
        if uri not in cls._cache:
            cls._cache[uri] = cls(uri)
        return cls._cache[uri]

    @classmethod
    def of(cls, cfg: Mapping[str, Any]) -> Store:
        """The store that the ``tracking`` section ``cfg`` sends runs to."""
        return cls.get(tracking_uri(cfg))

    @property
    def server(self) -> str | None:
        """The URI of a tracking server; None for a SQLite file (whose path changes when the project moves)."""
        return None if self.db is not None else self.uri

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

    def _connect(self):
        import sqlite3

        return contextlib.closing(sqlite3.connect(str(self.db), timeout=60))

    def _enable_wal(self) -> None:
        with self._connect() as con:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")

    def _follow_artifacts(self) -> None:
        """Point the artifact URIs of the experiments created beside this database (and of their runs) at
        ``artifacts/`` beside it now, if the store was copied or moved since (called under the lock)."""
        root = artifact_location(self.uri)
        with self._connect() as con:
            moved = con.execute(
                "SELECT e.experiment_id, e.artifact_location FROM experiments e JOIN experiment_tags t "
                "ON t.experiment_id = e.experiment_id WHERE t.key = ? AND t.value = ? AND e.artifact_location != ?",
                (ARTIFACTS_TAG, BESIDE_STORE, root)).fetchall()
            for exp_id, old in moved:
                runs = con.execute("SELECT run_uuid, artifact_uri FROM runs WHERE experiment_id = ?",
                                   (exp_id,)).fetchall()
                updates = [(root + uri[len(old):], run) for run, uri in runs if uri and uri.startswith(old + "/")]
                con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (root, exp_id))
                con.executemany("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", updates)
                log.info("MLflow store %s was moved: artifacts of experiment %s now under %s (were %s)",
                         self.db, exp_id, root, old)
            con.commit()

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
        location = artifact_location(self.uri)
        tags = {ARTIFACTS_TAG: BESIDE_STORE} if location else None

        def create():
            with self.locked():
                again = self.client.get_experiment_by_name(name)
                if again is not None:
                    return again.experiment_id
                try:
                    return self.client.create_experiment(name, artifact_location=location, tags=tags)
                except MlflowException as e:  # created meanwhile by another client (a tracking server)
                    if "already exists" not in str(e).lower():
                        raise
                    return self.client.get_experiment_by_name(name).experiment_id

        return self.retry(create)
