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


# Our evaluation methods ↔ the rows of seed 004 Table 3.1 (column: the network, U-Net or SegNet).
TABLE_3_1_ROWS = {"oracle": "oracle", "supervised": "supervised", "berundanet_l1": "berundanet_late_l1",
                  "berundanet_kmeans": "berundanet_late_kmeans"}
# ... and of Table 3.3 (BerundaNet-late U-Net, one auxiliary loss per row).
TABLE_3_3_ROWS = {"berundanet_l1": "l1", "berundanet_l2": "l2", "berundanet_kmeans": "kmeans",
                  "berundanet_mumford_shah": "mumford_shah"}
NETWORKS = {"unet": "U-Net", "segnet": "SegNet"}
UNET_PROTOCOLS = ("finetune", "finetune_fixmatch")  # the 1x1-conv-head U-Nets the question table compares


def _mean_std(row: pd.Series, key: str) -> str:
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None or pd.isna(mean):
        return "—"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None and not pd.isna(std) else "")


def _network(row: pd.Series) -> str:
    arch = row.get("architecture")
    return "segnet" if arch == "segnet" or row["protocol"] == "segnet" else "unet"


def segmentation_comparison(summary_agg_csv: str | Path, source: str) -> pd.DataFrame:
    """OA / mIoU on the test cities (%, mean ± std over seeds) next to seed 004 Table 3.1 (the column of the
    run's network, U-Net or SegNet) for the baselines that have a published counterpart, and every other
    pixel-level run without one."""
    agg = pd.read_csv(summary_agg_csv)
    ref = reference()["semisupervised_tinyminifrance"]
    rows = []
    for _, r in agg.iterrows():
        if r.get("n_train", 1) == 0:
            continue
        if r["protocol"] not in ("finetune", "linear", "segnet"):
            continue
        net = _network(r) if r["protocol"] != "linear" else "unet"
        pub = ref[net].get(TABLE_3_1_ROWS.get(r["method"], ""), [None, None])
        rows.append({
            "protocol": r["protocol"], "method": r["method"],
            "network": NETWORKS[net] if r["protocol"] != "linear" else "linear head", "label fraction": r["fraction"],
            "seeds": int(r["n_seeds"]),
            "OA ours": _mean_std(r, "oa"), "OA T3.1": pub[0],
            "mIoU ours": _mean_std(r, "miou"), "mIoU T3.1": pub[1],
            "κ ours": _mean_std(r, "kappa"),
        })
    df = pd.DataFrame(rows)
    if len(df):
        df["data"] = source_label(source)
    return df


def _family(protocol: str, method: str) -> tuple[int, str, str]:
    """(order, family, what the row is) of a U-Net run in the semi-supervision table."""
    from tmf.plan import ENCODER_BASELINES, SEMISUPERVISED_LOSS

    fixmatch = protocol == "finetune_fixmatch"
    if method == "supervised":
        return 0, "supervised", "labeled cities, cross-entropy"
    if method == "oracle":
        return 1, "supervised (oracle)", "all 8 training cities labeled"
    if method in TABLE_3_3_ROWS:
        return 2, "multi-task (BerundaNet-late)", f"CE + λ·L_{SEMISUPERVISED_LOSS[method]}"
    if method == "fixmatch":
        return 3, "consistency (FixMatch)", "from scratch"
    start = {"random": "random init", "imagenet": "ImageNet"}.get(method, f"self-supervised ({method})")
    if method in ENCODER_BASELINES:
        return 6, "encoder control", f"{start} + {'FixMatch' if fixmatch else 'fine-tuning'}"
    return (5, "self-supervised + FixMatch", start) if fixmatch else (4, "self-supervised + fine-tuning", start)


def semisupervised_comparison(summary_agg_csv: str | Path, source: str) -> pd.DataFrame:
    """Is semi-supervision worth it? Every U-Net run (``finetune``, ``finetune_fixmatch``: one network, one test
    set) at each label fraction: supervised, oracle, BerundaNet-late × {L1, L2, k-means, Mumford–Shah}, FixMatch,
    SSL + fine-tuning and SSL + FixMatch, OA / mIoU in % (mean ± std over seeds), the mIoU difference to
    ``supervised`` at the same fraction (points), and seed 004's published numbers where it has some (Tables 3.1
    and 3.3: U-Net, all labels of the labeled cities, so only next to our fraction-1 rows)."""
    agg = pd.read_csv(summary_agg_csv)
    agg = agg[agg["protocol"].isin(UNET_PROTOCOLS) & (agg["n_train"] > 0)]
    ref31, ref33 = reference()["semisupervised_tinyminifrance"]["unet"], reference()["aux_losses_tinyminifrance"]
    sup = {float(r["fraction"]): r["miou_mean"] for _, r in agg.iterrows()
           if r["protocol"] == "finetune" and r["method"] == "supervised"}
    rows = []
    for _, r in agg.iterrows():
        order, family, what = _family(r["protocol"], r["method"])
        frac = float(r["fraction"])
        pub, where = [None, None], ""
        if frac == 1.0 and r["method"] in TABLE_3_3_ROWS:
            pub, where = ref33[TABLE_3_3_ROWS[r["method"]]], "Table 3.3"
        elif frac == 1.0 and r["protocol"] == "finetune" and r["method"] in TABLE_3_1_ROWS:
            pub, where = ref31[TABLE_3_1_ROWS[r["method"]]], "Table 3.1"
        delta = 100 * (r["miou_mean"] - sup[frac]) if frac in sup and r["method"] != "supervised" else None
        rows.append({"_order": (frac, order), "label fraction": frac, "family": family, "method": r["method"],
                     "protocol": r["protocol"], "what": what, "seeds": int(r["n_seeds"]),
                     "OA ours": _mean_std(r, "oa"), "mIoU ours": _mean_std(r, "miou"),
                     "Δ mIoU vs supervised": None if delta is None else round(delta, 2),
                     "OA published": pub[0], "mIoU published": pub[1], "published in": where or "—"})
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
        df["network"] = "U-Net"
        df["data"] = source_label(source)
    return df


def mlflow_links(names: list[str]) -> list[str]:
    """An HTML link to each job's MLflow run (by job name, e.g. ``pretrain[method=simclr,seed=0]``), or "—" for a
    job that was not tracked. The links open the run in ``mlflow ui`` on 127.0.0.1:5000 (docs/tracking.md)."""
    from tmf import tracking

    records = tracking.run_records()
    out = []
    for name in names:
        rec = records.get(name)
        if rec and rec.get("run_id"):
            url = tracking.run_url(rec["run_id"], rec.get("experiment_id", "0"))
            out.append(f'<a href="{url}" title="{name}">{rec["run_id"][:8]}</a>')
        else:
            out.append("—")
    return out


def evaluation_run_name(protocol: str, method: str, fraction: float, seed: int) -> str:
    """The MLflow run name of one evaluation job (as ``tmf evaluate`` names it)."""
    return f"evaluate[protocol={protocol},method={method},fraction={float(fraction)},seed={int(seed)}]"
