"""MLflow tracking: one parent run per workflow invocation, one child run per job.

The workflow's ``onstart`` hook runs ``tmf track-start``, which creates the parent run
(:mod:`~tmf.tracking.provenance`: git commit, parameter hash, data version) and writes its id to
``results/mlflow/parent_run_id``; ``tmf.cli.main`` opens each job's run around its subcommand
(:mod:`~tmf.tracking.command`), nested under that parent, and hands it to the handler as ``args.run``, a
:class:`~tmf.tracking.runs.JobRun` (or a no-op :class:`~tmf.tracking.runs.NoRun`). ``onsuccess`` / ``onerror``
close the parent (``tmf track-end``). :mod:`~tmf.tracking.store` chooses where runs go and serialises writes to a
SQLite store. ``docs/tracking.md`` describes the runs, their params, tags and metrics.
"""

from tmf.tracking.command import JOB_RUN_ENV, job_run, worker_env
from tmf.tracking.provenance import PARENT_ENV, PARENT_FILE, end_parent, parent_run, start_parent
from tmf.tracking.runs import NoRun, flatten_numbers, job_name, run_record, run_records, run_url
from tmf.tracking.store import CFG_ENV, DEFAULT_DB, config_from_env, tracking_uri

__all__ = [
    "CFG_ENV", "DEFAULT_DB", "JOB_RUN_ENV", "PARENT_ENV", "PARENT_FILE", "NoRun", "config_from_env", "end_parent",
    "flatten_numbers", "job_name", "job_run", "parent_run", "run_record", "run_records", "run_url", "start_parent",
    "tracking_uri", "worker_env",
]
