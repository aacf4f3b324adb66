"""The evaluation notebook's tables: what the scores are on (the test sets), the segmentation scores next to
Tables 3.1 and 3.3 of Castillo-Navarro 2022, the semi-supervision question, per class, per city, every run. Each
table is an item of :mod:`tmf.plan.items`, drawn by ``tmf report-items`` (:mod:`tmf.report.build`); the shared
helpers (published numbers, city names, MLflow links) are in :mod:`tmf.report.tables`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tmf.data.minifrance import SCORED_IDS
from tmf.report.html import Html, class_name, fraction, number, pct
from tmf.report.items import Context
from tmf.report.tables import NONE_ROW, mlflow_links, reference, short_city

# Our evaluation methods ↔ the rows of Table 3.1 of Castillo-Navarro 2022 (the column of the run's network, U-Net
# or SegNet), which trains with every label of the labeled cities...
TABLE_3_1_ROWS = {"oracle": "oracle", "supervised": "supervised", "berundanet_l1": "berundanet_late_l1",
                  "berundanet_kmeans": "berundanet_late_kmeans"}
# ... and of its Table 3.3 (BerundaNet-late U-Net, one auxiliary loss per row).
TABLE_3_3_ROWS = {"berundanet_l1": "l1", "berundanet_l2": "l2", "berundanet_kmeans": "kmeans",
                  "berundanet_mumford_shah": "mumford_shah"}
NETWORKS = {"unet": "U-Net", "segnet": "SegNet"}  # tmf.plan.names.architecture, as the tables name it
UNET_PROTOCOLS = ("finetune", "finetune_fixmatch")  # the U-Nets with a 1x1-conv head the semi-supervision table compares


# ---- evaluation
def _aggregate(ctx: Context) -> pd.DataFrame:
    return pd.read_csv(ctx.inputs["aggregate"], dtype={"reason": str}).fillna({"reason": ""})


# evaluate.test_set (tmf.plan.names.TEST_SETS) as the tables and headings name it
TEST_SET_LABELS = {
    "test_cities": "the test cities",
    "labeled_holdout": "held-out tiles of the labeled cities",
    "cross_city": "each labeled city, trained on the other(s)",
}


def test_set_label(test_set: str) -> str:
    return TEST_SET_LABELS.get(test_set, test_set)


def segmentation_heading(test_sets) -> str:
    """What :func:`segmentation_vs_published` compares, for the test sets of the run (``summary_agg.csv``'s
    ``test_set`` column): next to Table 3.1 only on the test cities, which is what Table 3.1 scores."""
    from tmf.plan.names import TEST_SETS

    found = set(test_sets)
    names = [t for t in TEST_SETS if t in found] + sorted(found - set(TEST_SETS))
    if not names:
        return "Segmentation: no evaluation run"
    heading = "Segmentation on " + "; on ".join(test_set_label(t) for t in names)
    if "test_cities" in found:
        return heading + " (vs Table 3.1, Castillo-Navarro 2022, on the test cities)"
    return heading + " (no published counterpart: Table 3.1 scores the test cities)"


def test_sets(ctx: Context) -> pd.DataFrame:
    """What each test set of the run scores (``evaluate.test_set``; tmf.evaluate.testsets): how ``auto`` chose it,
    the scored cities, the held-out tiles or the folds (from the first run of each that ran)."""
    seen: dict[str, dict] = {}
    for p in ctx.inputs["runs"]:
        m = json.loads(Path(p).read_text())
        if m.get("status", "ok") == "ok":
            seen.setdefault(m["test_set"], m["test_set_info"])
    rows = []
    for name, info in seen.items():
        detail = ""
        if name == "labeled_holdout":
            h = info["holdout"]
            detail = (f"{len(info['held_out_tiles'])} held-out tiles in blocks of {h['block_km']:g} km (fraction "
                      f"{h['fraction']:g}, seed {h['seed']}), in no label pool")
        elif len(info["folds"]) > 1:
            detail = "folds: " + "; ".join(f["name"] for f in info["folds"])
        rows.append({"test set": test_set_label(name), "evaluate.test_set": name,
                     "chosen by": f"auto: {info['why']}" if info.get("requested") == "auto" else "the configuration",
                     "scored cities": ", ".join(short_city(c) for c in info["scored_cities"]), "held out / folds":
                     detail or None})
    return pd.DataFrame(rows) if rows else pd.DataFrame([{"test set": "no evaluation run was scored"}])


def segmentation_vs_published(ctx: Context) -> pd.DataFrame:
    """OA / mIoU / κ on the run's test set (%, mean ± std over seeds) of every pixel-level run; Table 3.1's U-Net
    column where a row is comparable: a baseline of Table 3.1 trained with every label and scored, as Table 3.1 is,
    on the test cities (held-out tiles or another labeled city are no counterpart). A skipped method (the oracle
    without its labels) is a row that says why."""
    from tmf.plan.names import FINETUNE_PROTOCOLS, architecture, split_protocol

    agg = _aggregate(ctx)
    agg = agg[agg["protocol"].isin(_pixel_protocols(agg))]
    ref = reference()["semisupervised_tinyminifrance"]
    finetuned = [split_protocol(p)[0] in FINETUNE_PROTOCOLS for p in agg["protocol"]]
    nets = [architecture(split_protocol(p)[0]) if ft else None for p, ft in zip(agg["protocol"], finetuned,
                                                                                 strict=True)]
    published = [ref[n].get(TABLE_3_1_ROWS.get(m, "")) if n and f == 1.0 and t == "test_cities" else None
                 for m, f, t, n in zip(agg["method"], agg["fraction"], agg["test_set"], nets, strict=True)]
    skipped = (agg["status"] == "skipped").to_numpy()

    def scores(key):
        return ["skipped" if sk else pct(m, s)
                for sk, m, s in zip(skipped, agg[f"{key}_mean"], agg[f"{key}_std"], strict=True)]

    df = pd.DataFrame({
        "protocol": agg["protocol"], "method": agg["method"],
        "network": [NETWORKS[n] if n else "frozen encoder, linear head" for n in nets],
        "test set": agg["test_set"].map(test_set_label),
        "label fraction": agg["fraction"].map(fraction), "seeds": agg["n_seeds"].astype(int),
        "OA (%)": scores("oa"), "mIoU (%)": scores("miou"), "κ (%)": scores("kappa"),
    })
    if any(p is not None for p in published):
        df["OA, Table 3.1 (%)"] = [p[0] if p else None for p in published]
        df["mIoU, Table 3.1 (%)"] = [p[1] if p else None for p in published]
    if skipped.any():
        df["note"] = [r or None for r in agg["reason"]]
    return df.reset_index(drop=True)


def _family(protocol: str, method: str) -> tuple[int, str, str]:
    """(order, family, what the row is) of a U-Net run in :func:`semisupervised_comparison`."""
    from tmf.plan.names import ENCODER_BASELINES, FIXMATCH_PROTOCOL, SEMISUPERVISED_LOSS

    fixmatch = protocol == FIXMATCH_PROTOCOL
    if method == "supervised":
        return 0, "supervised", "labeled cities, cross-entropy"
    if method == "oracle":
        return 1, "supervised (oracle)", "every training city labeled"
    if method in TABLE_3_3_ROWS:
        return 2, "multi-task (BerundaNet-late)", f"CE + λ·L_{SEMISUPERVISED_LOSS[method]}"
    if method == "fixmatch":
        return 3, "consistency (FixMatch)", "from scratch"
    start = {"random": "random init", "imagenet": "ImageNet"}.get(method, f"self-supervised ({method})")
    if method in ENCODER_BASELINES:
        return 6, "encoder control", f"{start} + {'FixMatch' if fixmatch else 'fine-tuning'}"
    return (5, "self-supervised + FixMatch", start) if fixmatch else (4, "self-supervised + fine-tuning", start)


def semisupervised_comparison(ctx: Context) -> pd.DataFrame:
    """Is semi-supervision worth it? Every U-Net run (``finetune``, ``finetune_fixmatch``: one network) per test
    set and label fraction: supervised, oracle, BerundaNet-late × {L1, L2, k-means, Mumford–Shah}, FixMatch, SSL +
    fine-tuning and SSL + FixMatch; OA / mIoU (%, mean ± std over seeds), the mIoU difference to ``supervised`` on
    the same test set and fraction (points), and Castillo-Navarro 2022's numbers where it has some (Tables 3.1 and
    3.3: U-Net, every label of the labeled cities, on the test cities: next to those rows only)."""
    agg = _aggregate(ctx)
    agg = agg[agg["protocol"].isin(UNET_PROTOCOLS) & (agg["status"] == "ok")]
    if not (agg["method"].isin(TABLE_3_3_ROWS) | agg["method"].eq("fixmatch")
            | agg["protocol"].eq(UNET_PROTOCOLS[1])).any():
        return pd.DataFrame([{"label fraction": "no semi-supervised run in this configuration (params/semisup.yaml "
                                                "runs them)"}])
    ref31, ref33 = reference()["semisupervised_tinyminifrance"]["unet"], reference()["aux_losses_tinyminifrance"]
    sup = {(r.test_set, float(r.fraction)): r.miou_mean for r in agg.itertuples()
           if r.protocol == "finetune" and r.method == "supervised"}
    rows = []
    for r in agg.itertuples():
        order, family, what = _family(r.protocol, r.method)
        key = (r.test_set, float(r.fraction))
        pub, where = [None, None], None
        if key == ("test_cities", 1.0) and r.method in TABLE_3_3_ROWS:
            pub, where = ref33[TABLE_3_3_ROWS[r.method]], "Table 3.3"
        elif key == ("test_cities", 1.0) and r.protocol == "finetune" and r.method in TABLE_3_1_ROWS:
            pub, where = ref31[TABLE_3_1_ROWS[r.method]], "Table 3.1"
        delta = 100 * (r.miou_mean - sup[key]) if key in sup and r.method != "supervised" else None
        rows.append({"_order": (r.test_set, key[1], order), "test set": test_set_label(r.test_set),
                     "label fraction": fraction(r.fraction), "family": family, "method": r.method,
                     "protocol": r.protocol, "what": what, "seeds": int(r.n_seeds),
                     "OA (%)": pct(r.oa_mean, r.oa_std), "mIoU (%)": pct(r.miou_mean, r.miou_std),
                     "Δ mIoU vs supervised (points)": None if delta is None else f"{delta:+.1f}",
                     "OA, published (%)": pub[0], "mIoU, published (%)": pub[1], "published in": where})
    df = pd.DataFrame(rows).sort_values("_order", kind="stable").drop(columns="_order")
    return df.reset_index(drop=True)


def _pixel_protocols(agg: pd.DataFrame) -> list[str]:
    from tmf.plan.names import SCENE_PROTOCOLS, split_protocol

    return [p for p in dict.fromkeys(agg["protocol"]) if split_protocol(p)[0] not in SCENE_PROTOCOLS]


def per_class_iou(ctx: Context) -> pd.DataFrame:
    """Test IoU of every scored class (%, mean ± std over seeds) per protocol × method × label fraction."""
    agg = _aggregate(ctx)
    agg = agg[agg["protocol"].isin(_pixel_protocols(agg)) & (agg["status"] == "ok")]
    ids = [i for i in SCORED_IDS if f"iou_{i}_mean" in agg.columns and agg[f"iou_{i}_mean"].notna().any()]
    df = pd.DataFrame({"protocol": agg["protocol"], "method": agg["method"],
                       "label fraction": agg["fraction"].map(fraction)})
    for i in ids:
        df[class_name(i, short=True)] = [pct(m, s) for m, s in zip(agg[f"iou_{i}_mean"], agg[f"iou_{i}_std"],
                                                                    strict=True)]
    return df.reset_index(drop=True)


def _per_city(ctx: Context, minifrance: bool) -> pd.DataFrame:
    """OA / mIoU of each scored city (%, mean over seeds) per protocol × method × label fraction: MiniFrance's
    cities (Table 2.4 order), or every other city folder."""
    from tmf.data.minifrance import CITY_BY_NAME, city_rank

    agg = _aggregate(ctx)
    agg = agg[agg["protocol"].isin(_pixel_protocols(agg)) & (agg["status"] == "ok")]
    scored = {c[len("oa_"):-len("_mean")] for c in agg.columns
              if c.startswith("oa_") and c.endswith("_mean") and c != "oa_mean"}
    cities = sorted((c for c in scored if (c in CITY_BY_NAME) == minifrance), key=city_rank)
    if not cities:
        return pd.DataFrame([{"city": NONE_ROW}])
    df = pd.DataFrame({"protocol": agg["protocol"], "method": agg["method"],
                       "test set": agg["test_set"].map(test_set_label),
                       "label fraction": agg["fraction"].map(fraction)})
    for c in cities:
        if agg[f"oa_{c}_mean"].notna().any():
            df[f"{short_city(c)}: OA / mIoU (%)"] = [
                None if pd.isna(o) else f"{pct(o)} / {pct(u)}"
                for o, u in zip(agg[f"oa_{c}_mean"], agg[f"miou_{c}_mean"], strict=True)]
    return df.reset_index(drop=True)


def per_city_scores(ctx: Context) -> pd.DataFrame:
    """OA / mIoU of each scored MiniFrance city (%, mean over seeds), per protocol × method × label fraction."""
    return _per_city(ctx, minifrance=True)


def per_other_city_scores(ctx: Context) -> pd.DataFrame:
    """The same for the scored cities that are not one of MiniFrance's 16, apart."""
    return _per_city(ctx, minifrance=False)


def evaluation_runs(ctx: Context) -> pd.DataFrame:
    """Every evaluation run (one seed each): training size, OA, mIoU, κ (%), hierarchical cost, its MLflow run."""
    runs = pd.read_csv(ctx.inputs["summary"])
    df = pd.DataFrame({
        "protocol": runs["protocol"], "method": runs["method"], "test set": runs["test_set"].map(test_set_label),
        "label fraction": runs["fraction"].map(fraction), "seed": runs["seed"],
        "status": runs["status"], "training sub-tiles": runs["n_train"],
        "OA (%)": runs["oa"].map(pct), "mIoU (%)": runs["miou"].map(pct), "κ (%)": runs["kappa"].map(pct),
        "hierarchical cost": runs["hierarchical_cost"].map(lambda v: number(v)),
    })
    df["MLflow run"] = [Html(x) for x in mlflow_links("evaluate", runs)]
    return df


def maps_per_city(ctx: Context, split: str) -> pd.DataFrame:
    """Per mapped city of ``split`` (``predict.splits``): tiles, megapixels, tiles without georeference, and the
    predicted share (%) of every class the maps contain (tmf.predict.previews.city_table), with the evaluation job
    whose model predicted them (``results/maps/<split>/maps.csv``)."""
    from tmf.predict.previews import city_table

    table = city_table(ctx.inputs["index"])
    models = pd.read_csv(ctx.inputs["index"], usecols=["model"])["model"].unique()
    table.insert(1, "model", ", ".join(models))
    return table.rename(columns={c: class_name(int(c.split()[0]), short=True) for c in table.columns
                                 if c.split()[0].isdigit()})


def modality_grid(ctx: Context) -> pd.DataFrame:
    """The multi-modal runs in the shape of seed 000 Table 4.3: per protocol, test set and label fraction, one row
    per pretraining (``random init``: Table 4.3's "None"; ``⋆``: MM-SSL without in-modality views) and one column per
    downstream set of modalities, mIoU (%, mean ± std over seeds); "—" where a cell is not run (the source's "-").
    Table 4.3 reports scene accuracy on Meter-ML, ours is segmentation: compare the pattern (which cells beat the
    random-init row), not the values."""
    from tmf.evaluate.summary import modality_grid as grid_of
    from tmf.modalities import SUBSETS, subset_label

    grid = grid_of(_aggregate(ctx))
    if grid.empty:
        return pd.DataFrame([{"pretraining": "no multi-modal run in this configuration (params/multimodal.yaml "
                                             "runs them)"}])
    cols = [subset_label(s) for s in SUBSETS if s in set(grid["subset"])]
    rows = []
    for (protocol, test_set, frac, pre), g in grid.groupby(["protocol", "test_set", "fraction", "pretraining"],
                                                         sort=False):
        cells = {r.downstream: pct(r.miou_mean, r.miou_std) for r in g.itertuples()}
        rows.append({"protocol": protocol, "test set": test_set_label(test_set), "label fraction": fraction(frac),
                     "pretraining": pre, **{c: cells.get(c, "—") for c in cols}, "seeds": int(g["n_seeds"].min())})
    return pd.DataFrame(rows)
