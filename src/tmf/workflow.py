"""The workflow's process environment (the Snakefile calls it; kept here so it is testable)."""

from __future__ import annotations

import json
import os
import sys


def setup_environment(config: dict) -> None:
    """Environment of every job: telemetry off; `tmf` found beside the Python running Snakemake; tracking
    settings passed by environment, not by params, so switching MLflow on or off re-runs nothing."""
    for var, val in (("DVC_NO_ANALYTICS", "1"), ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "1")):
        os.environ.setdefault(var, val)
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path
    os.environ["TMF_TRACKING_CFG"] = json.dumps(config["tracking"], sort_keys=True)
