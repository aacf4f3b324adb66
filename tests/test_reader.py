"""Tile index and checks (tmf.data.reader, tmf.data.checks): both layouts, RGEALTI elevation, data unlike the
specification (other cities, CRSs, resolutions, DFC2022's ungeoreferenced test partition), and every broken
file (truncated, looping link, missing label, bad DEM) named in its error."""

from __future__ import annotations

import json
import logging
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tmf.data.checks import check_label
from tmf.data.reader import TILES_COLUMNS, index_tiles, read_tiles_csv, read_window

STEM = "06-2014-1040-6300-LA93-0M50-E080"
T = Affine(0.5, 0.0, 1040000.0, 0.0, -0.5, 6300000.0)


def _write(path, arr, transform=T, crs="EPSG:2154", dtype=None, **opts):
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = arr[None] if arr.ndim == 2 else arr
    prof = dict(driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0],
                dtype=dtype or bands.dtype.name, **opts)
    if transform is not None:
        prof["transform"] = transform
    if crs:
        prof["crs"] = CRS.from_string(crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(bands.astype(prof["dtype"]))
    return path


def _tile(root, split="labeled", city="Nice", stem=STEM, size=48, label=True, seed=0):
    rng = np.random.default_rng(seed)
    base = root / split / city
    img = _write(base / "BDORTHO" / f"{stem}.tif", rng.integers(0, 256, (3, size, size), dtype=np.uint8))
    lab = None
    if label:
        lab = _write(base / "UrbanAtlas" / f"{stem}_UA2012.tif", rng.integers(0, 16, (size, size), dtype=np.uint8))
    return img, lab


def test_index_both_layouts_and_missing_labels(tmp_path):
    mf = tmp_path / "mf"
    _tile(mf, "labeled", "Nice")
    _tile(mf, "labeled", "Nice", stem="06-2014-1041-6300-LA93-0M50-E080")
    _tile(mf, "unlabeled", "Brest", stem="29-2013-0145-6840-LA93-0M50-E080", label=False)
    _tile(mf, "test", "Cherbourg", stem="50-2012-0365-6965-LA93-0M50-E080")
    df = index_tiles(mf)
    assert list(df.columns) == TILES_COLUMNS
    assert list(df["city"]) == ["Nice", "Nice", "Brest", "Cherbourg"]  # split order, then city, then tile
    assert list(df["split"]) == ["labeled", "labeled", "unlabeled", "test"]
    assert df.loc[2, "label"] == ""
    assert df.loc[0, "image"] == f"labeled/Nice/BDORTHO/{STEM}.tif"
    assert df.loc[0, "label"] == f"labeled/Nice/UrbanAtlas/{STEM}_UA2012.tif"
    assert (df["crs"] == "EPSG:2154").all() and (df["x_res"] == 0.5).all()
    assert (df["height"] == 48).all() and (df["width"] == 48).all()

    assert list(df["dem"]) == [""] * 4 and (df["minifrance_city"] == 1).all() and (df["off_spec"] == "").all()

    # DFC2022: labeled_train / unlabeled_train / val folders; an RGEALTI file of no tile is not read
    dfc = tmp_path / "dfc"
    _tile(dfc, "labeled_train", "Nantes_Saint-Nazaire", stem="44-2013-0350-6690-LA93-0M50-E080")
    _tile(dfc, "unlabeled_train", "Caen", stem="14-2012-0455-6905-LA93-0M50-E080", label=False)
    _tile(dfc, "val", "Rennes", stem="35-2012-0350-6790-LA93-0M50-E080", label=False)
    _write(dfc / "labeled_train" / "Nantes_Saint-Nazaire" / "RGEALTI" / "x_RGEALTI.tif",
           np.full((24, 24), -99999.0, dtype=np.float32))
    df = index_tiles(dfc)
    assert list(df["split"]) == ["labeled", "unlabeled", "test"]
    assert list(df["label"] != "") == [True, False, False]


def test_unknown_split_or_misplaced_city_is_named(tmp_path):
    other = tmp_path / "o"
    _tile(other, "training", "Nice")
    with pytest.raises(ValueError, match="training"):
        index_tiles(other)
    wrong = tmp_path / "w"
    _tile(wrong, "test", "Nice")  # Nice is a labeled city (Table 2.4)
    with pytest.raises(ValueError, match="Nice"):
        index_tiles(wrong)


def test_other_city_is_its_own_city_with_a_warning(tmp_path, caplog):
    _tile(tmp_path, "labeled", "Nice")
    _tile(tmp_path, "labeled", "Paris", stem="75-2020-0650-6860-LA93-0M50-E080")
    _tile(tmp_path, "unlabeled", "Aachen", stem="aachen-1", label=False)
    _tile(tmp_path, "unlabeled", "Brest", stem="29-2013-0145-6840-LA93-0M50-E080", label=False)
    df = index_tiles(tmp_path)
    assert list(df["city"]) == ["Nice", "Paris", "Brest", "Aachen"]  # the 16 in Table 2.4 order, then by name
    assert list(df["minifrance_city"]) == [1, 0, 1, 0]
    assert list(df["split"]) == ["labeled", "labeled", "unlabeled", "unlabeled"]
    warned = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Paris is not one of MiniFrance's 16 cities" in m for m in warned)
    assert any("Aachen" in m and "'unlabeled'" in m for m in warned)


def test_unreadable_file_is_named(tmp_path):
    img, _ = _tile(tmp_path)
    img.write_bytes(b"this is not a tiff")
    with pytest.raises(ValueError, match=str(img)):
        index_tiles(tmp_path)


def test_missing_crs_is_named(tmp_path):
    img, lab = _tile(tmp_path)
    _write(img, np.zeros((3, 48, 48), dtype=np.uint8), crs=None)
    with pytest.raises(ValueError, match=f"{img}.*CRS"):
        index_tiles(tmp_path)
    root2 = tmp_path / "b"
    img, lab = _tile(root2)
    _write(lab, np.zeros((48, 48), dtype=np.uint8), crs=None)
    with pytest.raises(ValueError, match=f"{lab}.*CRS"):
        index_tiles(root2)


@pytest.mark.parametrize("bands,dtype,what", [(1, "uint8", "band"), (4, "uint8", "band"), (3, "uint16", "dtype")])
def test_wrong_image_bands_or_dtype_named(tmp_path, bands, dtype, what):
    img, _ = _tile(tmp_path)
    _write(img, np.zeros((bands, 48, 48)), dtype=dtype)
    with pytest.raises(ValueError, match=f"{img}.*{what}"):
        index_tiles(tmp_path)


def test_wrong_label_bands_or_dtype_named(tmp_path):
    _, lab = _tile(tmp_path)
    _write(lab, np.zeros((3, 48, 48)), dtype="uint8")
    with pytest.raises(ValueError, match=f"{lab}.*band"):
        index_tiles(tmp_path)
    _write(lab, np.zeros((48, 48)), dtype="int16")
    with pytest.raises(ValueError, match=f"{lab}.*dtype"):
        index_tiles(tmp_path)


def test_label_id_above_15_is_found_block_by_block(tmp_path, monkeypatch):
    _, lab = _tile(tmp_path, size=64)
    arr = np.full((64, 64), 7, dtype=np.uint8)
    arr[50, 3] = 16  # in the last row block
    _write(lab, arr, tiled=True, blockxsize=16, blockysize=16)
    import tmf.data.checks as checks

    monkeypatch.setattr(checks, "ROWS_PER_READ", 20)  # several windowed reads, aligned to the 16-row blocks
    reads = []
    orig = rasterio.io.DatasetReader.read

    def spy(self, *a, **k):
        reads.append(k.get("window"))
        return orig(self, *a, **k)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    with pytest.raises(ValueError, match=f"{lab}.*label id 16"):
        check_label(lab)
    assert len(reads) == 4 and all(w is not None and w.height == 16 and w.row_off % 16 == 0 for w in reads)


@pytest.mark.parametrize("change", ["shape", "transform", "crs"])
def test_image_label_grid_mismatch_named(tmp_path, change):
    img, lab = _tile(tmp_path)
    arr = np.zeros((48, 48), dtype=np.uint8)
    if change == "shape":
        _write(lab, np.zeros((40, 48), dtype=np.uint8))
    elif change == "transform":
        _write(lab, arr, transform=Affine(0.5, 0.0, 1040010.0, 0.0, -0.5, 6300000.0))
    else:
        _write(lab, arr, crs="EPSG:32631")
    word = {"shape": "shape", "transform": "geotransform", "crs": "CRS"}[change]
    with pytest.raises(ValueError, match=f"{lab}.*{word}.*{img}"):
        index_tiles(tmp_path)


def test_read_window(tmp_path):
    img, lab = _tile(tmp_path)
    with rasterio.open(img) as src:
        full = np.moveaxis(src.read(), 0, -1)
    with rasterio.open(lab) as src:
        full_lab = src.read(1)
    np.testing.assert_array_equal(read_window(img, 8, 16, 10, 12), full[8:18, 16:28])
    np.testing.assert_array_equal(read_window(lab, 0, 40, 48, 8), full_lab[:, 40:48])
    with pytest.raises(ValueError, match=str(img)):
        read_window(img, 40, 0, 10, 10)


def test_parallel_index_equals_serial_and_names_bad_file(tmp_path):
    for k in range(5):
        _tile(tmp_path, "labeled", "Nice", stem=f"06-2014-{1040 + k}-6300-LA93-0M50-E080", seed=k)
    _tile(tmp_path, "unlabeled", "Brest", stem="29-2013-0145-6840-LA93-0M50-E080", label=False)
    serial = index_tiles(tmp_path)
    assert index_tiles(tmp_path, workers=2).equals(serial)
    bad = tmp_path / "labeled" / "Nice" / "UrbanAtlas" / "06-2014-1043-6300-LA93-0M50-E080_UA2012.tif"
    _write(bad, np.full((48, 48), 200, dtype=np.uint8))
    with pytest.raises(ValueError, match=f"{bad}.*label id 200"):
        index_tiles(tmp_path, workers=2)


# ---- checks that read every block ----


def test_truncated_image_is_found_at_index_time(tmp_path):
    """Only the header was read before: a truncated tile passed `tmf index` and failed later in subsample."""
    rng = np.random.default_rng(0)
    img = _write(tmp_path / "labeled" / "Nice" / "BDORTHO" / f"{STEM}.tif",
                 rng.integers(0, 256, (3, 256, 256), dtype=np.uint8), tiled=True, blockxsize=64, blockysize=64)
    _write(tmp_path / "labeled" / "Nice" / "UrbanAtlas" / f"{STEM}_UA2012.tif", np.ones((256, 256), np.uint8))
    with rasterio.open(img) as src:  # the header still opens
        assert src.count == 3
    img.write_bytes(img.read_bytes()[: img.stat().st_size * 2 // 3])
    with rasterio.open(img) as src:
        assert src.count == 3 and src.height == 256  # what the old header-only check looked at
    with pytest.raises(ValueError, match=f"{img}: unreadable rows .*truncated or corrupt"):
        index_tiles(tmp_path)


def test_errors_name_the_archive_member_or_the_users_folder(tmp_path):
    from public_releases import make_dfc2022_release

    from tmf.data.sources import fetch

    rel = make_dfc2022_release(tmp_path / "rel", tiles_per_city=1)
    raw = fetch(rel.url(), tmp_path / "raw")
    member = next(f for f in rel.files if f.startswith("val/Rennes/BDORTHO"))
    bad = raw / member
    bad.write_bytes(bad.read_bytes()[:600])
    with pytest.raises(ValueError, match=f"{bad} \\(member {member} of {rel.archives['val.zip']}\\): "):
        index_tiles(raw)
    # a folder given as data.url: the error names the file in the user's folder
    bad = rel.folder / member
    bad.write_bytes(bad.read_bytes()[:600])
    raw = fetch(str(rel.folder), tmp_path / "linked")
    with pytest.raises(ValueError, match=f"{raw / member} \\({bad}\\): "):
        index_tiles(raw)


def test_looping_or_dangling_link_is_an_error(tmp_path):
    _tile(tmp_path, "labeled", "Nice")
    loop = tmp_path / "labeled" / "Loop"
    os.symlink("Loop", loop)  # points at itself
    with pytest.raises(ValueError, match=f"{loop}: symbolic link that cannot be followed"):
        index_tiles(tmp_path)
    loop.unlink()
    os.symlink(tmp_path / "gone", tmp_path / "labeled" / "Nantes_Saint-Nazaire")
    with pytest.raises(ValueError, match="Nantes_Saint-Nazaire: symbolic link that cannot be followed"):
        index_tiles(tmp_path)


def test_labeled_tile_without_label(tmp_path, caplog):
    _tile(tmp_path, "labeled", "Nice")
    img, lab = _tile(tmp_path, "labeled", "Nice", stem="06-2014-1041-6300-LA93-0M50-E080")
    lab.unlink()
    with pytest.raises(ValueError, match=r"06-2014-1041.*tile of a labeled split without its label.*"
                                         r"data\.missing_label: unlabeled"):
        index_tiles(tmp_path)
    df = index_tiles(tmp_path, missing_label="unlabeled")
    assert list(zip(df["split"], df["label"] != "", strict=True)) == [("labeled", True), ("unlabeled", False)]
    assert any("moved to the unlabeled split" in r.message for r in caplog.records)


def test_cli_index_takes_the_missing_label_parameter(tmp_path, capsys):
    from tmf.cli import main

    _, lab = _tile(tmp_path / "raw", "labeled", "Nice")
    lab.unlink()
    out = tmp_path / "tiles.csv"
    assert main(["index", "--root", str(tmp_path / "raw"), "--out", str(out)]) == 2
    assert "data.missing_label" in capsys.readouterr().err and not out.exists()
    assert main(["index", "--root", str(tmp_path / "raw"), "--out", str(out),
                 "--cfg", json.dumps({"missing_label": "unlabeled"})]) == 0
    assert read_tiles_csv(out)["split"].tolist() == ["unlabeled"]


def test_other_crs_or_resolution_indexed_with_a_warning(tmp_path, caplog):
    _tile(tmp_path, "labeled", "Nice")
    base = tmp_path / "labeled" / "Nice"
    stem = "06-2014-1041-6300-LA93-0M50-E080"
    t_utm = Affine(0.5, 0, 350000.0, 0, -0.5, 4850000.0)
    _write(base / "BDORTHO" / f"{stem}.tif", np.ones((3, 40, 40), np.uint8), transform=t_utm, crs="EPSG:32632")
    _write(base / "UrbanAtlas" / f"{stem}_UA2012.tif", np.ones((40, 40), np.uint8), transform=t_utm,
           crs="EPSG:32632")
    stem2 = "06-2014-1042-6300-LA93-0M50-E080"
    t_60 = Affine(0.6, 0, 1042000.0, 0, -0.6, 6300000.0)
    _write(base / "BDORTHO" / f"{stem2}.tif", np.ones((3, 40, 40), np.uint8), transform=t_60)
    _write(base / "UrbanAtlas" / f"{stem2}_UA2012.tif", np.ones((40, 40), np.uint8), transform=t_60)
    df = index_tiles(tmp_path)
    assert df["off_spec"].tolist() == ["", "CRS EPSG:32632", "0.6 x 0.6 m/px"]
    assert df["crs"].tolist() == ["EPSG:2154", "EPSG:32632", "EPSG:2154"]
    warned = " ".join(r.message for r in caplog.records if r.levelno == logging.WARNING)
    assert f"not in EPSG:2154 (Lambert-93): labeled/Nice/BDORTHO/{stem}.tif" in warned
    assert f"not at 0.5 m/px: labeled/Nice/BDORTHO/{stem2}.tif" in warned


def test_no_georeference_only_in_dfc2022_test_partition(tmp_path, caplog):
    mf = tmp_path / "mf"
    _tile(mf, "test", "Cherbourg", stem="50-2012-0365-6965-LA93-0M50-E080", label=False)
    _write(mf / "test" / "Cherbourg" / "BDORTHO" / "x.tif", np.ones((3, 30, 30), np.uint8), transform=None, crs=None)
    with pytest.raises(ValueError, match=r"x\.tif: no CRS.*only in DFC2022's test partition"):
        index_tiles(mf)
    dfc = tmp_path / "dfc"
    _tile(dfc, "labeled_train", "Nice")
    for k in range(2):
        _write(dfc / "test" / "AreaX" / "BDORTHO" / f"t{k}.tif", np.ones((3, 30, 31), np.uint8), transform=None,
               crs=None)
        _write(dfc / "test" / "AreaX" / "RGEALTI" / f"t{k}_RGEALTI.tif", np.zeros((15, 16), np.float32),
               transform=None, crs=None)
    caplog.clear()
    df = index_tiles(dfc)
    t = df[df["city"] == "AreaX"]
    assert t["georeferenced"].tolist() == [0, 0] and t["crs"].tolist() == ["", ""]
    assert t["off_spec"].tolist() == ["no georeference"] * 2 and t["dem"].str.endswith("_RGEALTI.tif").all()
    assert sum("no georeference (by design)" in r.message for r in caplog.records) == 1
    _write(dfc / "test" / "AreaX" / "RGEALTI" / "t1_RGEALTI.tif", np.zeros((10, 16), np.float32), transform=None,
           crs=None)
    with pytest.raises(ValueError, match=r"t1_RGEALTI\.tif: 10x16 px does not match the 30x31 px"):
        index_tiles(dfc)
    # read back: x_res is NaN where there is no georeference, the text columns stay strings
    from tmf.io import write_csv

    write_csv(tmp_path / "tiles.csv", df)
    back = read_tiles_csv(tmp_path / "tiles.csv")
    assert back["x_res"].isna().tolist() == df["x_res"].isna().tolist() and back["crs"].iloc[-1] == ""
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


# ---- RGEALTI elevation (DFC2022) ----

T_DEM = Affine(1.0, 0.0, 1040000.0, 0.0, -1.0, 6300000.0)


def _dem(root, arr=None, transform=T_DEM, crs="EPSG:2154", dtype="float32", **opts):
    arr = np.full((24, 24), 35.5, np.float32) if arr is None else arr
    opts.setdefault("nodata", -99999.0)
    return _write(root / "labeled_train" / "Nice" / "RGEALTI" / f"{STEM}_RGEALTI.tif", arr, transform=transform,
                  crs=crs, dtype=dtype, **opts)


def test_dem_indexed_and_checked(tmp_path):
    img, _ = _tile(tmp_path, "labeled_train", "Nice")  # 48 px at 0.5 m = 24 m
    dem = _dem(tmp_path)
    df = index_tiles(tmp_path)
    assert df["dem"].tolist() == [f"labeled_train/Nice/RGEALTI/{STEM}_RGEALTI.tif"]
    # a 1 m grid that overhangs the 0.5 m image by less than one DEM pixel is the same footprint
    _dem(tmp_path, np.full((25, 25), 1.0, np.float32), transform=Affine(1.0, 0, 1039999.6, 0, -1.0, 6300000.3))
    assert index_tiles(tmp_path)["dem"].iloc[0] != ""
    bad = {
        "bands": (dict(arr=np.zeros((2, 24, 24), np.float32)), r"2 band\(s\) of float32, expected one float32 band"),
        "dtype": (dict(dtype="int16", nodata=None), r"1 band\(s\) of int16, expected one float32"),
        "crs": (dict(crs=None), "no CRS"),
        "other crs": (dict(crs="EPSG:32631"), "CRS EPSG:32631 differs"),
        "cover": (dict(transform=Affine(1.0, 0, 1040005.0, 0, -1.0, 6300000.0)), "does not cover its image tile"),
        "exceeds": (dict(arr=np.zeros((30, 30), np.float32)), "exceeds"),
        "nodata": (dict(nodata=-9999.0), "no-data value -9999, expected -99999"),
    }
    for kw, msg in bad.values():
        _dem(tmp_path, **kw)
        with pytest.raises(ValueError, match=f"{dem}: .*{msg}"):
            index_tiles(tmp_path)
    # truncated: a DEM large enough to hold several blocks (256 px over the 24 m tile), cut in half
    _dem(tmp_path, np.zeros((256, 256), np.float32), transform=Affine(0.09375, 0, 1040000, 0, -0.09375, 6300000),
         tiled=True, blockxsize=64, blockysize=64)
    dem.write_bytes(dem.read_bytes()[: dem.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{dem}: unreadable rows .*truncated"):
        index_tiles(tmp_path)
    assert img.exists()
