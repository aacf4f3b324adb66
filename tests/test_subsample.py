"""tinyMiniFrance subsampling (SPEC.md §2): quotas, coverage, grid, determinism, crops, counts, packing."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine

from tmf.config import ParamsError
from tmf.data.minifrance import CITY_BY_NAME, CITY_NAMES, N_CLASSES
from tmf.data.reader import index_tiles
from tmf.data.subsample import (
    COUNT_COLUMNS,
    MANIFEST_COLUMNS,
    largest_remainder,
    pack,
    read_manifest,
    select_subtiles,
    write_tinyminifrance,
)
from tmf.data.synthetic import generate_synthetic


def _tiles(counts: dict[str, int], size=100) -> pd.DataFrame:
    rows = []
    for city, n in counts.items():
        c = CITY_BY_NAME[city]
        for k in range(n):
            stem = f"{c.dept}-2013-{k:04d}-6000-LA93-0M50-E080"
            rows.append({"city": city, "split": c.split, "tile": stem,
                         "image": f"{c.split}/{city}/BDORTHO/{stem}.tif",
                         "label": f"{c.split}/{city}/UrbanAtlas/{stem}_UA2012.tif" if c.split != "unlabeled" else "",
                         "height": size, "width": size, "crs": "EPSG:2154", "x_res": 0.5})
    return pd.DataFrame(rows)


def test_largest_remainder_hand_worked():
    # 10 over three equal weights: 3.33 each -> floors 3,3,3, one left for the first largest remainder
    assert largest_remainder(np.array([1, 1, 1]), 10).tolist() == [4, 3, 3]
    # 7 x (5, 3, 2)/10 = 3.5, 2.1, 1.4 -> floors 3, 2, 1; remainders .5 .1 .4 -> the first gets the extra
    assert largest_remainder(np.array([5, 3, 2]), 7).tolist() == [4, 2, 1]
    # exact proportions need no rounding
    assert largest_remainder(np.array([2, 6]), 8).tolist() == [2, 6]
    q = largest_remainder(np.array([170, 226, 107, 88]), 1000)
    assert q.sum() == 1000 and np.all(np.abs(q - 1000 * np.array([170, 226, 107, 88]) / 591) < 1)


def test_quotas_coverage_and_grid():
    counts = {"Nice": 5, "Nantes_Saint-Nazaire": 3, "Brest": 2, "Cherbourg": 1}
    tiles = _tiles(counts, size=100)
    m = select_subtiles(tiles, n_subtiles=40, size=20, seed=1)
    assert list(m.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert len(m) == 40 and m["id"].is_unique
    # quotas: 40 x (5, 3, 2, 1)/11 = 18.18, 10.91, 7.27, 3.64 -> floors 18, 10, 7, 3 (38);
    # the 2 largest remainders (.91, .64) go to Nantes and Cherbourg
    assert m.groupby("city").size().to_dict() == {"Nice": 18, "Nantes_Saint-Nazaire": 11, "Brest": 7,
                                                  "Cherbourg": 4}
    # every tile gives at least one sub-tile
    assert set(m["tile"] + m["city"]) == set(tiles["tile"] + tiles["city"])
    # windows on the non-overlapping 20 px grid, inside the tile
    assert ((m["row_off"] % 20 == 0) & (m["col_off"] % 20 == 0)).all()
    assert ((m["row_off"] + m["height"] <= 100) & (m["col_off"] + m["width"] <= 100)).all()
    assert not m.duplicated(["city", "tile", "row_off", "col_off"]).any()
    # sorted by split, city order, tile, row, col; paths follow docs/file-formats.md
    split_rank = m["split"].map({"labeled": 0, "unlabeled": 1, "test": 2})
    assert split_rank.is_monotonic_increasing
    r = m.iloc[0]
    assert r["id"] == f"{r['city']}__{r['tile']}__r{r['row_off']}_c{r['col_off']}"
    assert r["image"] == f"labeled/{r['city']}/BDORTHO/{r['id']}.tif"
    assert (m.loc[m["city"] == "Brest", "label"] == "").all() and (m.loc[m["city"] == "Brest", "has_label"] == 0).all()


def test_errors_name_the_parameter():
    tiles = _tiles({"Nice": 3, "Brest": 2}, size=100)
    with pytest.raises(ParamsError, match="subsample.n_subtiles"):
        select_subtiles(tiles, n_subtiles=4, size=20, seed=0)
    with pytest.raises(ParamsError, match="subsample.size"):
        select_subtiles(tiles, n_subtiles=10, size=101, seed=0)
    with pytest.raises(ParamsError, match="subsample.n_subtiles"):  # more than the 3 x 25 windows of Nice
        select_subtiles(tiles, n_subtiles=200, size=20, seed=0)


def test_deterministic_and_seed_dependent():
    tiles = _tiles({"Nice": 4, "Rennes": 3, "Caen": 2}, size=100)
    a = select_subtiles(tiles, 60, 10, seed=5)
    b = select_subtiles(tiles.sample(frac=1, random_state=0), 60, 10, seed=5)  # row order of the index is moot
    pd.testing.assert_frame_equal(a, b)
    c = select_subtiles(tiles, 60, 10, seed=6)
    assert not a[["tile", "row_off", "col_off"]].equals(c[["tile", "row_off", "col_off"]])


def test_a_city_draw_depends_only_on_seed_city_and_quota():
    tiles = _tiles({"Nice": 4, "Rennes": 3, "Caen": 2}, size=100)
    full = select_subtiles(tiles, 45, 10, seed=2)
    nice = full[full["city"] == "Nice"].reset_index(drop=True)
    alone = select_subtiles(tiles[tiles["city"] == "Nice"], len(nice), 10, seed=2)
    pd.testing.assert_frame_equal(nice, alone)


def test_draw_is_uniform_over_windows():
    """Beyond the first window of each tile the rest are uniform: over many seeds every grid cell of a tile is
    drawn about equally often."""
    tiles = _tiles({"Nice": 2}, size=40)  # 4 windows of 20 px per tile
    hits = np.zeros(8)
    for seed in range(200):
        m = select_subtiles(tiles, 4, 20, seed)
        for r in m.itertuples():
            hits[(r.tile.endswith("0001-6000-LA93-0M50-E080")) * 4 + (r.row_off // 20) * 2 + r.col_off // 20] += 1
    assert hits.sum() == 800 and np.all(np.abs(hits / 100 - 1) < 0.25), hits  # p = 1/4 + 3/4 * 2/6


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    generate_synthetic(root, seed=1, tile_scale=0.005, min_tiles=1, tile_size=64)
    # one unlabeled tile without its label (as in the real unlabeled cities)
    lab = next((root / "unlabeled" / "Brest" / "UrbanAtlas").glob("*.tif"))
    lab.unlink()
    return root, index_tiles(root)


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_write_crops_counts_and_manifest(raw, tmp_path):
    root, tiles = raw
    m = select_subtiles(tiles, 3 * len(tiles), 16, seed=0)
    out = write_tinyminifrance(m, root, tmp_path / "a", workers=1)
    man = read_manifest(tmp_path / "a" / "manifest.csv")
    assert list(man.columns) == MANIFEST_COLUMNS and len(man) == len(m)
    labeled = man["has_label"] == 1
    assert (man.loc[labeled, COUNT_COLUMNS].sum(axis=1) == 16 * 16).all()
    assert (man.loc[~labeled, COUNT_COLUMNS].sum(axis=1) == 0).all()
    assert (~labeled).sum() >= 1 and (man.loc[~labeled, "label"] == "").all()
    assert (man[["count_8", "count_9"]] == 0).all().all()
    # crops: the pixels of the source window, georeferenced at the window
    for r in out.sample(10, random_state=0).itertuples():
        with rasterio.open(root / r.source_image) as src, rasterio.open(tmp_path / "a" / r.image) as crop:
            win = rasterio.windows.Window(r.col_off, r.row_off, r.width, r.height)
            np.testing.assert_array_equal(crop.read(), src.read(window=win))
            expected = src.transform @ Affine.translation(r.col_off, r.row_off)
            assert crop.transform.almost_equals(expected)
            assert crop.transform.c == src.transform.c + 0.5 * r.col_off
            assert crop.transform.f == src.transform.f - 0.5 * r.row_off
            assert crop.crs == src.crs
        if r.has_label:
            with rasterio.open(tmp_path / "a" / r.label) as lab:
                counts = np.bincount(lab.read(1).ravel(), minlength=N_CLASSES)
            assert counts.tolist() == [getattr(r, f"count_{i}") for i in range(N_CLASSES)]
    shares = pd.read_csv(tmp_path / "a" / "class_shares.csv")
    assert list(shares.columns) == ["id", "name", "share_ours", "share_table_2_5", "share_table_2_6"]
    assert len(shares) == N_CLASSES and abs(shares["share_ours"].iloc[1:].sum() - 100) < 1e-2

    # byte-identical manifest with the same seed (even with another number of workers), another one otherwise
    write_tinyminifrance(m, root, tmp_path / "b", workers=2)
    assert _sha(tmp_path / "a" / "manifest.csv") == _sha(tmp_path / "b" / "manifest.csv")
    m2 = select_subtiles(tiles, 3 * len(tiles), 16, seed=1)
    write_tinyminifrance(m2, root, tmp_path / "c", workers=1)
    assert _sha(tmp_path / "a" / "manifest.csv") != _sha(tmp_path / "c" / "manifest.csv")

    # packed arrays in manifest order
    images, labels = pack(tmp_path / "a" / "manifest.csv", tmp_path / "a" / "packed", workers=2)
    one = pack(tmp_path / "a" / "manifest.csv", tmp_path / "a" / "packed1", workers=1)
    assert _sha(images) == _sha(one[0]) and _sha(labels) == _sha(one[1])
    x = np.load(images, mmap_mode="r")
    y = np.load(labels, mmap_mode="r")
    assert x.shape == (len(man), 16, 16, 3) and x.dtype == np.uint8
    assert y.shape == (len(man), 16, 16) and y.dtype == np.uint8
    for i in (0, len(man) // 2, len(man) - 1):
        r = man.iloc[i]
        with rasterio.open(tmp_path / "a" / r["image"]) as src:
            np.testing.assert_array_equal(x[i], np.moveaxis(src.read(), 0, -1))
        if r["has_label"]:
            np.testing.assert_array_equal(np.bincount(y[i].ravel(), minlength=N_CLASSES),
                                          r[COUNT_COLUMNS].to_numpy(dtype=np.int64))
    assert (y[np.flatnonzero(~labeled.to_numpy())] == 0).all()


def test_every_city_present_in_generated_index(raw):
    _, tiles = raw
    assert set(tiles["city"]) == set(CITY_NAMES)


def test_cli_generate_index_subsample_pack(tmp_path):
    from tmf.cli import main

    raw, tiny = tmp_path / "raw", tmp_path / "tiny"
    syn = '{"synthetic": {"seed": 2, "tile_scale": 0.005, "min_tiles": 1, "tile_size": 64}}'
    assert main(["generate", "--out", str(raw), "--cfg", syn]) == 0
    assert main(["index", "--root", str(raw), "--out", str(tmp_path / "tiles.csv")]) == 0
    tiles = pd.read_csv(tmp_path / "tiles.csv")
    assert len(tiles) == 16
    sub = '{"n_subtiles": 40, "size": 32, "seed": 0}'
    assert main(["subsample", "--tiles", str(tmp_path / "tiles.csv"), "--root", str(raw), "--out", str(tiny),
                 "--workers", "2", "--cfg", sub]) == 0
    assert main(["pack", "--manifest", str(tiny / "manifest.csv"), "--out", str(tiny / "packed"),
                 "--workers", "2"]) == 0
    assert np.load(tiny / "packed" / "images.npy", mmap_mode="r").shape == (40, 32, 32, 3)
    assert main(["subsample", "--tiles", str(tmp_path / "tiles.csv"), "--root", str(raw), "--out", str(tiny),
                 "--cfg", '{"n_subtiles": 10, "size": 32}']) == 2  # fewer sub-tiles than tiles


def test_other_cities_get_quotas_from_their_tiles():
    """A city folder that is not one of the 16 is a city like the others: quota proportional to its tiles,
    sorted after the 16 (then by name)."""
    tiles = _tiles({"Nice": 2, "Brest": 1}, size=100)
    extra = tiles.iloc[[0, 0, 0, 0]].assign(city=["Paris", "Paris", "Aachen", "Paris"], split="test",
                                            tile=["p0", "p1", "a0", "p2"])
    m = select_subtiles(pd.concat([tiles, extra], ignore_index=True), 14, 20, seed=0)
    # 14 x (2, 1, 1, 3) / 7 = 4, 2, 2, 6
    assert m.groupby("city", sort=False).size().to_dict() == {"Nice": 4, "Brest": 2, "Aachen": 2, "Paris": 6}
    assert set(m.loc[m["city"] == "Paris", "tile"]) == {"p0", "p1", "p2"}
    assert m.loc[m["city"] == "Paris", "image"].str.startswith("test/Paris/BDORTHO/").all()


def test_dfc2022_release_fetch_index_subsample(tmp_path):
    """The three DFC2022 archives (and the ungeoreferenced test partition) fetched as a list with MD5s,
    indexed and subsampled: every city gets sub-tiles, labels only in labeled_train, crops keep their CRS."""
    from public_releases import make_dfc2022_release

    from tmf.data.sources import fetch

    rel = make_dfc2022_release(tmp_path / "rel", seed=3, test_partition=True)
    raw = fetch(rel.url(), tmp_path / "raw")
    tiles = index_tiles(raw, workers=2)
    assert len(tiles) == sum(rel.tiles.values()) == 38 and tiles["dem"].ne("").all()
    assert tiles.groupby("split").size().to_dict() == {"labeled": 4, "unlabeled": 12, "test": 22}
    assert (tiles["label"] != "").tolist() == (tiles["split"] == "labeled").tolist()
    assert tiles["minifrance_city"].sum() == 32 and (tiles["georeferenced"] == 0).sum() == 6
    m = select_subtiles(tiles, 2 * len(tiles), 32, seed=0)
    out = write_tinyminifrance(m, raw, tmp_path / "tiny", workers=2)
    assert set(out["city"]) == set(tiles["city"]) and len(out) == 76
    labeled = out["has_label"] == 1
    assert labeled.tolist() == (out["split"] == "labeled").tolist()
    assert (out.loc[labeled, COUNT_COLUMNS].sum(axis=1) == 32 * 32).all()
    for city, crs in [("Marseille_Martigues", {"EPSG:2154", "EPSG:32631"}), ("TestArea_A", {None})]:
        found = set()
        for r in out[out["city"] == city].itertuples():
            with rasterio.open(tmp_path / "tiny" / r.image) as src:
                found.add(src.crs.to_string() if src.crs else None)
        assert found == crs, city


def test_minifrance_release_without_test_labels_through_the_cli(tmp_path):
    from public_releases import make_minifrance_release

    from tmf.cli import main

    rel = make_minifrance_release(tmp_path / "rel", seed=1, fmt="tar.gz")
    raw, tiny = tmp_path / "raw", tmp_path / "tiny"
    url = json.dumps({"source": "minifrance", "url": rel.url()})
    assert main(["fetch", "--out", str(raw), "--cfg", url]) == 0
    assert main(["index", "--root", str(raw), "--out", str(tmp_path / "tiles.csv"), "--workers", "2"]) == 0
    assert main(["subsample", "--tiles", str(tmp_path / "tiles.csv"), "--root", str(raw), "--out", str(tiny),
                 "--cfg", '{"n_subtiles": 64, "size": 32, "seed": 0}']) == 0
    man = read_manifest(tiny / "manifest.csv")
    assert len(man) == 64 and man["city"].nunique() == 16
    assert man.groupby("split")["has_label"].sum().to_dict() == {"labeled": (man["split"] == "labeled").sum(),
                                                               "test": 0, "unlabeled": 0}
