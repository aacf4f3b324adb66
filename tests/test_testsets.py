"""Test sets of the evaluation (tmf.evaluate.testsets, evaluate.test_set): label pools by split, the spatially
blocked hold-out and its seed, no held-out sub-tile in any label pool at any fraction, cross_city both ways, what
auto picks, the oracle skipped on data without its labels, and the test set named in every output."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from test_evaluate import make_tiny, tiny_cfg

from tmf.config import ParamsError, schema
from tmf.data.packed import COUNT_COLUMNS, open_packed, read_manifest
from tmf.evaluate import testsets
from tmf.evaluate.data import MissingLabels, label_pool, nested_fraction, scoreable
from tmf.evaluate.run import run_job
from tmf.evaluate.summary import aggregate_table, summary_table
from tmf.plan.names import AUTO_TEST_SET, TEST_SETS

HOLDOUT = {"fraction": 0.2, "block_km": 5, "seed": 0}


def stem(dept: str, x_km: int, y_km: int) -> str:
    return f"{dept}-2014-{x_km:04d}-{y_km:04d}-LA93-0M50-E080"


def frame_of(tiles: dict[tuple[str, str], list[str]], per_tile: int = 2, test_labels: bool = True,
             unlabeled_labels: bool = True) -> pd.DataFrame:
    """A manifest: ``tiles[(split, city)]`` = its tile names, ``per_tile`` scoreable sub-tiles each."""
    rows = []
    for (split, city), names in tiles.items():
        for tile in names:
            for k in range(per_tile):
                has = int(split == "labeled" or (split == "test" and test_labels)
                          or (split == "unlabeled" and unlabeled_labels))
                counts = dict.fromkeys(COUNT_COLUMNS, 0)
                counts["count_5"] = 100 * has
                rows.append({"id": f"{city}__{tile}__{k}", "city": city, "split": split, "tile": tile,
                             "has_label": has, **counts})
    return pd.DataFrame(rows)


def grid(dept: str, x0: int, y0: int, n: int, step: int = 1) -> list[str]:
    """``n`` tile names on a square grid of ``step`` km from (x0, y0)."""
    m = int(np.ceil(np.sqrt(n)))
    return [stem(dept, x0 + (k % m) * step, y0 - (k // m) * step) for k in range(n)]


@pytest.fixture()
def study():
    """Two labeled MiniFrance cities on 1 km grids of 40 tiles (DFC2022-like), a labeled city that is not one
    of the 16, unlabeled and test cities."""
    return frame_of({
        ("labeled", "Nice"): grid("06", 1030, 6310, 40),
        ("labeled", "Nantes_Saint-Nazaire"): grid("44", 340, 6700, 40),
        ("labeled", "Toulon"): grid("83", 930, 6250, 9),
        ("unlabeled", "Brest"): grid("29", 140, 6845, 4),
        ("test", "Rennes"): grid("35", 345, 6795, 4),
    })


def cfg(test_set: str, **holdout) -> dict:
    return {"test_set": test_set, "holdout": {**HOLDOUT, **holdout}, "max_test_per_city": 0}


# ---------------------------------------------------------------- pools, names, schema
def test_schema_offers_auto_and_every_test_set():
    ev = schema()["properties"]["evaluate"]["properties"]
    assert ev["test_set"]["enum"] == [AUTO_TEST_SET, *TEST_SETS]
    assert ev["test_set"]["default"] == AUTO_TEST_SET


def test_label_pools_follow_the_split_so_other_cities_count(study):
    cities = study["city"].to_numpy()
    assert set(cities[label_pool(study, "labeled")]) == {"Nice", "Nantes_Saint-Nazaire", "Toulon"}
    assert set(cities[label_pool(study, "oracle")]) == {"Nice", "Nantes_Saint-Nazaire", "Toulon", "Brest"}
    no_unlabeled = frame_of({("labeled", "Nice"): ["a", "b"], ("unlabeled", "Brest"): ["c"]}, unlabeled_labels=False)
    with pytest.raises(MissingLabels, match=r"oracle.*\['Brest'\]"):
        label_pool(no_unlabeled, "oracle")


def test_tile_blocks_come_from_the_bd_ortho_names():
    assert testsets.tile_block(stem("06", 1041, 6304), 5) == "x208_y1260"
    assert testsets.tile_block(stem("06", 1044, 6303), 5) == "x208_y1260"  # the same 5 km block
    assert testsets.tile_block(stem("06", 1045, 6304), 5) == "x209_y1260"
    assert testsets.tile_block("2A-2013-1180-6130-LA93-0M50-E080", 10) == "x118_y613"  # Corsica's départements
    assert testsets.tile_block("TestArea_A-0", 5) == "tile:TestArea_A-0"  # no coordinates: a block of its own


# ---------------------------------------------------------------- the hold-out
def test_holdout_holds_out_whole_blocks_per_city_seeded(study):
    held = testsets.holdout_tiles(study, HOLDOUT)
    by_city = {}
    for city, tile in held:
        by_city.setdefault(city, set()).add(tile)
    assert set(by_city) == {"Nice", "Nantes_Saint-Nazaire", "Toulon"}
    for city, tiles in by_city.items():
        names = set(study.loc[(study["city"] == city), "tile"])
        blocks = {t: testsets.tile_block(t, 5) for t in names}
        if len(set(blocks.values())) < 2:
            blocks = {t: t for t in names}  # one block: tile by tile
        held_blocks = {blocks[t] for t in tiles}
        # whole blocks: a block is either held out entirely or not at all; never every block
        assert {t for t in names if blocks[t] in held_blocks} == tiles, city
        assert held_blocks != set(blocks.values()), city
        share = len(tiles) / len(names)  # sub-tiles per tile are equal here
        assert share >= 0.2, (city, share)
    # deterministic; another seed draws other blocks; a city's draw does not depend on the other cities
    assert testsets.holdout_tiles(study, HOLDOUT) == held
    assert testsets.holdout_tiles(study, {**HOLDOUT, "seed": 1}) != held
    nice_only = study[study["city"] == "Nice"]
    assert testsets.holdout_tiles(nice_only, HOLDOUT) == [p for p in held if p[0] == "Nice"]


def test_holdout_blocks_are_spatial(study):
    """With 1 km tiles and 5 km blocks, every held-out block is a 5 x 5 km square: its tiles' coordinates agree
    on x // 5 and y // 5, and no kept tile lies in a held-out square."""
    held = testsets.holdout_tiles(study, HOLDOUT)
    nice = {t for c, t in held if c == "Nice"}
    squares = {testsets.tile_block(t, 5) for t in nice}
    kept = set(study.loc[study["city"] == "Nice", "tile"]) - nice
    assert squares and not {testsets.tile_block(t, 5) for t in kept} & squares


def test_holdout_falls_back_to_tiles_and_skips_single_tile_cities(caplog):
    one_block = frame_of({("labeled", "Nice"): grid("06", 1041, 6304, 4),  # 2 x 2 km in one 5 km block
                          ("labeled", "Toulon"): ["83-2014-0930-6250-LA93-0M50-E080"]})
    with caplog.at_level(logging.WARNING):
        held = testsets.holdout_tiles(one_block, HOLDOUT)
    assert len(held) == 1 and held[0][0] == "Nice"  # one tile of four (>= 20 %), whole tiles
    assert "Toulon has a single labeled tile" in caplog.text
    single = frame_of({("labeled", "Nice"): ["a"], ("labeled", "Nantes_Saint-Nazaire"): ["b"]})
    with pytest.raises(ParamsError, match="evaluate.test_set = labeled_holdout: no tile can be held out"):
        testsets.build(single, cfg("labeled_holdout"), "supervised")


@pytest.mark.parametrize("method", ["supervised", "oracle"])
def test_no_held_out_sub_tile_enters_a_label_pool_at_any_fraction(study, method):
    ts = testsets.build(study, cfg("labeled_holdout"), method)
    assert ts.name == "labeled_holdout" and len(ts.folds) == 1
    fold = ts.folds[0]
    held = set(ts.held_out)
    key = (study["city"] + "/" + study["tile"]).to_numpy()
    held_rows = {i for i in range(len(study)) if key[i] in held}
    assert set(fold.test) == held_rows & set(np.flatnonzero(scoreable(study)))  # scored: exactly the held-out
    assert not set(fold.train) & held_rows
    for seed in range(5):
        for fraction in (0.001, 0.01, 0.1, 0.5, 1.0):
            assert not set(nested_fraction(fold.train, fraction, seed)) & held_rows, (seed, fraction)
    # nothing else is lost: the pool is every labeled (or oracle) sub-tile outside the held-out tiles
    assert set(fold.train) == set(label_pool(study, "oracle" if method == "oracle" else "labeled")) - held_rows


# ---------------------------------------------------------------- cross_city and auto
def test_cross_city_trains_on_one_labeled_city_and_scores_the_other_both_ways():
    two = frame_of({("labeled", "Nice"): ["a", "b"], ("labeled", "Nantes_Saint-Nazaire"): ["c", "d", "e"],
                    ("unlabeled", "Brest"): ["f"], ("test", "Rennes"): ["g"]})
    cities = two["city"].to_numpy()
    for method, extra in (("supervised", set()), ("oracle", {"Brest"})):
        ts = testsets.build(two, cfg("cross_city"), method)
        assert [f.name for f in ts.folds] == ["Nantes_Saint-Nazaire → Nice", "Nice → Nantes_Saint-Nazaire"]
        (a, b) = ts.folds
        assert set(cities[a.test]) == {"Nice"} and set(cities[a.train]) == {"Nantes_Saint-Nazaire"} | extra
        assert set(cities[b.test]) == {"Nantes_Saint-Nazaire"} and set(cities[b.train]) == {"Nice"} | extra
        assert not set(a.test) & set(b.test)
        assert set(a.test) | set(b.test) == set(np.flatnonzero(two["split"].to_numpy() == "labeled"))
    with pytest.raises(ParamsError, match="cross_city needs two labeled cities"):
        testsets.build(two[two["city"] != "Nice"], cfg("cross_city"), "supervised")


def test_auto_picks_the_test_cities_when_they_have_labels_else_the_holdout(study):
    assert testsets.resolve(study, "auto") == ("test_cities", "the test cities have labels")
    public = frame_of({("labeled", "Nice"): grid("06", 1030, 6310, 10), ("test", "Rennes"): ["r"]},
                      test_labels=False)
    name, why = testsets.resolve(public, "auto")
    assert name == "labeled_holdout" and "no labels" in why
    assert testsets.build(public, cfg("auto"), "supervised").name == "labeled_holdout"
    assert "evaluate.test_set = auto: the test cities have no labels" in testsets.describe(
        testsets.build(public, cfg("auto"), "supervised"), public)
    with pytest.raises(ParamsError, match="evaluate.test_set = test_cities, but no test city has a labeled"):
        testsets.build(public, cfg("test_cities"), "supervised")


# ---------------------------------------------------------------- jobs and their outputs
@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """A packed set like the public releases: labels only in the labeled split; Nice and Nantes with six tiles
    each (one sub-tile per tile, 1 km apart)."""
    root = tmp_path_factory.mktemp("public")
    manifest, packed = make_tiny(root, per_city=6, unlabeled_has_labels=False)
    m = read_manifest(manifest)
    for city, (dept, x, y) in {"Nice": ("06", 1030, 6310), "Nantes_Saint-Nazaire": ("44", 340, 6700)}.items():
        rows = np.flatnonzero(m["city"] == city)
        m.loc[rows, "tile"] = grid(dept, x, y, len(rows), step=3)
    test = m["split"] == "test"
    m.loc[test, "has_label"] = 0
    m.loc[test, COUNT_COLUMNS] = 0
    m.to_csv(manifest, index=False)
    labels = np.load(packed / "labels.npy")
    labels[test.to_numpy()] = 0
    np.save(packed / "labels.npy", labels)
    return manifest, packed


def _job(data, tmp_path, protocol, method, name, **over):
    out = tmp_path / name
    return run_job(protocol, method, 1.0, 0, data[0], data[1], None, out, tiny_cfg(**over), device="cpu",
                   threads=1), out


def test_auto_on_public_data_scores_held_out_tiles_and_says_so(public, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tmf.evaluate.run"):
        m, out = _job(public, tmp_path, "finetune", "supervised", "auto")
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["test_set"] == "labeled_holdout"
    info = on_disk["test_set_info"]
    assert info["requested"] == "auto" and "no labels" in info["why"]
    assert set(on_disk["per_city"]) == set(info["scored_cities"]) == {"Nice", "Nantes_Saint-Nazaire"}
    frame = open_packed(*public).manifest
    in_held = (frame["city"] + "/" + frame["tile"]).isin(info["held_out_tiles"])
    assert on_disk["n_test"] == in_held.sum() and on_disk["n_train"] == 12 - on_disk["n_test"]
    assert sum(1 for r in caplog.records if "evaluate.test_set = auto" in r.getMessage()) == 1


def test_cross_city_job_pools_both_directions(public, tmp_path):
    m, _ = _job(public, tmp_path, "linear", "random", "cross", test_set="cross_city")
    assert m["test_set"] == "cross_city" and set(m["per_city"]) == {"Nice", "Nantes_Saint-Nazaire"}
    assert [f["name"] for f in m["folds"]] == ["Nantes_Saint-Nazaire → Nice", "Nice → Nantes_Saint-Nazaire"]
    assert m["n_train"] == m["n_test"] == 12 and [f["n_train"] for f in m["folds"]] == [6, 6]
    cm = np.asarray(m["confusion"])
    assert cm.sum() == sum(c["n_pixels"] for c in m["per_city"].values())


def test_oracle_on_public_data_is_skipped_and_shown_as_skipped(public, tmp_path):
    from tmf.report.items import Context
    from tmf.report.scores import segmentation_vs_published

    ok, _ = _job(public, tmp_path, "finetune", "supervised", "sup")
    m, out = _job(public, tmp_path, "finetune", "oracle", "oracle")
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["status"] == "skipped" and "LeMans" in on_disk["reason"] and on_disk["oa"] is None
    assert on_disk["test_set"] == "labeled_holdout"
    assert (out / "predictions.png").stat().st_size > 0
    summary = summary_table([tmp_path / "sup/metrics.json", out / "metrics.json"])
    assert summary.set_index("method")["status"].to_dict() == {"supervised": "ok", "oracle": "skipped"}
    agg = aggregate_table(summary).set_index("method")
    assert agg.loc["oracle", "status"] == "skipped" and agg.loc["oracle", "n_seeds"] == 0
    assert agg.loc["supervised", "test_set"] == "labeled_holdout"
    agg.reset_index().to_csv(tmp_path / "agg.csv", index=False)
    table = segmentation_vs_published(Context({"aggregate": tmp_path / "agg.csv"})).set_index("method")
    assert table.loc["oracle", "OA (%)"] == "skipped" and "Table 3.1" not in " ".join(table.columns)
    assert (table["test set"] == "held-out tiles of the labeled cities").all()


def test_cli_tags_the_run_with_the_test_set(public, tmp_path):
    """The job's MLflow run (args.run, handed over by tmf.cli) gets the test set auto chose as param and tag."""
    from types import SimpleNamespace

    from tmf.evaluate.cli import _evaluate

    class Run:
        params, tags, metrics = {}, {}, {}

        def log_params(self, p):
            self.params.update(p)

        def log_metrics(self, m, step=None):
            self.metrics.update(m)

        def set_tags(self, t):
            self.tags.update(t)

    run = Run()
    args = SimpleNamespace(protocol="knn", method="random", fraction=1.0, seed=0, manifest=str(public[0]),
                           packed=str(public[1]), encoder="none", out=str(tmp_path / "o"), device="cpu", threads=1,
                           cfg=json.dumps({"knn": {"k": 3}, "eval_batch": 16}), params=None, run=run,
                           save_model=None)
    assert _evaluate(args) == 0
    assert run.params == {"test_set": "labeled_holdout"} and run.tags["test_set"] == "labeled_holdout"
    assert "oa" in run.metrics and "test_set" not in run.metrics  # scores are metrics, the test set is not
