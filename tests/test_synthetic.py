"""The synthetic MiniFrance-like generator: layout, georeferencing, determinism, priors, regional looks."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import rasterio

from tmf.config import ParamsError
from tmf.data.minifrance import CITIES, CITY_BY_NAME, CITY_NAMES, CLASSES, DEM_NODATA, N_CLASSES
from tmf.data.reader import index_tiles
from tmf.data.synthetic import (
    LOOKS,
    REGIONS,
    _rng,
    city_style,
    generate_synthetic,
    n_tiles,
    region_prior,
    render_dem,
    render_tile,
)

NAME = re.compile(r"^(\d\d)-(2012|2013|2014)-(\d{4})-(\d{4})-LA93-0M50-E080$")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    paths = generate_synthetic(root, seed=3, tile_scale=0.01, min_tiles=2, tile_size=96)
    return root, paths


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.tif")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_regions_cover_every_city_once():
    assert set(REGIONS) == set(CITY_NAMES)
    assert set(REGIONS.values()) == set(LOOKS)
    assert REGIONS["Nice"] == REGIONS["Marseille_Martigues"]
    assert len({REGIONS[c] for c in ("Brest", "Lorient", "Saint-Brieuc", "Quimper", "Vannes", "Rennes")}) == 1


def test_tile_counts_follow_table_2_4():
    # round half up of tile_scale x Table 2.4, at least min_tiles
    assert n_tiles(CITY_BY_NAME["Nice"], 0.05, 2) == 9  # 8.5 -> 9
    assert n_tiles(CITY_BY_NAME["Cherbourg"], 0.05, 2) == 3  # 2.85 -> 3
    assert n_tiles(CITY_BY_NAME["Cherbourg"], 0.01, 2) == 2  # 0.57 -> min_tiles
    assert n_tiles(CITY_BY_NAME["Lille_Arras_Lens_Douai_Henin"], 1.0, 2) == 275


def test_layout_names_and_georeferencing(small):
    root, paths = small
    assert len(paths) == sum(n_tiles(c, 0.01, 2) for c in CITIES)
    for c in CITIES:
        imgs = sorted((root / c.split / c.name / "BDORTHO").glob("*.tif"))
        assert len(imgs) == n_tiles(c, 0.01, 2), c.name
        years = set()
        for img in imgs:
            m = NAME.match(img.stem)
            assert m, img.name
            dept, year, x_km, y_km = m.groups()
            assert dept == c.dept
            years.add(year)
            lab = root / c.split / c.name / "UrbanAtlas" / f"{img.stem}_UA2012.tif"
            with rasterio.open(img) as a, rasterio.open(lab) as b:
                assert a.crs.to_epsg() == 2154 and b.crs.to_epsg() == 2154
                assert a.count == 3 and a.dtypes == ("uint8",) * 3
                assert b.count == 1 and b.dtypes == ("uint8",)
                assert a.shape == b.shape == (96, 96)
                assert a.transform == b.transform
                assert a.transform.a == 0.5 and a.transform.e == -0.5
                # the name is the upper-left corner in km (Lambert-93)
                assert (a.transform.c, a.transform.f) == (int(x_km) * 1000.0, int(y_km) * 1000.0)
                assert abs(int(x_km) - c.x_km) <= 10 and abs(int(y_km) - c.y_km) <= 10
        assert len(years) == 1  # one acquisition year per city


def test_same_parameters_same_bytes_other_seed_other_bytes(tmp_path, small):
    root, _ = small
    again = tmp_path / "again"
    generate_synthetic(again, seed=3, tile_scale=0.01, min_tiles=2, tile_size=96)
    assert _digest(root) == _digest(again)
    other = tmp_path / "other"
    generate_synthetic(other, seed=4, tile_scale=0.01, min_tiles=2, tile_size=96)
    assert _digest(other) != _digest(root)
    # regenerating into a used folder leaves exactly the new data set (no stale tiles of the old one)
    generate_synthetic(other, seed=3, tile_scale=0.01, min_tiles=1, tile_size=96)
    generate_synthetic(other, seed=3, tile_scale=0.01, min_tiles=2, tile_size=96)
    assert _digest(other) == _digest(root)


def test_elevation_in_rgealti_layout_and_format(small):
    root, paths = small
    tiles = index_tiles(root)  # tmf.data.checks accepts every DEM: one float32 band, CRS, the image's footprint
    assert len(tiles) == len(paths) and (tiles["dem"] != "").all()
    for img in paths[:: max(1, len(paths) // 6)]:
        dem = img.parent.parent / "RGEALTI" / f"{img.stem}_RGEALTI.tif"
        with rasterio.open(img) as a, rasterio.open(dem) as d:
            assert d.count == 1 and d.dtypes == ("float32",) and d.nodata == DEM_NODATA and d.crs == a.crs
            assert d.shape == (48, 48) and d.transform.a == 1.0 and d.transform.e == -1.0
            assert (d.transform.c, d.transform.f) == (a.transform.c, a.transform.f)


def test_images_and_labels_do_not_depend_on_elevation(tmp_path, small):
    root, _ = small
    plain = tmp_path / "plain"
    generate_synthetic(plain, seed=3, tile_scale=0.01, min_tiles=2, tile_size=96, dem=False)
    assert not list(plain.rglob("*_RGEALTI.tif"))
    for p in sorted(plain.rglob("*.tif")):
        assert p.read_bytes() == (root / p.relative_to(plain)).read_bytes(), p
    generate_synthetic(plain, seed=3, tile_scale=0.01, min_tiles=2, tile_size=96)  # and back: the same bytes
    assert _digest(plain) == _digest(root)


def _relief(city, k, size=256):
    image, label = _render(city, k, size)
    dem = render_dem(label, city, _rng(0, "dem", city, k))
    return label[::2, ::2], dem  # the label at the DEM's 1 m


def test_relief_is_tied_to_land_use_and_region():
    rel, slope, spread, alt, nodata = {10: [], 14: []}, {10: [], 14: []}, {}, {}, 0
    for city in ("Nice", "Nantes_Saint-Nazaire", "Brest", "Caen", "Clermont-Ferrand",
                 "Lille_Arras_Lens_Douai_Henin", "Calais_Dunkerque"):
        spread[city], alt[city] = [], []
        for k in range(5):
            label, dem = _relief(city, k)
            valid = dem != DEM_NODATA
            nodata += int((~valid).any())
            z = np.where(valid, dem, np.nan)
            gy, gx = np.gradient(z)
            s = np.hypot(gy, gx)
            spread[city].append(np.nanstd(z))
            alt[city].append(np.nanmean(z))
            for c in (10, 14):
                m = (label == c) & valid & np.isfinite(s)
                if m.sum() > 30:
                    rel[c].append(np.nanmean(z[m]) - np.nanmean(z))
                    slope[c].append(np.median(s[m]))
    assert len(rel[14]) >= 3 and len(rel[10]) >= 10
    assert np.mean(rel[14]) < 0 < np.mean(rel[10])  # water lowest, forests on the hills
    assert np.mean(slope[14]) < 0.5 * np.mean(slope[10])  # water flat, forests on slopes
    assert np.mean(alt["Clermont-Ferrand"]) > np.mean(alt["Lille_Arras_Lens_Douai_Henin"]) + 300
    assert np.mean(spread["Clermont-Ferrand"]) > 5 * np.mean(spread["Lille_Arras_Lens_Douai_Henin"])
    for flat in ("Lille_Arras_Lens_Douai_Henin", "Calais_Dunkerque"):
        assert np.mean(spread[flat]) < 3.0  # metres, within a 128 m tile
    assert np.mean(alt["Calais_Dunkerque"]) < 15 and nodata >= 1  # a few tiles with no-data patches


def test_bad_parameters_name_the_parameter(tmp_path):
    with pytest.raises(ParamsError, match="tile_size"):
        generate_synthetic(tmp_path, tile_size=8)
    with pytest.raises(ParamsError, match="tile_scale"):
        generate_synthetic(tmp_path, tile_scale=0)
    with pytest.raises(ParamsError, match="min_tiles"):
        generate_synthetic(tmp_path, min_tiles=0)


def test_priors_weighted_by_tiles_match_table_2_6():
    w = sum(c.tiles * region_prior(c.name) for c in CITIES) / sum(c.tiles for c in CITIES)
    for k in (1, 2, 5, 7, 10, 11):
        assert abs(100 * w[k] - CLASSES[k].share_tiny) < 1.5, (k, 100 * w[k])
    assert w[8] == 0 and w[9] == 0
    cher = region_prior("Cherbourg")
    assert 0.65 <= cher[7] <= 0.75 and (cher > 0).sum() == 6  # seed 004 §2.4.2


def _render(city, k, size=256):
    return render_tile(city_style(city, 0), _rng(0, "test", city, k), size)


def test_labels_use_valid_ids_with_a_little_of_0_and_15():
    hist = np.zeros(N_CLASSES, dtype=np.int64)
    for city in CITY_NAMES:
        for k in range(4):
            _, lab = _render(city, k)
            hist += np.bincount(lab.ravel(), minlength=N_CLASSES)[:N_CLASSES]
            assert lab.max() < N_CLASSES
    share = hist / hist.sum()
    assert share[8] == 0 and share[9] == 0
    assert 0 < share[0] < 0.03 and 0 < share[15] < 0.03
    assert share[5] > 0.15 and share[7] > 0.15 and share[10] > 0.05  # arable, pastures, forests dominant


def _features(img):
    x = img.astype(np.float32)
    return np.concatenate([x.mean((0, 1)), x.std((0, 1)), np.abs(np.diff(x, axis=0)).mean((0, 1))])


def _class_colours(city, classes=(5, 7, 10), n=8, size=160):
    """Mean RGB of the pixels of each class over a few tiles of one city (NaN for a class not drawn)."""
    acc = {c: [] for c in classes}
    for k in range(n):
        img, lab = _render(city, k, size)
        for c in classes:
            if (lab == c).any():
                acc[c].append(img[lab == c].astype(np.float64))
    return np.concatenate([np.concatenate(acc[c]).mean(0) if acc[c] else np.full(3, np.nan) for c in classes])


def test_cities_of_one_region_look_alike():
    """Regional appearance, class by class (arable land, pastures, forests): each city's nearest other city
    by mean class colours is in its own region (every region with two cities or more)."""
    cols = {city: _class_colours(city) for city in CITY_NAMES}
    for city in CITY_NAMES:
        if sum(r == REGIONS[city] for r in REGIONS.values()) < 2:
            continue
        d = {o: np.nanmean(np.abs(cols[city] - cols[o])) for o in CITY_NAMES if o != city}
        assert REGIONS[min(d, key=d.get)] == REGIONS[city], (city, sorted(d, key=d.get)[:3])


def test_classes_differ_by_texture_within_a_region():
    """Within one region, 8 px patches of one class are told apart by nearest class centroid of simple colour
    and texture features far above chance (12 classes: 1/12)."""
    feats, ys = [], []
    for k in range(8):
        img, lab = _render("Nantes_Saint-Nazaire", k)
        for r in range(0, 256 - 8, 8):
            for c in range(0, 256 - 8, 8):
                patch = lab[r : r + 8, c : c + 8]
                if (patch == patch[0, 0]).all() and patch[0, 0] not in (0, 15):
                    feats.append(_features(img[r : r + 8, c : c + 8]))
                    ys.append(int(patch[0, 0]))
    feats, ys = np.array(feats), np.array(ys)
    test = np.random.default_rng(0).random(len(ys)) < 0.3
    classes = [c for c in np.unique(ys) if (ys[~test] == c).sum() >= 5]
    keep = np.isin(ys, classes)
    scale = feats[~test & keep].std(0) + 1e-6
    cent = np.array([feats[~test & (ys == c)].mean(0) for c in classes]) / scale
    d = (((feats[test & keep] / scale)[:, None] - cent[None]) ** 2).sum(-1)
    acc = (np.array(classes)[d.argmin(1)] == ys[test & keep]).mean()
    assert len(classes) >= 5, classes
    assert acc > 0.5, acc
