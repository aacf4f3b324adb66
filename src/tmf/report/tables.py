"""The report's tables, one function each (named as its item in :mod:`tmf.report.items`): ``(ctx, **keys)`` →
a DataFrame of display cells (text, or markup for class colours and links; missing values stay missing and show
as "—"). ``tmf report-items`` writes each as an HTML table captioned with the run's data source.

The published numbers are the package's copy of the source documents' tables
(``tmf/reference/seed_tables.yaml``); a published column appears only where a row of this run is comparable.
The data, appearance and pretraining tables are here, the evaluation notebook's in :mod:`tmf.report.scores`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml
from markupsafe import escape

from tmf.data.minifrance import CITIES, CLASSES
from tmf.report.html import Html, class_name, number
from tmf.report.items import Context

SOURCE_LABELS = {
    "synthetic": "embedded synthetic data (not MiniFrance: compare trends, not values)",
    "minifrance": "real MiniFrance",
    "dfc2022": "real MiniFrance (DFC2022 release)",
}
PAIRS = {"labeled_vs_test": "Labeled → Test", "unlabeled_vs_test": "Unlabeled → Test"}
SCORES = {"iou": "IoU", "iot": "IoT"}



@cache
def reference() -> dict:
    """The published numbers (Castillo-Navarro 2022 Tables 2.2–2.7, 3.1, 3.3, 3.4; Berg 2024, HyDeS 2025 and
    Shi et al. 2023 tables; docs/sources.md)."""
    return yaml.safe_load(resources.files("tmf").joinpath("reference/seed_tables.yaml").read_text())


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def short_city(name: str) -> str:
    return name.split("_")[0] if name.startswith("Lille") else name.replace("_", " ")


# ---- data
def tiles_per_city(ctx: Context) -> pd.DataFrame:
    """Tiles and sub-tiles of every city, next to MiniFrance's tile counts (Table 2.4 layout)."""
    from tmf.data.packed import read_manifest

    tiles = pd.read_csv(ctx.inputs["tiles"])
    m = read_manifest(ctx.inputs["manifest"])
    return pd.DataFrame([{
        "split": c.split, "city": short_city(c.name), "MiniFrance tiles (Table 2.4)": c.tiles,
        "tiles here": int((tiles["city"] == c.name).sum()), "sub-tiles here": int((m["city"] == c.name).sum()),
        "labelled sub-tiles": int(m.loc[m["city"] == c.name, "has_label"].sum())} for c in CITIES])


NONE_ROW = "none in this run"


def tiles_per_other_city(ctx: Context) -> pd.DataFrame:
    """Tiles and sub-tiles of every city folder that is not one of MiniFrance's 16 (``minifrance_city = 0`` in
    data/tiles.csv: indexed as a city of its own, in the split its folder names), apart from Table 2.4's."""
    from tmf.data.packed import read_manifest
    from tmf.data.reader import read_tiles_csv

    tiles, m = read_tiles_csv(ctx.inputs["tiles"]), read_manifest(ctx.inputs["manifest"])
    others = tiles[tiles["minifrance_city"] == 0][["city", "split"]].drop_duplicates()
    rows = [{"split": r.split, "city": r.city, "tiles here": int((tiles["city"] == r.city).sum()),
             "sub-tiles here": int((m["city"] == r.city).sum()),
             "labelled sub-tiles": int(m.loc[m["city"] == r.city, "has_label"].sum())} for r in others.itertuples()]
    return pd.DataFrame(rows) if rows else pd.DataFrame([{"city": NONE_ROW}])


def off_spec_tiles(ctx: Context) -> pd.DataFrame:
    """The tiles indexed with a warning because they are unlike the specification (SPEC.md §1: Lambert-93,
    0.5 m/px): data/tiles.csv's ``off_spec`` (another CRS, another resolution, no georeference)."""
    from tmf.data.reader import read_tiles_csv

    t = read_tiles_csv(ctx.inputs["tiles"])
    off = t.loc[t["off_spec"] != "", ["split", "city", "tile", "crs", "x_res", "off_spec"]]
    off = off.rename(columns={"x_res": "m/px", "off_spec": "unlike the specification"})
    return off.reset_index(drop=True) if len(off) else pd.DataFrame([{"tile": NONE_ROW}])


def class_share_frame(class_shares_csv: str | Path) -> pd.DataFrame:
    """Numbers behind :func:`class_shares` and the class-share figure: id, ours %, Table 2.6 %, Table 2.5 %."""
    ours = pd.read_csv(class_shares_csv).set_index("id")["share_ours"]
    ref5, ref6 = reference()["class_share_minifrance"], reference()["class_share_tinyminifrance"]
    return pd.DataFrame([{"id": c.id, "ours": float(ours.get(c.id, 0.0)), "table_2_6": ref6.get(c.id),
                          "table_2_5": ref5.get(c.id)} for c in CLASSES if c.id != 0])


def class_shares(ctx: Context) -> pd.DataFrame:
    """Class shares of our tinyMiniFrance next to Tables 2.5 (MiniFrance) and 2.6 (tinyMiniFrance), in %."""
    df = class_share_frame(ctx.inputs["class_shares"])
    return pd.DataFrame({
        "class": [class_name(i) for i in df["id"]], "ours (%)": df["ours"].map(lambda v: f"{v:.2f}"),
        "Table 2.6 (%)": df["table_2_6"].map(_one_decimal), "Table 2.5 (%)": df["table_2_5"].map(_one_decimal),
        "ours − Table 2.6": [f"{o - r:+.2f}" if r is not None else None
                             for o, r in zip(df["ours"], df["table_2_6"], strict=True)]})


def _one_decimal(value) -> str | None:
    return None if value is None or pd.isna(value) else f"{value:.1f}"


# ---- appearance
def coverage_vs_published(ctx: Context) -> pd.DataFrame:
    """Per-split appearance coverage, mean ± std over t-SNE seeds, next to Table 2.7 (Castillo-Navarro 2022)."""
    ref = reference()["appearance_coverage"]
    rows = []
    for encoder, path in ctx.inputs["summaries"].items():
        summary = json.loads(Path(path).read_text())
        if summary.get("status", "ok") != "ok":
            continue
        for key, label in PAIRS.items():
            ours = summary.get("split_coverage", {}).get(key)
            for metric in ("iou", "iot"):
                mean = ours[metric]["mean"] if ours else None
                std = ours[metric]["std"] if ours else None
                rows.append({"encoder": encoder, "pair": label, "score": SCORES[metric],
                             "ours (mean ± std)": number(mean, std), "t-SNE seeds": len(summary.get("seeds", [])),
                             "Table 2.7": f"{ref[key][metric]:.2f}",
                             "ours − Table 2.7": None if mean is None else f"{mean - ref[key][metric]:+.2f}"})
    return pd.DataFrame(rows)


def best_covering_city(ctx: Context) -> pd.DataFrame:
    """The training city whose appearance surface best covers each test city (IoU, mean over t-SNE seeds)."""
    rows = []
    for encoder, path in ctx.inputs["coverage"].items():
        cov = pd.read_csv(path)
        if not len(cov):
            continue
        cov = cov[~cov["train"].str.startswith("union") & ~cov["test"].str.startswith("union")]
        cov = cov.dropna(subset=["iou_mean"])  # cities below appearance.min_points have no surface
        for test, g in cov.groupby("test", sort=False):
            best = g.loc[g["iou_mean"].idxmax()]
            rows.append({"encoder": encoder, "test city": short_city(test), "best training city":
                         short_city(best["train"]), "IoU": number(best["iou_mean"], best["iou_std"]),
                         "IoT": number(best["iot_mean"], best["iot_std"])})
    return pd.DataFrame(rows)


def class_histograms_by_city(ctx: Context) -> pd.DataFrame:
    """% of each class among the labelled pixels of every city (the numbers of Fig. 2.14)."""
    hist = pd.read_csv(ctx.inputs["class_histograms_city"])
    ids = [c for c in hist.columns if c.isdigit()]
    out = pd.DataFrame({"city": hist["city"].map(short_city), "labelled pixels": hist["labelled_pixels"]})
    for cid in ids:
        out[class_name(int(cid), short=True)] = hist[cid].map(lambda v: None if pd.isna(v) else f"{v:.1f}")
    return out


# ---- pretraining
def pretraining_runs(ctx: Context) -> pd.DataFrame:
    """Every (method, seed): steps, final loss, throughput, embedding diagnostics, its MLflow run."""
    runs = ctx.inputs["runs"]
    rows = []
    for files in runs.values():
        m = json.loads(Path(files["metrics"]).read_text())
        d = m.get("diagnostics", {})
        rows.append({"method": m["method"], "seed": m["seed"], "steps": m.get("steps"),
                     "final loss": m.get("final_loss"), "images/s": _round(m.get("images_per_s"), 1),
                     "alignment": d.get("alignment"), "uniformity": d.get("uniformity"),
                     "effective rank": _round(d.get("effective_rank"), 1),
                     "wall time (s)": _round(m.get("wall_s"), 1)})
    df = pd.DataFrame(rows)
    if len(df):
        df["MLflow run"] = [Html(x) for x in mlflow_links("pretrain", df)]
    return df


def _round(value, digits):
    return None if value is None else round(float(value), digits)


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
            out.append(f'<a href="{escape(url)}" title="{escape(name)}">{escape(rec["run_id"][:8])}</a>')
        else:
            out.append("—")
    return out


def _tracking_section() -> dict:
    """The ``tracking`` section of the job (``$TMF_TRACKING_CFG``), else the schema's defaults."""
    from tmf.config import validate
    from tmf.tracking import config_from_env

    cfg = config_from_env()
    return cfg if cfg is not None else validate({})["tracking"]
