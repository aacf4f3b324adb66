import json
import os
import sys

from snakemake.utils import validate

from tmf.data.minifrance import CITY_NAMES


# Fills in every default of the schema, so the rest of the workflow reads config[...] without .get().
validate(config, "../schemas/params.schema.yaml")

# Telemetry off for every tool the jobs start.
for _var, _val in (("DVC_NO_ANALYTICS", "1"), ("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "1")):
    os.environ.setdefault(_var, _val)
# Jobs call the `tmf` installed beside the Python that runs Snakemake, activated virtualenv or not.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# Tracking settings travel by environment, not by params: switching MLflow on or off must not re-run jobs.
os.environ["TMF_TRACKING_CFG"] = json.dumps(config["tracking"], sort_keys=True)


SOURCE = config["data"]["source"]
RAW = f"data/raw/{SOURCE}"
TINY = "data/tinyminifrance"
MANIFEST = f"{TINY}/manifest.csv"
PACKED_IMAGES = f"{TINY}/packed/images.npy"
PACKED_LABELS = f"{TINY}/packed/labels.npy"


wildcard_constraints:
    source="synthetic|minifrance|dfc2022",
    method="[a-z0-9_]+",
    seed=r"\d+",
    encoder="[a-z0-9_-]+",
    protocol="[a-z0-9_]+",
    fraction=r"[0-9.]+",


def as_json(obj):
    """A rule's parameters as one canonical JSON string for `tmf ... --cfg` (also what Snakemake compares
    to decide whether the parameters changed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def without(section, *keys):
    """A params section minus the keys that only enumerate jobs (methods, seeds...): adding a method must
    not re-run the jobs of the others."""
    return {k: v for k, v in config[section].items() if k not in keys}


def compute_params():
    """What every compute job depends on besides its own section."""
    return {"device": config["device"], "threads": config["threads"]}
