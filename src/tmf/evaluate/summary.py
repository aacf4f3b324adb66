"""The tables of every evaluation job: ``summary.csv`` (one row per run) and ``summary_agg.csv`` (mean ± std over
seeds); columns in docs/file-formats.md."""

from __future__ import annotations

import logging
from pathlib import Path

from tmf.io import read_json, write_csv
from tmf.plan import ENCODER_BASELINES, TRAINED_BASELINES, split_modal

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("protocol", "method", "test_set", "fraction", "seed", "n_train", "oa", "miou", "kappa",
                "hierarchical_cost")
GROUP_KEYS = ["protocol", "method", "test_set", "fraction"]  # one row of summary_agg.csv


def summary_table(paths: list[str | Path]):
    """One tidy row per run: identity (with the ``test_set`` that produced its scores), ``status`` (ok | skipped)
    and ``reason``, n_train, oa, miou, kappa, hierarchical_cost, level, architecture (``unet`` / ``segnet`` for the
    fine-tuning protocols, empty for the probes), ``iou_<id>`` per class, ``oa_<city>`` / ``miou_<city>`` per
    scored city (MiniFrance's in Table 2.4 order, then any other city), seconds, path."""
    import pandas as pd

    from tmf.data.minifrance import SCORED_IDS, city_rank

    if not paths:
        raise ValueError("collect: no metrics.json given")
    rows, cities = [], set()
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"metrics file not found: {p}")
        m = read_json(p)
        missing = [k for k in SUMMARY_KEYS if k not in m]
        if missing:
            raise ValueError(f"{p}: not an evaluation metrics.json of this version (missing {missing}; re-run "
                             "its job)")
        row = {k: m[k] for k in SUMMARY_KEYS}
        row["status"] = m.get("status", "ok")
        row["reason"] = m.get("reason", "")
        row["level"] = m.get("level", "")
        row["architecture"] = m.get("architecture") or ""  # unet | segnet for the fine-tuning protocols
        for cid in SCORED_IDS:
            row[f"iou_{cid}"] = m.get("per_class_iou", {}).get(str(cid))
        for city, s in m.get("per_city", {}).items():
            row[f"oa_{city}"], row[f"miou_{city}"] = s["oa"], s["miou"]
            cities.add(city)
        row["seconds"] = m.get("seconds")
        row["path"] = str(p)
        rows.append(row)
    frame = pd.DataFrame(rows)
    fixed = [c for c in frame.columns if not c.startswith(("oa_", "miou_"))]
    per_city = [f"{k}_{c}" for c in sorted(cities, key=city_rank) for k in ("oa", "miou")]
    frame = frame[fixed[:fixed.index("seconds")] + per_city + fixed[fixed.index("seconds"):]]
    order = {m: i for i, m in enumerate(ENCODER_BASELINES + TRAINED_BASELINES)}
    frame["_m"] = frame["method"].map(lambda m: order.get(m, -1))
    frame = frame.sort_values(["protocol", "_m", "method", "test_set", "fraction", "seed"],
                              kind="stable").drop(columns="_m")
    return frame.reset_index(drop=True)


def aggregate_table(summary):
    """Mean and sample standard deviation (ddof = 1; empty for a single seed) over the seeds that ran of every
    score, per protocol × method × test set × fraction, with the number of seeds; ``status`` is ``skipped`` (with
    the ``reason``) when no seed ran."""
    import pandas as pd

    cols = ["oa", "miou", "kappa", "hierarchical_cost"] + [c for c in summary.columns
                                                          if c.startswith(("iou_", "oa_", "miou_"))]
    ran = summary["status"] == "ok"
    g = summary[ran].groupby(GROUP_KEYS, sort=False)
    agg = g[cols].agg(["mean", "std"])
    agg.columns = [f"{c}_{s}" for c, s in agg.columns]
    agg.insert(0, "n_seeds", g.size())
    agg.insert(1, "n_train", g["n_train"].first())
    agg.insert(2, "architecture", g["architecture"].first())
    agg = agg.reset_index()
    agg.insert(len(GROUP_KEYS), "status", "ok")
    agg.insert(len(GROUP_KEYS) + 1, "reason", "")
    skipped = summary[~ran].groupby(GROUP_KEYS, sort=False)["reason"].first().reset_index()
    skipped = skipped.merge(agg[GROUP_KEYS], how="left", on=GROUP_KEYS, indicator=True)
    skipped = skipped[skipped["_merge"] == "left_only"].drop(columns="_merge")
    if len(skipped):
        skipped = skipped.assign(status="skipped", n_seeds=0, n_train=0)
        agg = pd.concat([agg, skipped], ignore_index=True)[agg.columns]
    return agg


GRID_COLUMNS = ("protocol", "test_set", "fraction", "pretraining", "method", "downstream", "subset", "n_seeds",
                "n_train", "miou_mean", "miou_std", "oa_mean", "oa_std", "kappa_mean", "kappa_std")
_GRID_SCORES = GRID_COLUMNS[GRID_COLUMNS.index("n_seeds"):]


def modality_grid(agg):
    """The multi-modal protocols' runs in the shape of seed 000 Table 4.3: one row per (protocol, test set, label
    fraction, pretraining, downstream modalities), mean and std over seeds (columns :data:`GRID_COLUMNS`). ``pretraining``:
    ``random init`` (Table 4.3's "None"), ``RGB``, ``DEM``, ``RGB + DEM``, ``RGB + DEM ⋆`` (no in-modality views) or
    ``RGB (<method>)``; ``downstream``: the subset's modalities."""
    import pandas as pd

    from tmf.modalities import SUBSETS, pretraining_label, subset_label

    rows = []
    for _, r in agg.iterrows():
        base, subset = split_modal(r["protocol"])
        if subset is None or r["status"] != "ok":
            continue
        rows.append({"protocol": base, "test_set": r["test_set"], "fraction": r["fraction"],
                     "pretraining": pretraining_label(r["method"]), "method": r["method"],
                     "downstream": subset_label(subset), "subset": subset, **{k: r[k] for k in _GRID_SCORES}})
    frame = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    order = {s: i for i, s in enumerate(SUBSETS)}
    frame = frame.assign(_r=frame["method"].map(_row_rank), _s=frame["subset"].map(order))
    return frame.sort_values(["protocol", "test_set", "fraction", "_r", "method", "_s"], kind="stable").drop(
        columns=["_r", "_s"]).reset_index(drop=True)


def _row_rank(method: str) -> int:
    """Table 4.3's row order: None, single modalities, both, both ⋆; other methods last."""
    from tmf.modalities import METHOD_MODALITIES

    order = ["random", "mm_ssl_rgb", "mm_ssl_dem", "mm_ssl", "mm_ssl_star"]
    return order.index(method) if method in order else len(order) + (method in METHOD_MODALITIES)


def collect(paths: list[str | Path], out: str | Path, grid: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``out`` (summary.csv: one row per run) and ``summary_agg.csv`` beside it (mean ± std over seeds), and
    with ``grid`` the multi-modal runs in Table 4.3's shape (:func:`modality_grid`)."""
    out = Path(out)
    summary = summary_table(paths)
    agg_path = out.with_name(out.stem + "_agg.csv")
    write_csv(out, summary)
    agg = aggregate_table(summary)
    write_csv(agg_path, agg)
    if grid:
        write_csv(Path(grid), modality_grid(agg))
    sets = summary.groupby("test_set").size().to_dict()
    skipped = int((summary["status"] == "skipped").sum())
    log.info("%d runs, by test set %s%s", len(summary), sets, f"; {skipped} skipped" if skipped else "")
    return out, agg_path
