# MLflow: one parent run per workflow invocation; every job's run (opened by tmf, tmf.tracking.command) nests under it.
#
# onstart (not called on a dry run, nor when there is nothing to do, nor in the jobs Snakemake spawns, which get
# --no-hooks) creates the parent run with `tmf track-start`: tags git commit, parameter hash and data version,
# logs the validated configuration (results/mlflow/config.yaml). Its id goes to results/mlflow/parent_run_id and
# to $TMF_MLFLOW_PARENT_RUN_ID for the jobs; runs that a killed invocation left RUNNING are marked FAILED first.
# onsuccess / onerror close it FINISHED / FAILED (and the runs of its jobs still RUNNING, FAILED). Switched off by
# tracking.enabled: false, and in --touch mode. These three hooks are the workflow's only ones (Snakemake keeps
# one handler of each kind): add other work to the functions below rather than a second onstart.
import json as _json
import os
import subprocess as _subprocess
import sys as _sys


TRACKING_CONFIG = "results/mlflow/config.yaml"


def _tracking_active():
    return bool(config["tracking"]["enabled"]) and not workflow.touch


def _tmf(*args, check=True):
    """Run a tmf subcommand with the Python that runs Snakemake (no dependence on PATH)."""
    cmd = [_sys.executable, "-m", "tmf.cli", *args, "--cfg", _json.dumps(config["tracking"], sort_keys=True)]
    return _subprocess.run(cmd, check=check)


def tracking_onstart(log):
    if not _tracking_active():
        return
    import yaml

    from tmf.io import write_text
    from tmf.tracking import PARENT_ENV, PARENT_FILE

    plain = _json.loads(_json.dumps(dict(config), default=str))
    write_text(TRACKING_CONFIG, yaml.safe_dump(plain, sort_keys=True))
    _tmf("track-start", "--params-file", TRACKING_CONFIG)
    os.environ[PARENT_ENV] = PARENT_FILE.read_text().strip()


def tracking_onend(status):
    if not _tracking_active():
        return
    done = _tmf("track-end", "--status", status, check=False)
    if done.returncode != 0:
        print(f"tmf track-end --status {status} failed (exit {done.returncode}): the MLflow parent run stays open",
              file=_sys.stderr)


onstart:
    tracking_onstart(log)


onsuccess:
    tracking_onend("FINISHED")


onerror:
    tracking_onend("FAILED")
