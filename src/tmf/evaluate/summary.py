"""The tables of every evaluation job: ``summary.csv`` (one row per run) and ``summary_agg.csv`` (mean ± std over
seeds); columns in docs/file-formats.md."""

from __future__ import annotations

from pathlib import Path

from tmf.io import read_json, write_csv
from tmf.plan import ENCODER_BASELINES, TRAINED_BASELINES, split_modal

SUMMARY_KEYS = ("protocol", "method", "fraction", "seed", "n_train", "oa", "miou", "kappa", "hierarchical_cost")


def summary_table(paths: list[str | Path]):
    """One tidy row per run: identity, n_train, oa, miou, kappa, hierarchical_cost, level, ``iou_<id>`` per class,
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
    return agg.reset_index()


GRID_COLUMNS = ("protocol", "fraction", "pretraining", "method", "downstream", "subset", "n_seeds", "n_train",
                "miou_mean", "miou_std", "oa_mean", "oa_std", "kappa_mean", "kappa_std")


def modality_grid(agg):
    """The multi-modal protocols' runs in the shape of seed 000 Table 4.3: one row per (protocol, label fraction,
    pretraining, downstream modalities), mean and std over seeds (columns :data:`GRID_COLUMNS`). ``pretraining``:
    ``None`` (random initialisation), ``RGB``, ``DEM``, ``RGB + DEM``, ``RGB + DEM ⋆`` (no in-modality views) or
    ``RGB (<method>)``; ``downstream``: the subset's modalities."""
    import pandas as pd

    from tmf.modalities import SUBSETS, pretraining_label, subset_label

    rows = []
    for _, r in agg.iterrows():
        base, subset = split_modal(r["protocol"])
        if subset is None:
            continue
        rows.append({"protocol": base, "fraction": r["fraction"], "pretraining": pretraining_label(r["method"]),
                     "method": r["method"], "downstream": subset_label(subset), "subset": subset,
                     **{k: r[k] for k in GRID_COLUMNS[6:]}})
    frame = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    order = {s: i for i, s in enumerate(SUBSETS)}
    frame = frame.assign(_r=frame["method"].map(_row_rank), _s=frame["subset"].map(order))
    return frame.sort_values(["protocol", "fraction", "_r", "method", "_s"], kind="stable").drop(
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
    return out, agg_path
