"""End to end on data shaped like the public releases, as a researcher holds them (SPEC.md §7): the workflow from
DFC2022's three archives (and its test partition, and a labeled city that is not one of MiniFrance's 16) to
reports/index.html with evaluate.test_set: auto, and a MiniFrance archive without test labels to a report.

Neither release has labels for the test cities, so every score must come from held-out tiles of the labeled cities
and say so; the oracle, which needs the unlabeled cities' labels, is shown as skipped. The archives are written by
tests/public_releases.py (tiny tiles), the study is tests/configs/tiny.yaml's, so each run takes a few minutes on
2 cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_repo, snakemake
from public_releases import make_dfc2022_release, make_minifrance_release

from tmf.data.minifrance import City
from tmf.plan.items import item

pytestmark = pytest.mark.slow

TOULON = City("Toulon", "labeled", 0, "83", 940, 6240)  # a labeled city folder that is not one of the 16
LABELED = {"Nice", "Nantes_Saint-Nazaire", "Toulon"}


def run_public(repo: Path, data: dict, **sections) -> None:
    """The workflow on the tiny study over ``data`` (a data section), as a user runs it: two config files."""
    cfg = {"data": data, "evaluate": {"test_set": "auto", "baselines": ["random", "oracle"], "seeds": [0],
                                      "fractions": [1.0]},
           "appearance": {"encoders": ["random-resnet18"], "seeds": [0], "min_points": 5}, **sections}
    (repo / "public.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(repo, "--cores", "2", "--configfile", "tests/configs/tiny.yaml", "public.yaml")


@pytest.fixture(scope="module")
def dfc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dfc")
    rel = make_dfc2022_release(root / "release", seed=0, tiles_per_city=3, test_partition=True,
                               extra_cities=(TOULON,))
    repo = copy_repo(root / "repo")
    # 16 x 3 + 3 + 9 = 60 tiles, two sub-tiles each
    run_public(repo, {"source": "dfc2022", "url": rel.url()}, subsample={"n_subtiles": 120, "size": 32})
    return repo


def evaluation_metrics(repo: Path) -> dict[str, dict]:
    return {str(p.relative_to(repo)): json.loads(p.read_text())
            for p in sorted((repo / "results/evaluate").rglob("metrics.json"))}


def check_every_score_names_its_test_set(repo: Path) -> None:
    """metrics.json, the tables, the logs and the report of a run without test labels: every score comes from
    held-out tiles of the labeled cities, chosen by auto, and says so; the oracle is skipped, and says why."""
    runs = evaluation_metrics(repo)
    assert runs
    for path, m in runs.items():
        assert m["test_set"] == "labeled_holdout", path
        assert m["test_set_info"]["requested"] == "auto" and "no labels" in m["test_set_info"]["why"], path
        if m["method"] == "oracle":
            assert m["status"] == "skipped" and m["oa"] is None and "unlabeled" in m["reason"], path
        else:
            assert m["status"] == "ok" and m["oa"] is not None, path
            assert set(m["per_city"]) <= LABELED, path
            assert m["test_set_info"]["held_out_tiles"], path
        log = (repo / path.replace("results/", "logs/").replace("/metrics.json", ".log")).read_text()
        assert log.count("evaluate.test_set = auto: the test cities have no labels") == (m["status"] == "ok"), path
    for table in ("summary.csv", "summary_agg.csv"):
        frame = pd.read_csv(repo / "results/evaluate" / table)
        assert (frame["test_set"] == "labeled_holdout").all(), table
        assert frame.loc[frame["method"] == "oracle", "status"].eq("skipped").all(), table
    index = (repo / "reports/index.html").read_text()
    assert "Segmentation on held-out tiles of the labeled cities" in index
    assert "Segmentation on the test cities" not in index  # nothing to put next to Table 3.1
    seg = index[index.index("Segmentation on held-out tiles"):]
    seg = seg[:seg.index("</table>")]
    assert "T3.1" not in seg and "held-out tiles of the labeled cities</td>" in seg and "skipped" in seg
    evaluation = (repo / "reports/notebooks/evaluation.html").read_text()
    test_sets = evaluation[evaluation.rindex(item("test_sets").title):]  # the output, after the code
    assert "held-out tiles of the labeled cities</td>" in test_sets[:test_sets.index("</table>")]


def test_dfc2022_archives_to_a_report_where_every_score_names_its_test_set(dfc: Path):
    tiles = pd.read_csv(dfc / "data/tiles.csv", keep_default_na=False)
    assert len(tiles) == 60 and set(tiles.loc[tiles["minifrance_city"] == 0, "city"]) == {
        "Toulon", "TestArea_A", "TestArea_B", "TestArea_C"}
    check_every_score_names_its_test_set(dfc)
    runs = evaluation_metrics(dfc)
    scored = {c for m in runs.values() if m["status"] == "ok" for c in m["per_city"]}
    assert "Toulon" in scored  # a labeled city that is not one of the 16 is held out and scored like the others
    # maps of the unlabeled test cities (val, and the test partition without georeference): every predicted
    # GeoTIFF has its input tile's CRS, transform and shape, and the evaluation notebook shows a preview per city
    import rasterio

    maps = pd.read_csv(dfc / "results/maps/test/maps.csv", keep_default_na=False)
    assert sorted(maps["image"]) == sorted(tiles.loc[tiles["split"] == "test", "image"])
    for r in maps.itertuples():
        with rasterio.open(dfc / "data/raw/dfc2022" / r.image) as src, \
                rasterio.open(dfc / "results/maps/test" / r.map) as m:
            assert (m.crs, m.transform, m.shape, m.dtypes[0]) == (src.crs, src.transform, src.shape, "uint8"), r.image
    assert set(maps.loc[maps["georeferenced"] == 0, "city"]) == {"TestArea_A", "TestArea_B", "TestArea_C"}
    evaluation = (dfc / "reports/notebooks/evaluation.html").read_text()
    previews = evaluation[evaluation.index('id="map_previews-test"'):]
    assert previews[:previews.index("</section>")].count("<img") == maps["city"].nunique()


def test_other_cities_and_off_spec_tiles_are_shown_apart(dfc: Path):
    data = (dfc / "reports/notebooks/data.html").read_text()
    assert "Cities that are not one of MiniFrance" in data
    for name in ("Toulon", "TestArea_A", "CRS EPSG:32631", "no georeference"):
        assert name in data, name
    evaluation = (dfc / "reports/notebooks/evaluation.html").read_text()
    # the table's heading, after the code that shows it ("MiniFrance's": the HTML may escape the apostrophe)
    other = evaluation[evaluation.rindex(item("per_other_city_scores").title.split("'")[0]):]
    assert "Toulon: OA / mIoU (%)" in other[:other.index("</table>")]
    manifest = pd.read_csv(dfc / "data/tinyminifrance/manifest.csv")
    assert {"Toulon", "TestArea_A"} <= set(manifest["city"])
    coverage = pd.read_csv(dfc / "results/appearance/random-resnet18/coverage_summary.csv")
    assert "Toulon" in set(coverage["train"]) and "TestArea_A" in set(coverage["test"])


def test_minifrance_archive_without_test_labels_to_a_report(tmp_path: Path):
    rel = make_minifrance_release(tmp_path / "release", seed=1, tiles_per_city=2, fmt="tar.gz")
    repo = copy_repo(tmp_path / "repo")
    # the DFC2022 run covers tracking and DVC; this one keeps to what differs: one archive, no DEM, no val/train
    run_public(repo, {"source": "minifrance", "url": rel.url()}, subsample={"n_subtiles": 64, "size": 32},
               tracking={"enabled": False, "dvc": False})
    check_every_score_names_its_test_set(repo)
    assert re.search(r"<title>tmf report</title>", (repo / "reports/index.html").read_text())
