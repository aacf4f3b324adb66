"""Data unlike the specification, downstream of the index: a city folder that is not one of MiniFrance's 16 flows
through the tables and figures and is shown apart; tiles not in Lambert-93 / not at 0.5 m / without georeference
are listed for the data notebook; the evaluation tables and notes name the test set."""

from __future__ import annotations

import json

import pandas as pd

from tmf.data.packed import COUNT_COLUMNS, MANIFEST_COLUMNS
from tmf.data.reader import TILES_COLUMNS
from tmf.evaluate.summary import aggregate_table, summary_table
from tmf.report import scores, tables
from tmf.report.items import Context


def _tiles_and_manifest(tmp_path):
    tiles = pd.DataFrame([
        {"city": "Nice", "split": "labeled", "tile": "n1", "image": "i", "label": "l", "dem": "", "height": 64,
         "width": 64, "crs": "EPSG:2154", "x_res": 0.5, "minifrance_city": 1, "georeferenced": 1, "off_spec": ""},
        {"city": "Toulon", "split": "labeled", "tile": "t1", "image": "i", "label": "l", "dem": "", "height": 64,
         "width": 64, "crs": "EPSG:2154", "x_res": 1.0, "minifrance_city": 0, "georeferenced": 1,
         "off_spec": "1 x 1 m/px"},
        {"city": "Marseille_Martigues", "split": "test", "tile": "m1", "image": "i", "label": "", "dem": "",
         "height": 64, "width": 64, "crs": "EPSG:32631", "x_res": 0.5, "minifrance_city": 1, "georeferenced": 1,
         "off_spec": "CRS EPSG:32631"},
        {"city": "TestArea_A", "split": "test", "tile": "a1", "image": "i", "label": "", "dem": "", "height": 64,
         "width": 64, "crs": "", "x_res": float("nan"), "minifrance_city": 0, "georeferenced": 0,
         "off_spec": "no georeference"},
    ], columns=TILES_COLUMNS)
    tiles.to_csv(tmp_path / "tiles.csv", index=False)
    rows = []
    for t in tiles.itertuples():
        for k in range(2):
            rows.append({"id": f"{t.city}__{t.tile}__{k}", "city": t.city, "split": t.split, "tile": t.tile,
                         "row_off": 0, "col_off": 32 * k, "height": 32, "width": 32, "image": "x",
                         "label": "y" if t.label else "", "has_label": int(bool(t.label)),
                         **dict.fromkeys(COUNT_COLUMNS, 0)})
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "tiles.csv", tmp_path / "manifest.csv"


def test_data_notebook_tables_show_other_cities_apart_and_list_off_spec_tiles(tmp_path):
    t, m = _tiles_and_manifest(tmp_path)
    ctx = Context({"tiles": t, "manifest": m})
    ours, other = tables.tiles_per_city(ctx), tables.tiles_per_other_city(ctx)
    assert len(ours) == 16 and "Toulon" not in set(ours["city"])
    assert ours.set_index("city").loc["Nice", ["tiles here", "sub-tiles here", "labelled sub-tiles"]].tolist() == [1, 2, 2]
    assert other.set_index("city")[["split", "tiles here", "labelled sub-tiles"]].to_dict("index") == {
        "Toulon": {"split": "labeled", "tiles here": 1, "labelled sub-tiles": 2},
        "TestArea_A": {"split": "test", "tiles here": 1, "labelled sub-tiles": 0}}
    off = tables.off_spec_tiles(ctx)
    assert off.set_index("tile")["unlike the specification"].to_dict() == {
        "t1": "1 x 1 m/px", "m1": "CRS EPSG:32631", "a1": "no georeference"}
    t2 = pd.read_csv(t)
    t2[t2["minifrance_city"] == 1].to_csv(tmp_path / "only16.csv", index=False)
    only16 = tables.tiles_per_other_city(Context({"tiles": tmp_path / "only16.csv", "manifest": m}))
    assert only16.to_dict("records") == [{"city": tables.NONE_ROW}]


def _metrics(path, city_scores, test_set="labeled_holdout", method="supervised", seed=0, status="ok"):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = status == "ok"
    m = {"protocol": "finetune", "method": method, "test_set": test_set, "fraction": 1.0, "seed": seed,
         "n_train": 4 if ok else 0, "oa": 0.5 if ok else None, "miou": 0.3 if ok else None,
         "kappa": 0.2 if ok else None, "hierarchical_cost": 1.0 if ok else None, "status": status,
         "test_set_info": {"requested": "auto", "why": "the test cities have no labels",
                           "scored_cities": list(city_scores), "folds": [{"name": "x"}],
                           "held_out_tiles": ["Nice/n1", "Toulon/t1"],
                           "holdout": {"fraction": 0.2, "block_km": 5, "seed": 0}},
         "per_city": {c: {"oa": v, "miou": v / 2} for c, v in city_scores.items()} if ok else {}}
    if not ok:
        m["reason"] = "method 'oracle' needs labels"
    path.write_text(json.dumps(m))
    return path


def _agg_ctx(tmp_path, paths) -> Context:
    summary = summary_table(paths)
    summary.to_csv(tmp_path / "summary.csv", index=False)
    aggregate_table(summary).to_csv(tmp_path / "agg.csv", index=False)
    return Context({"summary": tmp_path / "summary.csv", "aggregate": tmp_path / "agg.csv", "runs": paths})


def test_evaluation_tables_show_other_cities_apart(tmp_path):
    paths = [_metrics(tmp_path / f"r{s}/metrics.json", {"Toulon": 0.4, "Nice": 0.6}, seed=s) for s in (0, 1)]
    summary = summary_table(paths)
    city_cols = [c for c in summary.columns if c.startswith(("oa_", "miou_"))]
    assert city_cols == ["oa_Nice", "miou_Nice", "oa_Toulon", "miou_Toulon"]  # MiniFrance's first
    ctx = _agg_ctx(tmp_path, paths)
    ours, other = scores.per_city_scores(ctx), scores.per_other_city_scores(ctx)
    assert [c for c in ours.columns if c.endswith("(%)")] == ["Nice: OA / mIoU (%)"]
    assert [c for c in other.columns if c.endswith("(%)")] == ["Toulon: OA / mIoU (%)"]
    assert (other["test set"] == "held-out tiles of the labeled cities").all()
    only_nice = [_metrics(tmp_path / "n/metrics.json", {"Nice": 0.6})]
    assert scores.per_other_city_scores(_agg_ctx(tmp_path, only_nice)).to_dict("records") == [
        {"city": tables.NONE_ROW}]


def test_tables_name_the_test_set(tmp_path):
    paths = [_metrics(tmp_path / "a/metrics.json", {"Nice": 0.6, "Toulon": 0.4}),
             _metrics(tmp_path / "b/metrics.json", {}, method="oracle", status="skipped")]
    ctx = _agg_ctx(tmp_path, paths)
    (row,) = scores.test_sets(ctx).to_dict("records")
    assert row["test set"] == "held-out tiles of the labeled cities" and row["evaluate.test_set"] == "labeled_holdout"
    assert row["chosen by"] == "auto: the test cities have no labels"
    assert row["held out / folds"].startswith("2 held-out tiles in blocks of 5 km")
    seg = scores.segmentation_vs_published(ctx).set_index("method")
    assert "OA, Table 3.1 (%)" not in seg.columns  # held-out tiles: no published counterpart
    assert seg.loc["oracle", "OA (%)"] == "skipped" and "needs labels" in seg.loc["oracle", "note"]
    runs = scores.evaluation_runs(ctx).set_index("method")
    assert runs.loc["oracle", "status"] == "skipped" and runs.loc["supervised", "test set"].startswith("held-out")


def test_test_cities_rows_stand_next_to_table_3_1(tmp_path):
    paths = [_metrics(tmp_path / "a/metrics.json", {"Rennes": 0.6}, test_set="test_cities")]
    table = scores.segmentation_vs_published(_agg_ctx(tmp_path, paths))
    assert {"OA, Table 3.1 (%)", "mIoU, Table 3.1 (%)"} <= set(table.columns)
    assert (table["test set"] == "the test cities").all() and table["OA, Table 3.1 (%)"].iloc[0] is not None


def test_heatmap_and_legend_labels_mark_other_cities():
    from tmf.appearance.coverage import UNION_TRAIN
    from tmf.appearance.figures import OTHER_CITY_MARK, _label

    assert _label("Toulon") == "Toulon" + OTHER_CITY_MARK
    assert _label("Nantes_Saint-Nazaire") == "Nantes Saint-Nazaire" and _label(UNION_TRAIN) == UNION_TRAIN


def test_coverage_table_of_a_split_without_surfaces(tmp_path):
    """Every city below appearance.min_points (tiny real data): the split scores are null, the table says —."""
    summary = {"encoder": "random-resnet18", "split_coverage": {
        "labeled_vs_test": {"iou": {"mean": None, "std": None}, "iot": {"mean": None, "std": None}}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    table = tables.coverage_vs_published(Context({"summaries": {"random-resnet18": tmp_path / "summary.json"}}))
    assert len(table) == 4 and set(table["ours (mean ± std)"]) == {"—"}
