"""Data unlike the specification, downstream of the index: a city folder that is not one of MiniFrance's 16 flows
through the tables and figures and is shown apart; tiles not in Lambert-93 / not at 0.5 m / without georeference
are listed for the data notebook; the evaluation tables and notes name the test set."""

from __future__ import annotations

import json

import pandas as pd

from tmf.data.packed import COUNT_COLUMNS, MANIFEST_COLUMNS
from tmf.data.reader import TILES_COLUMNS
from tmf.evaluate.summary import aggregate_table, summary_table
from tmf.report import tables


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
    ours, other = tables.city_counts(t, m)
    assert len(ours) == 16 and "Toulon" not in set(ours["city"])
    assert ours.set_index("city").loc["Nice", ["tiles here", "sub-tiles here", "labelled sub-tiles"]].tolist() == [1, 2, 2]
    assert other.set_index("city")[["split", "tiles here", "labelled sub-tiles"]].to_dict("index") == {
        "Toulon": {"split": "labeled", "tiles here": 1, "labelled sub-tiles": 2},
        "TestArea_A": {"split": "test", "tiles here": 1, "labelled sub-tiles": 0}}
    off = tables.off_spec_tiles(t)
    assert off.set_index("tile")["off_spec"].to_dict() == {"t1": "1 x 1 m/px", "m1": "CRS EPSG:32631",
                                                          "a1": "no georeference"}
    t2 = pd.read_csv(t)
    t2[t2["minifrance_city"] == 1].to_csv(tmp_path / "only16.csv", index=False)
    assert tables.city_counts(tmp_path / "only16.csv", m)[1] is None


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


def test_evaluation_tables_show_other_cities_apart(tmp_path):
    paths = [_metrics(tmp_path / f"r{s}/metrics.json", {"Toulon": 0.4, "Nice": 0.6}, seed=s) for s in (0, 1)]
    summary = summary_table(paths)
    city_cols = [c for c in summary.columns if c.startswith(("oa_", "miou_"))]
    assert city_cols == ["oa_Nice", "miou_Nice", "oa_Toulon", "miou_Toulon"]  # MiniFrance's first
    ours, other = tables.per_city_tables(aggregate_table(summary))
    assert [c for c in ours.columns if c.endswith("_mean")] == ["oa_Nice_mean", "miou_Nice_mean"]
    assert [c for c in other.columns if c.endswith("_mean")] == ["oa_Toulon_mean", "miou_Toulon_mean"]
    assert (other["test_set"] == "labeled_holdout").all()
    assert tables.per_city_tables(aggregate_table(summary_table(paths[:1])).drop(
        columns=["oa_Toulon_mean", "miou_Toulon_mean", "oa_Toulon_std", "miou_Toulon_std"]))[1] is None


def test_notes_and_headings_name_the_test_set(tmp_path):
    paths = [_metrics(tmp_path / "a/metrics.json", {"Nice": 0.6, "Toulon": 0.4}),
             _metrics(tmp_path / "b/metrics.json", {}, method="oracle", status="skipped")]
    (line,) = tables.test_set_notes(paths)
    assert line.startswith("**Test set: held-out tiles of the labeled cities** (`labeled_holdout`, chosen by "
                           "`evaluate.test_set: auto`: the test cities have no labels)")
    assert "2 held-out tiles in blocks of 5 km" in line
    assert "no published counterpart" in tables.segmentation_heading("labeled_holdout")
    assert "Table 3.1" in tables.segmentation_heading("test_cities")
    agg = aggregate_table(summary_table(paths))
    agg.to_csv(tmp_path / "agg.csv", index=False)
    assert tables.test_sets_of(tmp_path / "agg.csv") == ["labeled_holdout"]
    assert tables.segmentation_comparison(tmp_path / "agg.csv", "minifrance", "test_cities").empty


def test_test_cities_rows_stand_next_to_table_3_1(tmp_path):
    paths = [_metrics(tmp_path / "a/metrics.json", {"Rennes": 0.6}, test_set="test_cities")]
    aggregate_table(summary_table(paths)).to_csv(tmp_path / "agg.csv", index=False)
    table = tables.segmentation_comparison(tmp_path / "agg.csv", "synthetic", "test_cities")
    assert {"OA T3.1", "mIoU T3.1"} <= set(table.columns) and (table["test set"] == "the test cities").all()
    assert table["OA T3.1"].iloc[0] is not None


def test_heatmap_and_legend_labels_mark_other_cities():
    from tmf.appearance.coverage import UNION_TRAIN
    from tmf.appearance.figures import OTHER_CITY_MARK, _label

    assert _label("Toulon") == "Toulon" + OTHER_CITY_MARK
    assert _label("Nantes_Saint-Nazaire") == "Nantes Saint-Nazaire" and _label(UNION_TRAIN) == UNION_TRAIN


def test_coverage_table_of_a_split_without_surfaces(tmp_path):
    """Every city below appearance.min_points (tiny real data): the split scores are null, the table says —."""
    import math

    summary = {"encoder": "random-resnet18", "split_coverage": {
        "labeled_vs_test": {"iou": {"mean": None, "std": None}, "iot": {"mean": None, "std": None}}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    table = tables.coverage_comparison(tmp_path / "summary.json", "dfc2022")
    assert len(table) == 4 and all(math.isnan(v) for v in table["ours mean"])
