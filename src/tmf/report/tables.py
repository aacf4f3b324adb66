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


# Our evaluation methods ↔ the rows of seed 004 Table 3.1 (U-Net column; our decoder is a U-Net).
TABLE_3_1_ROWS = {"oracle": "oracle", "supervised": "supervised", "berundanet_l1": "berundanet_late_l1",
                  "berundanet_kmeans": "berundanet_late_kmeans"}


def _mean_std(row: pd.Series, key: str) -> str:
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None or pd.isna(mean):
        return "—"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None and not pd.isna(std) else "")


def segmentation_comparison(summary_agg_csv: str | Path, source: str) -> pd.DataFrame:
    """OA / mIoU on the test cities (%, mean ± std over seeds) next to seed 004 Table 3.1 (U-Net) for the
    baselines that have a published counterpart, and every other pixel-level run without one."""
    agg = pd.read_csv(summary_agg_csv)
    ref = reference()["semisupervised_tinyminifrance"]["unet"]
    rows = []
    for _, r in agg.iterrows():
        if r.get("n_train", 1) == 0:
            continue
        pub = ref.get(TABLE_3_1_ROWS.get(r["method"], ""), [None, None])
        if r["protocol"] not in ("finetune", "linear"):
            continue
        rows.append({
            "protocol": r["protocol"], "method": r["method"], "label fraction": r["fraction"],
            "seeds": int(r["n_seeds"]),
            "OA ours": _mean_std(r, "oa"), "OA T3.1": pub[0],
            "mIoU ours": _mean_std(r, "miou"), "mIoU T3.1": pub[1],
            "κ ours": _mean_std(r, "kappa"),
        })
    df = pd.DataFrame(rows)
    if len(df):
        df["data"] = source_label(source)
    return df


def modality_grids(summary_agg_csv: str | Path, source: str) -> list[tuple[str, pd.DataFrame]]:
    """The multi-modal runs in the shape of seed 000 Table 4.3 (rows: pretraining modalities, ``None`` = random
    initialisation; columns: downstream modalities; "—" where a cell is not run, as the source's "-"), one grid
    per protocol × label fraction × metric (mIoU and OA, %, mean ± std over seeds): ``[(title, frame), ...]``,
    empty without multi-modal runs. Table 4.3 reports scene accuracy on Meter-ML, ours is segmentation of the
    test cities: compare the pattern (which cells beat the None row), not the values."""
    from tmf.evaluate.summary import modality_grid
    from tmf.modalities import SUBSETS, subset_label

    grid = modality_grid(pd.read_csv(summary_agg_csv))
    out = []
    for (protocol, fraction), g in grid.groupby(["protocol", "fraction"], sort=False):
        rows = list(dict.fromkeys(g["pretraining"]))
        cols = [subset_label(s) for s in SUBSETS if s in set(g["subset"])]
        for metric, name in (("miou", "mIoU"), ("oa", "OA")):
            frame = pd.DataFrame("—", index=pd.Index(rows, name="pretraining"), columns=cols)
            for _, r in g.iterrows():
                frame.loc[r["pretraining"], r["downstream"]] = _mean_std(r, metric)
            frame["seeds"] = [int(g.loc[g["pretraining"] == p, "n_seeds"].min()) for p in rows]
            title = (f"{protocol}, {100 * float(fraction):g} % of the labels: {name} (%, mean ± std over seeds) — "
                     f"{source_label(source)}")
            out.append((title, frame.reset_index()))
    return out


def mlflow_links(command: str, frame: pd.DataFrame) -> list[str]:
    """An HTML link to the MLflow run of each row's job, or "—" for a job that was not tracked. ``frame`` has
    the job's naming columns (``method``, ``seed``; an evaluation's ``protocol``, ``fraction``): the name is
    rebuilt by :func:`tmf.tracking.job_name`, as the job named its run. A run on a tracking server links there;
    one in a SQLite store links to ``tracking.ui``, where ``mlflow ui`` serves it (docs/tracking.md)."""
    from tmf import tracking
    from tmf.tracking.command import NAME_FIELDS

    ui = _tracking_section()["ui"]
    records = tracking.run_records()
    columns = [c for c in NAME_FIELDS if c in frame.columns]
    out = []
    for row in frame[columns].itertuples(index=False):
        name = tracking.job_name(command, dict(zip(columns, row, strict=True)))
        rec = records.get(name)
        if rec and rec.get("run_id"):
            url = tracking.run_url(rec, ui)
            out.append(f'<a href="{url}" title="{name}">{rec["run_id"][:8]}</a>')
        else:
            out.append("—")
    return out


def _tracking_section() -> dict:
    """The ``tracking`` section of the job (``$TMF_TRACKING_CFG``), else the schema's defaults."""
    from tmf.config import validate
    from tmf.tracking import config_from_env

    cfg = config_from_env()
    return cfg if cfg is not None else validate({})["tracking"]
