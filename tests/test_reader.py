"""Tile index and checks (tmf.data.reader): both layouts, and every broken file named in its error."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tmf.data.reader import TILES_COLUMNS, check_label, index_tiles, read_window

STEM = "06-2014-1040-6300-LA93-0M50-E080"
T = Affine(0.5, 0.0, 1040000.0, 0.0, -0.5, 6300000.0)


def _write(path, arr, transform=T, crs="EPSG:2154", dtype=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = arr[None] if arr.ndim == 2 else arr
    prof = dict(driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0],
                dtype=dtype or bands.dtype.name, transform=transform)
    if crs:
        prof["crs"] = CRS.from_string(crs)
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

    # DFC2022: labeled_train / unlabeled_train / val folders, an RGEALTI folder that is ignored
    dfc = tmp_path / "dfc"
    _tile(dfc, "labeled_train", "Nantes_Saint-Nazaire", stem="44-2013-0350-6690-LA93-0M50-E080")
    _tile(dfc, "unlabeled_train", "Caen", stem="14-2012-0455-6905-LA93-0M50-E080", label=False)
    _tile(dfc, "val", "Rennes", stem="35-2012-0350-6790-LA93-0M50-E080", label=False)
    _write(dfc / "labeled_train" / "Nantes_Saint-Nazaire" / "RGEALTI" / "x_RGEALTI.tif",
           np.full((24, 24), -99999.0, dtype=np.float32))
    df = index_tiles(dfc)
    assert list(df["split"]) == ["labeled", "unlabeled", "test"]
    assert list(df["label"] != "") == [True, False, False]


def test_unknown_city_or_split_folder_is_named(tmp_path):
    _tile(tmp_path, "labeled", "Paris")
    with pytest.raises(ValueError, match="Paris"):
        index_tiles(tmp_path)
    other = tmp_path / "o"
    _tile(other, "training", "Nice")
    with pytest.raises(ValueError, match="training"):
        index_tiles(other)
    wrong = tmp_path / "w"
    _tile(wrong, "test", "Nice")  # Nice is a labeled city (Table 2.4)
    with pytest.raises(ValueError, match="Nice"):
        index_tiles(wrong)


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
    _write(lab, arr)
    import tmf.data.reader as reader

    monkeypatch.setattr(reader, "_ROWS_PER_READ", 16)  # several windowed reads, never the whole raster
    reads = []
    orig = rasterio.io.DatasetReader.read

    def spy(self, *a, **k):
        reads.append(k.get("window"))
        return orig(self, *a, **k)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    with pytest.raises(ValueError, match=f"{lab}.*label id 16"):
        check_label(lab)
    assert len(reads) == 4 and all(w is not None and w.height == 16 for w in reads)


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
