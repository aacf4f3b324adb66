"""The tables of every evaluation job: ``summary.csv`` (one row per run) and ``summary_agg.csv`` (mean ± std over
seeds); columns in docs/file-formats.md."""

from __future__ import annotations

from pathlib import Path

from tmf.io import read_json, write_csv
from tmf.plan import ENCODER_BASELINES, TRAINED_BASELINES

SUMMARY_KEYS = ("protocol", "method", "fraction", "seed", "n_train", "oa", "miou", "kappa", "hierarchical_cost")


def summary_table(paths: list[str | Path]):
    """One tidy row per run: identity, n_train, oa, miou, kappa, hierarchical_cost, level, architecture (``unet`` /
    ``segnet`` for the fine-tuning protocols, empty for the probes), ``iou_<id>`` per class,
    ``oa_<city>`` / ``miou_<city>`` per test city, seconds, path."""
    import pandas as pd

    from tmf.data.minifrance import CITY_NAMES, SCORED_IDS

    if not paths:
        raise ValueError("collect: no metrics.json given")
    rows = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"metrics file not found: {p}")
        m = read_json(p)
        missing = [k for k in SUMMARY_KEYS if k not in m]
        if missing:
            raise ValueError(f"{p}: not an evaluation metrics.json (missing {missing})")
        row = {k: m[k] for k in SUMMARY_KEYS}
        row["level"] = m.get("level", "")
        row["architecture"] = m.get("architecture") or ""  # unet | segnet for the fine-tuning protocols
        for cid in SCORED_IDS:
            row[f"iou_{cid}"] = m.get("per_class_iou", {}).get(str(cid))
        for city in CITY_NAMES:
            if city in m.get("per_city", {}):
                row[f"oa_{city}"] = m["per_city"][city]["oa"]
                row[f"miou_{city}"] = m["per_city"][city]["miou"]
        row["seconds"] = m.get("seconds")
        row["path"] = str(p)
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(ENCODER_BASELINES + TRAINED_BASELINES)}
    frame["_m"] = frame["method"].map(lambda m: order.get(m, -1))
    frame = frame.sort_values(["protocol", "_m", "method", "fraction", "seed"], kind="stable").drop(columns="_m")
    return frame.reset_index(drop=True)


def aggregate_table(summary):
    """Mean and sample standard deviation (ddof = 1; empty for a single seed) over seeds of every score, per
    protocol × method × fraction, with the number of seeds."""
    cols = ["oa", "miou", "kappa", "hierarchical_cost"] + [c for c in summary.columns
                                                          if c.startswith(("iou_", "oa_", "miou_"))]
    g = summary.groupby(["protocol", "method", "fraction"], sort=False)
    agg = g[cols].agg(["mean", "std"])
    agg.columns = [f"{c}_{s}" for c, s in agg.columns]
    agg.insert(0, "n_seeds", g.size())
    agg.insert(1, "n_train", g["n_train"].first())
    agg.insert(2, "architecture", g["architecture"].first())
    return agg.reset_index()


def collect(paths: list[str | Path], out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (summary.csv: one row per run) and ``summary_agg.csv`` beside it (mean ± std over seeds)."""
    out = Path(out)
    summary = summary_table(paths)
    agg_path = out.with_name(out.stem + "_agg.csv")
    write_csv(out, summary)
    write_csv(agg_path, aggregate_table(summary))
    return out, agg_path
