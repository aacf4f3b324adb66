""""Ours vs published" tables for the report.

The published numbers are the package's copy of the source documents' tables
(``tmf/reference/seed_tables.yaml``). Every table carries a ``data`` column naming the data source of this run
(embedded synthetic or real MiniFrance), so that nobody mistakes a synthetic number for a reproduction, and every
segmentation table a ``test set`` column (``evaluate.test_set``); published numbers sit only next to ours on the
same test set.
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


def _number(v) -> float:
    return float("nan") if v is None else float(v)


def coverage_comparison(summary_json: str | Path, source: str) -> pd.DataFrame:
    """Our per-split appearance coverage (mean ± std over t-SNE seeds) next to Table 2.7."""
    summary = json.loads(Path(summary_json).read_text())
    ref = reference()["appearance_coverage"]
    rows = []
    for key, label in (("labeled_vs_test", "Labeled–Test"), ("unlabeled_vs_test", "Unlabeled–Test")):
        ours = summary.get("split_coverage", {}).get(key)
        for metric in ("iou", "iot"):  # null: undefined (a split without surfaces, e.g. too few sub-tiles)
            mean = _number(ours[metric]["mean"]) if ours else float("nan")
            std = _number(ours[metric]["std"]) if ours else float("nan")
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


# evaluate.test_set (tmf.plan.names.TEST_SETS) as the tables and headings name it
TEST_SET_LABELS = {
    "test_cities": "the test cities",
    "labeled_holdout": "held-out tiles of the labeled cities",
    "cross_city": "each labeled city, trained on the other(s)",
}


def test_set_label(test_set: str) -> str:
    return TEST_SET_LABELS.get(test_set, test_set)


def test_sets_of(summary_agg_csv: str | Path) -> list[str]:
    """The test sets of the evaluation table, in the order of ``tmf.plan.names.TEST_SETS``."""
    from tmf.plan.names import TEST_SETS

    found = set(pd.read_csv(summary_agg_csv)["test_set"])
    return [t for t in TEST_SETS if t in found] + sorted(found - set(TEST_SETS))


def segmentation_heading(test_set: str) -> str:
    """The heading of :func:`segmentation_comparison`'s table for one test set."""
    if test_set == "test_cities":
        return "Segmentation on the test cities vs Table 3.1 (seed 004)"
    return (f"Segmentation on {test_set_label(test_set)} (evaluate.test_set = {test_set}; no published counterpart: "
            "Table 3.1 scores the test cities)")


def segmentation_comparison(summary_agg_csv: str | Path, source: str, test_set: str = "test_cities") -> pd.DataFrame:
    """OA / mIoU (%, mean ± std over seeds) of the pixel-level runs scored on ``test_set``; on the test cities
    next to seed 004 Table 3.1 (U-Net) for the baselines that have a published counterpart. Other test sets get
    no published column: Table 3.1 is on the test cities, so like is compared only with like. Skipped runs (a
    method without the labels it needs) are rows that say so."""
    agg = pd.read_csv(summary_agg_csv, dtype={"reason": str})
    agg = agg[agg["test_set"] == test_set].fillna({"reason": ""})
    ref = reference()["semisupervised_tinyminifrance"]["unet"]
    published = test_set == "test_cities"
    rows = []
    for _, r in agg.iterrows():
        if r["protocol"] not in ("finetune", "linear"):
            continue
        skipped = r["status"] == "skipped"
        pub = ref.get(TABLE_3_1_ROWS.get(r["method"], ""), [None, None])
        row = {"protocol": r["protocol"], "method": r["method"], "test set": test_set_label(test_set),
               "label fraction": r["fraction"], "seeds": int(r["n_seeds"]),
               "OA ours": "skipped" if skipped else _mean_std(r, "oa"),
               **({"OA T3.1": pub[0]} if published else {}),
               "mIoU ours": "—" if skipped else _mean_std(r, "miou"),
               **({"mIoU T3.1": pub[1]} if published else {}),
               "κ ours": "—" if skipped else _mean_std(r, "kappa")}
        if (agg["status"] == "skipped").any():
            row["note"] = r["reason"] if skipped else ""
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df["data"] = source_label(source)
    return df


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


def test_set_notes(metrics_paths: list[str | Path]) -> list[str]:
    """One Markdown line per test set of these runs: what it scores, how ``auto`` chose it, the held-out tiles
    or the folds (from each test set's first run's ``test_set_info``)."""
    seen: dict[str, dict] = {}
    for p in metrics_paths:
        m = json.loads(Path(p).read_text())
        if m.get("status", "ok") == "ok":
            seen.setdefault(m["test_set"], m["test_set_info"])
    lines = []
    for name, info in seen.items():
        line = f"**Test set: {test_set_label(name)}** (`{name}`"
        line += f", chosen by `evaluate.test_set: auto`: {info['why']})" if info.get("requested") == "auto" else ")"
        line += f"; scored cities: {', '.join(info['scored_cities'])}"
        if name == "labeled_holdout":
            h = info["holdout"]
            line += (f"; {len(info['held_out_tiles'])} held-out tiles in blocks of {h['block_km']:g} km "
                     f"(fraction {h['fraction']:g}, seed {h['seed']}), in no label pool")
        elif len(info["folds"]) > 1:
            line += "; folds: " + "; ".join(f["name"] for f in info["folds"])
        lines.append(line + ".")
    return lines


def per_city_tables(agg: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Mean OA / mIoU per scored city of the runs that ran: MiniFrance's 16 cities (Table 2.4 order), and apart
    any other city folder (``minifrance_city = 0`` in tiles.csv; None when there is none), each with the run's
    identity columns."""
    from tmf.data.minifrance import CITY_BY_NAME, city_rank
    from tmf.evaluate.summary import GROUP_KEYS as keys

    ran = agg[agg["status"] == "ok"]
    cities = {c[len("oa_"):-len("_mean")] for c in ran.columns
              if c.startswith("oa_") and c.endswith("_mean") and c != "oa_mean"}

    def table(names):
        cols = [f"{k}_{c}_mean" for c in sorted(names, key=city_rank) for k in ("oa", "miou")]
        return ran[keys + cols].dropna(axis=1, how="all").round(3) if cols else ran[keys].iloc[:0]

    other = {c for c in cities if c not in CITY_BY_NAME}
    return table({c for c in cities if c in CITY_BY_NAME}), table(other) if other else None


def city_counts(tiles_csv: str | Path, manifest_csv: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Tiles and sub-tiles per city: MiniFrance's 16 in Table 2.4's layout next to its tile counts, and apart
    (None when there is none) every other city folder of the data (``minifrance_city = 0`` in tiles.csv)."""
    from tmf.data.minifrance import CITIES
    from tmf.data.packed import read_manifest
    from tmf.data.reader import read_tiles_csv

    t, m = read_tiles_csv(tiles_csv), read_manifest(manifest_csv)

    def row(city: str, split: str) -> dict:
        return {"split": split, "city": city, "tiles here": int((t.city == city).sum()),
                "sub-tiles here": int((m.city == city).sum()),
                "labelled sub-tiles": int(m.loc[m.city == city, "has_label"].sum())}

    ours = pd.DataFrame([{**row(c.name, c.split), "MiniFrance tiles (T2.4)": c.tiles} for c in CITIES])
    ours = ours[["split", "city", "MiniFrance tiles (T2.4)", "tiles here", "sub-tiles here", "labelled sub-tiles"]]
    others = t[t["minifrance_city"] == 0][["city", "split"]].drop_duplicates()
    return ours, (pd.DataFrame([row(r.city, r.split) for r in others.itertuples()]) if len(others) else None)


def off_spec_tiles(tiles_csv: str | Path) -> pd.DataFrame:
    """The tiles indexed with a warning because they are unlike the specification (SPEC.md §1: Lambert-93,
    0.5 m/px): tiles.csv's ``off_spec`` (another CRS, another resolution, no georeference)."""
    from tmf.data.reader import read_tiles_csv

    t = read_tiles_csv(tiles_csv)
    return t.loc[t["off_spec"] != "", ["split", "city", "tile", "crs", "x_res", "off_spec"]].reset_index(drop=True)
