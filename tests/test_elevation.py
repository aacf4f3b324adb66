"""Elevation as data (tmf.data.elevation, subsample, pack, packed): the DEM under each sub-tile on its 0.5 m grid by
masked bilinear resampling (checked against a loop), its manifest statistics, the packed arrays, and the RGB-only
data product unchanged where there is no DEM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tmf.data.elevation import DEM_COLUMNS, MIN_VALID_WEIGHT, dem_under, masked_bilinear
from tmf.data.minifrance import DEM_NODATA
from tmf.data.packed import MANIFEST_COLUMNS, open_packed, read_manifest
from tmf.data.reader import index_tiles
from tmf.data.subsample import pack, select_subtiles, write_tinyminifrance
from tmf.data.synthetic import generate_synthetic
from tmf.io import write_csv


def _loop_bilinear(values, valid, r, c):
    """Bilinear at (r, c) from the valid neighbours only, border pixels repeated: written from the definition."""
    h, w = values.shape
    r0, c0 = math.floor(r), math.floor(c)
    num = den = 0.0
    for dr in (0, 1):
        for dc in (0, 1):
            wgt = (1 - abs(r - (r0 + dr))) * (1 - abs(c - (c0 + dc)))
            rr, cc = min(max(r0 + dr, 0), h - 1), min(max(c0 + dc, 0), w - 1)
            if valid[rr, cc]:
                num += wgt * values[rr, cc]
                den += wgt
    return (num / den, True) if den >= MIN_VALID_WEIGHT else (0.0, False)


def test_masked_bilinear_equals_a_loop_and_never_averages_no_data():
    rng = np.random.default_rng(0)
    values = rng.uniform(10, 20, (7, 9))
    valid = np.ones_like(values, bool)
    valid[2:4, 3:6] = False
    values[~valid] = DEM_NODATA
    rows, cols = rng.uniform(-0.7, 7.2, (2, 40))
    out, ok = masked_bilinear(values, valid, rows, cols)
    for k in range(40):
        ref, ref_ok = _loop_bilinear(values, valid, rows[k], cols[k])
        assert ok[k] == ref_ok and out[k] == pytest.approx(ref if ref_ok else 0.0, abs=1e-4)
    assert out[ok].min() >= 10 and out[ok].max() <= 20  # −99999 never enters a mean
    _, centre = masked_bilinear(values, valid, np.array([2.5]), np.array([4.0]))
    assert not centre[0]  # inside the patch: no-data


def _raster(path, arr, transform, crs="EPSG:2154", nodata=None):
    prof = dict(driver="GTiff", height=arr.shape[-2], width=arr.shape[-1], count=1 if arr.ndim == 2 else arr.shape[0],
                dtype=arr.dtype.name, transform=transform, crs=CRS.from_string(crs) if crs else None)
    if nodata is not None:
        prof["nodata"] = nodata
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr[None] if arr.ndim == 2 else arr)
    return path


def test_dem_under_maps_through_the_geotransforms(tmp_path):
    # a plane z = 100 + 0.2 x − 0.1 y (Lambert-93 metres) on a 1 m DEM; the image is 0.5 m over the same area
    x0, y0 = 1_040_000.0, 6_300_000.0
    xs = x0 + np.arange(40) + 0.5
    ys = y0 - np.arange(40) - 0.5
    plane = (100 + 0.2 * (xs[None, :] - x0) - 0.1 * (y0 - ys[:, None])).astype(np.float32)
    dem = _raster(tmp_path / "d.tif", plane, Affine(1, 0, x0, 0, -1, y0), nodata=DEM_NODATA)
    img = _raster(tmp_path / "i.tif", np.zeros((3, 80, 80), np.uint8), Affine(0.5, 0, x0, 0, -0.5, y0))
    with rasterio.open(img) as i, rasterio.open(dem) as d:
        z, ok = dem_under(i, d, 20, 30, 16, 16)
    px = x0 + (np.arange(30, 46) + 0.5) * 0.5
    py = y0 - (np.arange(20, 36) + 0.5) * 0.5
    expect = 100 + 0.2 * (px[None, :] - x0) - 0.1 * (y0 - py[:, None])
    assert ok.all() and np.allclose(z, expect, atol=1e-3)  # bilinear is exact on a plane
    # without georeference (DFC2022's test partition): by the ratio of the pixel grids, as TorchGeo
    dem2 = _raster(tmp_path / "d2.tif", plane, None, crs=None)
    img2 = _raster(tmp_path / "i2.tif", np.zeros((3, 80, 80), np.uint8), None, crs=None)
    with rasterio.open(img2) as i, rasterio.open(dem2) as d:
        z2, ok2 = dem_under(i, d, 20, 30, 16, 16)
    assert ok2.all() and np.allclose(z2, z, atol=1e-3)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("elev")
    generate_synthetic(root / "raw", seed=1, tile_scale=0.01, min_tiles=1, tile_size=96)
    tiles = index_tiles(root / "raw")
    return root, tiles, select_subtiles(tiles, 64, 32, 0)


def test_subsample_and_pack_carry_elevation(synthetic):
    root, tiles, chosen = synthetic
    assert (tiles["dem"] != "").all()
    out = write_tinyminifrance(chosen, root / "raw", root / "with", dem=True)
    frame = open_packed(root / "with" / "manifest.csv", pack(root / "with" / "manifest.csv", root / "with" /
                                                               "packed")[0]).manifest
    assert list(frame.columns) == MANIFEST_COLUMNS + DEM_COLUMNS and frame["has_dem"].all()
    p = open_packed(root / "with" / "manifest.csv", root / "with" / "packed")
    assert p.has_dem and p.dem.dtype == np.float32 and p.dem.shape == (64, 32, 32)
    for i in (0, 17, 63):  # the manifest's statistics are those of the packed rows
        v = p.dem_valid[i].astype(bool)
        assert frame["dem_valid"][i] == pytest.approx(v.mean(), abs=1e-6)
        assert frame["dem_mean"][i] == pytest.approx(float(p.dem[i][v].mean()), abs=2e-3)
        assert frame["dem_min"][i] == pytest.approx(float(p.dem[i][v].min()), abs=2e-3)
    crop = root / "with" / out["dem"][0]
    with rasterio.open(crop) as src, rasterio.open(root / "with" / out["image"][0]) as im:
        assert src.dtypes[0] == "float32" and src.nodata == DEM_NODATA and src.transform == im.transform


def test_data_without_elevation_is_the_rgb_only_product(synthetic, tmp_path):
    root, _, chosen = synthetic
    a = write_tinyminifrance(chosen, root / "raw", tmp_path / "a", dem=True)
    write_tinyminifrance(chosen, root / "raw", tmp_path / "b", dem=False)
    write_csv(tmp_path / "stripped.csv", a[MANIFEST_COLUMNS])
    assert (tmp_path / "b" / "manifest.csv").read_bytes() == (tmp_path / "stripped.csv").read_bytes()
    written = pack(tmp_path / "b" / "manifest.csv", tmp_path / "b" / "packed")
    assert [w.name for w in written] == ["images.npy", "labels.npy"]
    p = open_packed(tmp_path / "b" / "manifest.csv", tmp_path / "b" / "packed")
    assert not p.has_dem
    with pytest.raises(ValueError, match="has no elevation"):
        _ = p.dem


def test_packed_elevation_is_checked(synthetic, tmp_path):
    root, _, chosen = synthetic
    write_tinyminifrance(chosen, root / "raw", tmp_path, dem=True)
    pack(tmp_path / "manifest.csv", tmp_path / "packed")
    (tmp_path / "packed" / "dem.npy").unlink()
    with pytest.raises(FileNotFoundError, match="dem.npy"):
        open_packed(tmp_path / "manifest.csv", tmp_path / "packed")
    pack(tmp_path / "manifest.csv", tmp_path / "packed")
    valid = np.load(tmp_path / "packed" / "dem_valid.npy")
    valid[0] = 1 - valid[0]  # the first row is checked: its valid share no longer matches the manifest's
    np.save(tmp_path / "packed" / "dem_valid.npy", valid)
    with pytest.raises(ValueError, match=r"dem_valid.npy: row 0 does not match .* manifest order"):
        open_packed(tmp_path / "manifest.csv", tmp_path / "packed")
    frame = read_manifest(tmp_path / "manifest.csv")
    frame.drop(columns=["dem_min"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: elevation column\(s\) \['dem_min'\] missing"):
        open_packed(tmp_path / "bad.csv", tmp_path / "packed")


def test_dfc2022_shaped_release_gets_its_elevation(tmp_path):
    """The release as it is (tests/public_releases.py): odd tile sizes, a tile in a second CRS, JPEG tiles, DEM
    no-data patches, and the test partition without georeference (mapped by the ratio of the pixel grids)."""
    from public_releases import make_dfc2022_release

    rel = make_dfc2022_release(tmp_path / "dfc", seed=0, test_partition=True)
    tiles = index_tiles(rel.folder)
    assert (tiles["dem"] != "").all() and (tiles["georeferenced"] == 0).any()
    chosen = select_subtiles(tiles, len(tiles), 32, 0)
    frame = write_tinyminifrance(chosen, rel.folder, tmp_path / "all", dem=True)
    assert frame["has_dem"].all() and frame["dem_valid"].min() > 0.5
    assert frame.loc[frame["city"].str.startswith("TestArea"), "dem_mean"].between(40, 100).all()
    # (tmf.data.packed reads the 16 cities only: the test partition's areas stop there, not here)
    frame = write_tinyminifrance(chosen[~chosen["city"].str.startswith("TestArea")], rel.folder, tmp_path / "tiny",
                                 dem=True)
    pack(tmp_path / "tiny" / "manifest.csv", tmp_path / "tiny" / "packed")
    p = open_packed(tmp_path / "tiny" / "manifest.csv", tmp_path / "tiny" / "packed")
    # the fixture's DEMs are 50 + 0.3 row + 0.1 col (m, on the 1 m grid) plus noise: every sub-tile sees that plane
    for i in range(len(frame)):
        v = p.dem_valid[i].astype(bool)
        assert 40 < p.dem[i][v].mean() < 100 and np.isfinite(p.dem[i]).all()
        assert np.all(p.dem[i][~v] == 0)
