"""Helpers the Snakefile imports (kept here so they are testable and the rules stay contracts)."""

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


def as_json(obj) -> str:
    """A rule's parameters as one canonical JSON string for `tmf ... --cfg` (also what Snakemake compares to
    decide whether the parameters changed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def resolve_methods(config: dict) -> list[str]:
    """``pretrain.methods`` with ``all`` expanded to every registered method (one per ``pretrain.method_params``
    key, so the Snakefile need not import torch); an unknown name is an error naming the parameter."""
    registry = list(config["pretrain"]["method_params"])
    methods = config["pretrain"]["methods"]
    if "all" in methods:
        return registry
    unknown = [m for m in methods if m not in registry]
    if unknown:
        raise ValueError(f"pretrain.methods: unknown method(s) {unknown}; expected some of {registry} or [all]")
    return list(methods)
