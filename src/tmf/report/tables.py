""""Ours vs published" tables for the report.

The published numbers are the package's copy of the source documents' tables
(``tmf/reference/seed_tables.yaml``). Every table carries a ``data`` column naming the data source of this run
(embedded synthetic or real MiniFrance), so that nobody mistakes a synthetic number for a reproduction.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from tmf.data.minifrance import CLASSES

SOURCE_LABELS = {
    "synthetic": "embedded synthetic data (not MiniFrance: compare trends, not values)",
    "minifrance": "real MiniFrance",
    "dfc2022": "real MiniFrance (DFC2022 release)",
}


@cache
def reference() -> dict:
    """The published numbers (seed 004 Tables 2.2–2.7, 3.1, 3.3, 3.4; seed 000, 002, 003 tables)."""
    return yaml.safe_load(resources.files("tmf").joinpath("reference/seed_tables.yaml").read_text())


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def class_share_comparison(class_shares_csv: str | Path, source: str) -> pd.DataFrame:
    """Class shares of our tinyMiniFrance next to Tables 2.5 (MiniFrance) and 2.6 (tinyMiniFrance), in %."""
    ours = pd.read_csv(class_shares_csv).set_index("id")["share_ours"]
    ref5, ref6 = reference()["class_share_minifrance"], reference()["class_share_tinyminifrance"]
    rows = []
    for c in CLASSES:
        if c.id == 0:
            continue
        o = float(ours.get(c.id, 0.0))
        rows.append({"id": c.id, "class": c.name, "ours %": round(o, 2),
                     "Table 2.6 %": ref6.get(c.id), "Table 2.5 %": ref5.get(c.id),
                     "ours − T2.6": round(o - ref6.get(c.id, 0.0), 2)})
    df = pd.DataFrame(rows)
    df["data"] = source_label(source)
    return df


def coverage_comparison(summary_json: str | Path, source: str) -> pd.DataFrame:
    """Our per-split appearance coverage (mean ± std over t-SNE seeds) next to Table 2.7."""
    summary = json.loads(Path(summary_json).read_text())
    ref = reference()["appearance_coverage"]
    rows = []
    for key, label in (("labeled_vs_test", "Labeled–Test"), ("unlabeled_vs_test", "Unlabeled–Test")):
        ours = summary.get("split_coverage", {}).get(key)
        for metric in ("iou", "iot"):
            mean = ours[metric]["mean"] if ours else float("nan")
            std = ours[metric]["std"] if ours else float("nan")
            rows.append({"pair": label, "score": metric.upper(), "ours mean": round(mean, 3),
                         "ours std": round(std, 3), "Table 2.7": ref[key][metric],
                         "ours − published": round(mean - ref[key][metric], 3)})
    df = pd.DataFrame(rows)
    df["encoder"] = summary.get("encoder", "")
    df["data"] = source_label(source)
    return df
