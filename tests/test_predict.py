"""Land-cover maps (tmf.predict): the maps lie on their tiles' exact grids, blending is seamless and matches a
whole-tile reference, memory is bounded by the window, the saved model predicts what the trained one did, and the
job, the previews and the plan entries work on data shaped like the public releases."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

from tmf.data.minifrance import SCORED_IDS, cities_in
from tmf.predict.geotiff import predict_geotiff
from tmf.predict.window import axis_windows, predict_tile, ramp

CPU = torch.device("cpu")
N = len(SCORED_IDS)


def write_tile(path: Path, rgb: np.ndarray, crs: str | None = "EPSG:2154", transform: Affine | None = None,
               **opts) -> Path:
    """An RGB uint8 GeoTIFF; ``crs`` None: no georeference at all (DFC2022's test partition)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = {"driver": "GTiff", "height": rgb.shape[1], "width": rgb.shape[2], "count": rgb.shape[0],
            "dtype": "uint8", **opts}
    if crs is not None:
        prof["crs"] = CRS.from_string(crs)
        prof["transform"] = transform or Affine(0.5, 0, 350_000.0, 0, -0.5, 6_790_000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(rgb)
    return path


def position_image(h: int, w: int) -> np.ndarray:
    """RGB whose pixels spell their own (row, col): R, G the low bytes, B the high nibbles (up to 4,095 px)."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy & 255, xx & 255, ((yy >> 8) & 15) << 4 | ((xx >> 8) & 15)]).astype(np.uint8)


def position_class(yy, xx):
    """The class the position model gives pixel (row, col): stripes that cross every window seam."""
    return (yy // 7 + 2 * (xx // 5)) % N


@dataclass
class PositionModel:
    """A model that predicts a function of the absolute position its input pixels spell: any window size,
    overlap or batching must give the same map."""

    class_ids: tuple[int, ...] = SCORED_IDS
    device: torch.device = CPU

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        yy = x[:, 0] | ((x[:, 2] >> 4) << 8)
        xx = x[:, 1] | ((x[:, 2] & 15) << 8)
        return 10.0 * torch.nn.functional.one_hot(position_class(yy, xx), N).permute(0, 3, 1, 2).float()


@dataclass
class ConvModel:
    """A fixed random conv net: its logits near a window's border depend on the (padded) context, so windows
    disagree there and the blend decides."""

    net: torch.nn.Module
    class_ids: tuple[int, ...] = SCORED_IDS
    device: torch.device = CPU

    @classmethod
    def seeded(cls, seed: int = 0) -> ConvModel:
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.Tanh(),
                                  torch.nn.Conv2d(8, N, 5, padding=2)).eval()
        return cls(net)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0)


def run_arrays(rgb: np.ndarray, model, **kw) -> tuple[np.ndarray, object]:
    """predict_tile over an in-memory tile: the map and the stats."""
    h, w = rgb.shape[1:]
    out = np.full((h, w), 255, dtype=np.uint8)
    seen = []

    def write(r0, ids):
        seen.append((r0, ids.shape[0]))
        out[r0:r0 + ids.shape[0]] = ids

    stats = predict_tile(lambda r0, r1: rgb[:, r0:r1], write, h, w, model, model.class_ids, device=CPU, **kw)
    rows = [r for r0, n in seen for r in range(r0, r0 + n)]
    assert rows == list(range(h)), "every row written once, in order"
    return out, stats


# ---------------------------------------------------------------- windows and blend weights
def test_windows_cover_the_tile_on_a_regular_grid():
    a = axis_windows(1000, 256, 64)
    assert a.size == 256 and a.stride == 192 and a.starts == (0, 192, 384, 576, 768)
    assert a.starts[-1] + a.size >= 1000 > a.starts[-2] + a.size  # the last window is needed, and reaches past
    small = axis_windows(77, 256, 64)  # one window, rounded up to the U-Net's stride
    assert small.size == 96 and small.starts == (0,) and small.overlap == 0
    with pytest.raises(ValueError, match="predict.overlap"):
        axis_windows(1000, 256, 129)
    with pytest.raises(ValueError, match="predict.window"):
        axis_windows(1000, 100, 0)


@pytest.mark.parametrize("size, overlap", [(256, 64), (128, 1), (64, 32)])
def test_neighbouring_ramps_sum_to_one(size, overlap):
    """The cross-fade is a partition of unity: where two windows overlap their weights sum to 1."""
    w = ramp(size, overlap).astype(np.float64)
    stride = size - overlap
    total = np.zeros(stride * 3 + size)
    for k in range(4):
        total[k * stride:k * stride + size] += w
    inner = total[overlap:3 * stride + size - overlap]
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)
    assert (w > 0).all() and w.max() <= 1.0 and (w == 1.0).sum() == size - 2 * overlap
    assert np.all(np.diff(w[:overlap]) > 0)  # rising into the window


# ---------------------------------------------------------------- (b) seamless blending
@pytest.mark.parametrize("window, overlap, batch", [(64, 0, 1), (64, 16, 3), (96, 32, 2), (128, 64, 16),
                                                    (256, 0, 4), (512, 128, 1)])
def test_blending_is_seamless_whatever_the_windows(window, overlap, batch):
    """A model predicting a function of absolute position gives the same map for every window size, overlap and
    batch: no seam, no shifted window, no lost border row or column (odd size, not a multiple of anything)."""
    h, w = 301, 227
    rgb = position_image(h, w)
    got, stats = run_arrays(rgb, PositionModel(), window=window, overlap=overlap, batch=batch)
    yy, xx = np.mgrid[:h, :w]
    np.testing.assert_array_equal(got, np.asarray(SCORED_IDS, dtype=np.uint8)[position_class(yy, xx)])
    assert stats.windows == len(axis_windows(h, window, overlap).starts) * len(axis_windows(w, window, overlap).starts)


def reference_map(rgb: np.ndarray, model, window: int, overlap: int) -> np.ndarray:
    """A second implementation: every window's weighted logits added into a whole-tile accumulator (what the
    strips avoid), windows in the same order, then argmax."""
    h, w = rgb.shape[1:]
    ay, ax = axis_windows(h, window, overlap), axis_windows(w, window, overlap)
    acc = torch.zeros((N, h, w))
    wgt = torch.from_numpy(np.outer(ramp(ay.size, ay.overlap), ramp(ax.size, ax.overlap)))
    for y0 in ay.starts:
        for x0 in ax.starts:
            win = rgb[:, y0:y0 + ay.size, x0:x0 + ax.size]
            vh, vw = win.shape[1:]
            padded = np.pad(win, ((0, 0), (0, ay.size - vh), (0, ax.size - vw)), mode="reflect")
            z = model(torch.from_numpy(padded[None]))[0]
            acc[:, y0:y0 + vh, x0:x0 + vw] += z[:, :vh, :vw] * wgt[:vh, :vw]
    return np.asarray(SCORED_IDS, dtype=np.uint8)[acc.argmax(0).numpy()]


@pytest.mark.parametrize("window, overlap", [(64, 32), (96, 16), (128, 0)])
def test_strips_give_the_whole_tile_blend(window, overlap):
    """With a model whose windows disagree near their borders, the strip-by-strip map equals the whole-tile
    weighted blend, and the blend matters (it differs from plain tiling)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(3, 211, 157), dtype=np.uint8)
    model = ConvModel.seeded()
    got, _ = run_arrays(rgb, model, window=window, overlap=overlap, batch=5)
    np.testing.assert_array_equal(got, reference_map(rgb, model, window, overlap))
    if overlap:
        assert (got != reference_map(rgb, model, window, 0)).any()


# ---------------------------------------------------------------- (c) bounded memory
def test_held_floats_are_bounded_by_the_window_not_the_tile():
    """Counted by the code: a 1,500 x 1,200 px tile with 64 px windows holds one strip of 64 rows, never the
    tile's 1,500 rows x classes."""
    h, w, window, batch = 1500, 1200, 64, 4
    rgb = np.zeros((3, h, w), dtype=np.uint8)
    _, stats = run_arrays(rgb, PositionModel(), window=window, overlap=16, batch=batch)
    strip = N * window * w + window * window + batch * N * window * window
    assert stats.peak_floats == strip
    assert stats.peak_floats < h * w * N / 15


BOUNDED_RSS = """
import resource, sys
sys.path.insert(0, {tests!r})
from test_predict import ConvModel
from tmf.predict.geotiff import predict_geotiff
model = ConvModel.seeded()
predict_geotiff({small!r}, {out!r}, model, window={window}, overlap={window} // 4, batch=2)  # load GDAL, kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
stats, _ = predict_geotiff({image!r}, {out!r}, model, window={window}, overlap={window} // 4, batch=2)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, stats.peak_floats)
"""


def write_big_tile(path: Path, side: int) -> Path:
    """A random RGB GeoTIFF written block row by block row (never whole in memory)."""
    from rasterio.windows import Window

    prof = {"driver": "GTiff", "height": side, "width": side, "count": 3, "dtype": "uint8", "tiled": True,
            "blockxsize": 256, "blockysize": 256, "crs": "EPSG:2154", "transform": Affine(0.5, 0, 0, 0, -0.5, 0)}
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **prof) as dst:
        for r in range(0, side, 256):
            n = min(256, side - r)
            dst.write(rng.integers(0, 256, (3, n, side), dtype=np.uint8), window=Window(0, r, side, n))
    return path


def test_peak_memory_of_a_large_tile_is_bounded(tmp_path):
    """tracemalloc cannot see torch's allocator, so a fresh process measures its peak RSS: after a warm-up on a
    small tile, predicting a 3,000 px tile raises it by far less than the tile's 3,000² x 14 floats (504 MB),
    and the code's own count agrees with a strip."""
    side, window = 3000, 64
    big = write_big_tile(tmp_path / "big.tif", side)
    small = write_tile(tmp_path / "small.tif", np.zeros((3, 100, 100), dtype=np.uint8))
    code = BOUNDED_RSS.format(tests=str(Path(__file__).parent), window=window, small=str(small), image=str(big),
                              out=str(tmp_path / "map.tif"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    before_kb, after_kb, peak = (int(v) for v in proc.stdout.split())
    whole_tile_mb = side * side * N * 4 / 2**20
    grown_mb = (after_kb - before_kb) / 1024
    assert grown_mb < whole_tile_mb / 5, (grown_mb, whole_tile_mb)
    assert peak * 4 / 2**20 < whole_tile_mb / 20
    with rasterio.open(tmp_path / "map.tif") as m:
        assert (m.height, m.width) == (side, side)


# ---------------------------------------------------------------- (a) the input tile's exact grid
GRIDS = [  # name, size (rows, cols), CRS, transform
    ("lambert93", (301, 517), "EPSG:2154", Affine(0.5, 0, 350_000.0, 0, -0.5, 6_790_000.0)),
    ("utm31n", (127, 64), "EPSG:32631", Affine(0.6, 0, 690_123.4, 0, -0.6, 4_800_007.7)),
    ("wgs84", (97, 1000), "EPSG:4326", Affine(1e-5, 0, 2.35, 0, -1e-5, 48.85)),
    ("rotated", (65, 66), "EPSG:2154", Affine(0.5, 0.1, 1_000.0, 0.1, -0.5, 2_000.0)),
    ("no_crs", (150, 151), None, None),
]


@pytest.mark.parametrize("name, size, crs, transform", GRIDS, ids=[g[0] for g in GRIDS])
def test_map_has_its_inputs_exact_grid(tmp_path, name, size, crs, transform):
    rng = np.random.default_rng(1)
    image = write_tile(tmp_path / f"{name}.tif", rng.integers(0, 256, (3, *size), dtype=np.uint8), crs, transform,
                       **({"compress": "JPEG", "photometric": "YCBCR"} if name == "utm31n" else {}))
    out = tmp_path / "maps" / f"{name}.tif"
    stats, counts = predict_geotiff(image, out, ConvModel.seeded(), window=64, overlap=16, batch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(image) as src, rasterio.open(out) as m:
            assert (m.height, m.width) == (src.height, src.width) == size
            assert m.crs == src.crs
            assert m.transform == src.transform
            assert m.count == 1 and m.dtypes[0] == "uint8" and m.nodata == 0
            assert m.profile["tiled"] and m.compression.name.lower() == "deflate"
            assert m.colormap(1)[5][:3] == (0x75, 0xDB, 0x57)  # MiniFrance colour of class 5
            ids = m.read(1)
    assert set(np.unique(ids)) <= set(SCORED_IDS)
    assert counts.sum() == size[0] * size[1] and (np.bincount(ids.ravel(), minlength=16) == counts).all()
    if crs is None:
        assert m.crs is None and m.transform.is_identity


def test_no_data_pixels_get_class_zero(tmp_path):
    rgb = np.full((3, 80, 90), 120, dtype=np.uint8)
    rgb[:, :20, :30] = 0
    image = write_tile(tmp_path / "nodata.tif", rgb, nodata=0)
    out = tmp_path / "map.tif"
    _, counts = predict_geotiff(image, out, PositionModel(), window=64, overlap=0, batch=2)
    with rasterio.open(out) as m:
        ids = m.read(1)
    assert (ids[:20, :30] == 0).all() and (ids[20:] != 0).all() and counts[0] == 600


def test_a_tile_the_model_cannot_read_is_named(tmp_path):
    grey = write_tile(tmp_path / "grey.tif", np.zeros((1, 40, 40), dtype=np.uint8))
    with pytest.raises(ValueError, match=f"{grey}: 1 band"):
        predict_geotiff(grey, tmp_path / "m.tif", PositionModel(), window=64, overlap=0, batch=1)
    assert not (tmp_path / "m.tif").exists()


# ---------------------------------------------------------------- the saved model is the trained one
@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from test_evaluate import make_tiny

    return make_tiny(tmp_path_factory.mktemp("packed"))


@pytest.mark.parametrize("protocol, method, over", [
    ("finetune", "supervised", {}),
    ("finetune", "berundanet_kmeans", {}),
    ("finetune_horospherical_d2", "random", {"hyperbolic": {"prototypes": "random"}}),
    ("finetune_euclidean_d3", "random", {}),
    ("linear", "random", {}),
    ("segnet", "supervised", {"segnet": {"channels": [4, 8, 8, 16, 16]}}),
])
def test_saved_model_reproduces_the_jobs_scores(packed, tmp_path, protocol, method, over):
    """An evaluation job saves its model; read back, it predicts the job's test sub-tiles exactly as the job
    scored them (the same confusion matrix, recomputed here from the loaded model's predictions)."""
    from test_evaluate import tiny_cfg

    from tmf.data.packed import open_packed
    from tmf.evaluate import testsets
    from tmf.evaluate.data import targets
    from tmf.evaluate.run import run_job
    from tmf.evaluate.saved_model import load_predictor

    cfg = tiny_cfg(**over)
    model_file = tmp_path / "model.pt"
    m = run_job(protocol, method, 1.0, 0, *packed, None, tmp_path / "job", cfg, device="cpu", threads=1,
                save_model=model_file)
    predictor = load_predictor(model_file, CPU)
    assert predictor.job == {"protocol": protocol, "method": method, "fraction": 1.0, "seed": 0}
    assert predictor.class_ids == SCORED_IDS
    data = open_packed(*packed)
    (fold,) = testsets.build(data.manifest, cfg, method).folds
    rows = fold.test  # what the job scored
    cm = np.zeros((N, N), dtype=np.int64)
    for s in range(0, len(rows), cfg["eval_batch"]):
        chunk = rows[s:s + cfg["eval_batch"]]
        x = torch.from_numpy(np.ascontiguousarray(data.images[chunk])).permute(0, 3, 1, 2)
        pred = predictor(x).argmax(1).numpy()
        y = targets(data.labels[chunk])
        ok = y != 255
        cm += np.bincount(y[ok] * N + pred[ok], minlength=N * N).reshape(N, N)
    assert cm.tolist() == m["confusion"]


def test_scene_protocols_save_no_model(packed, tmp_path):
    from test_evaluate import tiny_cfg

    from tmf.evaluate.run import run_job

    with pytest.raises(ValueError, match="--save-model: protocol 'knn' classifies whole sub-tiles"):
        run_job("knn", "random", 1.0, 0, *packed, None, tmp_path, tiny_cfg(), device="cpu", save_model=tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "metrics.json").exists()


def test_a_foreign_model_file_is_named(tmp_path):
    from tmf.evaluate.saved_model import load_predictor

    bad = tmp_path / "encoder.pt"
    torch.save({"arch": "resnet18", "state_dict": {}}, bad)
    with pytest.raises(ValueError, match=f"{bad}: not a tmf-segmentation-model file"):
        load_predictor(bad, CPU)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_predictor(tmp_path / "none.pt", CPU)


# ---------------------------------------------------------------- the job on a DFC2022-shaped release
def small_model_file(path: Path) -> Path:
    from tmf.evaluate.saved_model import build, save_model

    arch = {"kind": "unet", "backbone": "resnet18", "decoder_channels": [16, 16, 8, 8, 8], "head": "conv",
            "head_dim": None, "aux_channels": 0}
    torch.manual_seed(0)
    save_model(path, build(arch).eval(), arch, {"protocol": "finetune", "method": "simclr", "fraction": 1.0,
                                                "seed": 0})
    return path


def test_maps_of_a_dfc2022_release(tmp_path, caplog):
    """Every tile of the test split of a DFC2022-shaped release (val: the 8 test cities, RGB + DEM, no masks,
    odd sizes, JPEG YCbCr, a tile in UTM 31N; the test partition without georeference) gets a map on its exact
    grid; the tiles without georeference are named in the log; one preview per city."""
    from public_releases import make_dfc2022_release

    from tmf.data.reader import index_tiles
    from tmf.io import write_csv
    from tmf.predict.previews import city_table, write_previews
    from tmf.predict.run import predict_split, read_index

    rel = make_dfc2022_release(tmp_path / "rel", tiles_per_city=2, test_partition=True)
    root = rel.folder
    write_csv(tmp_path / "tiles.csv", index_tiles(root))
    model = small_model_file(tmp_path / "model.pt")
    out, index = tmp_path / "maps" / "tiles", tmp_path / "maps" / "maps.csv"
    cfg = {"window": 64, "overlap": 16, "batch": 4}
    with caplog.at_level("INFO"):
        table = predict_split(tmp_path / "tiles.csv", root, "test", model, out, index, cfg, device="cpu")
    tiles = pd.read_csv(tmp_path / "tiles.csv", keep_default_na=False)
    tiles = tiles[tiles["split"] == "test"]
    assert sorted(table["image"]) == sorted(tiles["image"]) and len(table) == 16 + 3 * 2
    assert list(read_index(index)["map"]) == list(table["map"])
    crss = set()
    for r in table.itertuples():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(root / r.image) as src, rasterio.open(index.parent / r.map) as m:
                assert (m.crs, m.transform, m.shape) == (src.crs, src.transform, src.shape), r.image
                crss.add(str(src.crs))
        assert r.georeferenced == int(src.crs is not None)
    assert {"EPSG:2154", "EPSG:32631", "None"} <= crss
    bare = table.loc[table["georeferenced"] == 0, "image"]
    assert len(bare) == 6 and all(f"{b}" in caplog.text for b in bare)
    assert "without georeference predicted on their pixel grid" in caplog.text
    previews = write_previews(index, root, tmp_path / "previews", n_tiles=2, dpi=50)
    assert sorted(p.stem for p in previews) == sorted(set(table["city"])) and all(p.stat().st_size > 2000
                                                                                   for p in previews)
    summary = city_table(index)
    assert list(summary["city"]) == [*cities_in("test"), *sorted(set(table["city"]) - set(cities_in("test")))]
    assert summary["tiles"].sum() == len(table) and summary["without georeference"].sum() == 6
    shares = summary.drop(columns=["city", "tiles", "Mpx", "without georeference"])
    np.testing.assert_allclose(shares.sum(axis=1), 100, atol=0.5)


def test_a_split_without_tiles_is_named(tmp_path):
    from tmf.io import write_csv
    from tmf.predict.run import predict_split

    rgb = np.zeros((3, 40, 40), dtype=np.uint8)
    write_tile(tmp_path / "raw/labeled/Nice/BDORTHO/a.tif", rgb)
    frame = pd.DataFrame([{"city": "Nice", "split": "labeled", "tile": "a", "image": "labeled/Nice/BDORTHO/a.tif",
                           "label": "", "dem": "", "height": 40, "width": 40, "crs": "EPSG:2154", "x_res": 0.5,
                           "minifrance_city": 1, "georeferenced": 1, "off_spec": ""}])
    write_csv(tmp_path / "tiles.csv", frame)
    with pytest.raises(ValueError, match=r"no tile of split 'test' to map \(predict.splits"):
        predict_split(tmp_path / "tiles.csv", tmp_path / "raw", "test", tmp_path / "m.pt", tmp_path / "o",
                      tmp_path / "o.csv", {"window": 64, "overlap": 0, "batch": 1}, device="cpu")


# ---------------------------------------------------------------- the plan and the commands
def plan_of(given: dict | None = None):
    from conftest import REPO

    from tmf.config import workflow_config
    from tmf.plan import Plan

    return Plan(workflow_config(given or {}, REPO / "params/default.yaml"))


def test_the_named_evaluation_job_saves_the_model_the_maps_read():
    plan = plan_of()
    (saving,) = plan.jobs("evaluate_model")
    assert saving.wildcards == {"protocol": "linear", "method": "simclr", "fraction": "1", "seed": "0"}
    same = plan.job("evaluate", saving.wildcards)
    assert saving.params == same.params and saving.input == same.input  # the same job, plus its model
    assert saving.output == {**same.output, "model": "results/evaluate/linear/simclr/frac1/seed0/model.pt"}
    (job,) = plan.jobs("predict")
    assert job.wildcards == {"split": "test"}
    assert job.input == {"tiles": "data/tiles.csv", "raw": "data/raw/synthetic", "model": saving.output["model"]}
    assert job.output == {"index": "results/maps/test/maps.csv", "maps": "results/maps/test/tiles"}
    assert job.cfg == {"window": 256, "overlap": 64, "batch": 8}  # params/default.yaml
    (previews,) = plan.jobs("map_previews")
    assert previews.input == {**job.output, "raw": "data/raw/synthetic"}
    # the evaluation notebook shows them: per split, a table drawn from maps.csv and the folder of previews
    shown = json.loads(plan.job("report_evaluation").params["nb"])["items"]
    assert [e for e in shown if e[0] in ("maps_per_city", "map_previews")] == [
        ["maps_per_city", {"split": "test"}, "reports/evaluation/maps_per_city-test.html"],
        ["map_previews", {"split": "test"}, "results/maps/test/previews"]]
    drawn = json.loads(plan.job("report_items_evaluation").params["cfg"])["items"]
    assert [e[3] for e in drawn if e[0] == "maps_per_city"] == [{"index": "results/maps/test/maps.csv"}]


def test_naming_another_model_changes_only_which_job_saves_it():
    before, after = plan_of(), plan_of({"predict": {"seed": 1, "splits": ["test", "unlabeled"]}})
    assert after.jobs("evaluate_model")[0].wildcards["seed"] == "1"
    assert [j.params for j in after.jobs("evaluate")] == [j.params for j in before.jobs("evaluate")]
    assert [j.wildcards["split"] for j in after.jobs("predict")] == ["test", "unlabeled"]
    assert after.job("predict", {"split": "test"}).params == before.job("predict", {"split": "test"}).params
    assert not plan_of({"predict": {"enabled": False}}).jobs("predict")
    assert not plan_of({"predict": {"enabled": False}}).jobs("evaluate_model")


@pytest.mark.parametrize("protocols, chosen", [
    (["linear", "finetune"], "finetune"),
    (["linear", "knn"], "linear"),
    (["knn", "finetune_euclidean", "finetune_horospherical"], "finetune_euclidean_d2"),
])
def test_auto_picks_the_protocol_that_maps_best(protocols, chosen):
    plan = plan_of({"evaluate": {"protocols": protocols, "hyperbolic": {"dims": [2, 3]}},
                    "predict": {"protocol": "auto"}})
    assert plan.jobs("evaluate_model")[0].wildcards["protocol"] == chosen


@pytest.mark.parametrize("predict, message", [
    ({"protocol": "knn"}, "predict.protocol = 'knn' classifies whole sub-tiles"),
    ({"protocol": "logreg", "enabled": True}, "predict.protocol = 'logreg' classifies"),
    ({"protocol": "finetun"}, "predict.protocol: unknown protocol .*'finetun' .*did you mean 'finetune'"),
    ({"protocol": "finetune", "method": "fixmatch"},
     "predict.method: unknown method evaluated with finetune 'fixmatch'"),
    ({"protocol": "finetune", "fraction": 0.5},
     r"predict.fraction = 0.5: finetune/simclr runs the label fractions \[0.01, 1.0\]"),
    ({"protocol": "finetune", "seed": 7}, r"predict.seed = 7 is not one of evaluate.seeds \[0, 1, 2\]"),
    ({"overlap": 200}, "predict.overlap = 200 px exceeds half of predict.window = 256 px"),
])
def test_a_model_outside_the_plan_is_refused_naming_the_parameter(predict, message):
    from tmf.config import ParamsError

    with pytest.raises(ParamsError, match=message):
        plan_of({"predict": predict, "evaluate": {"protocols": ["finetune", "knn"]}})


def test_predict_help_says_what_it_does():
    proc = subprocess.run([str(Path(sys.executable).parent / "tmf"), "predict", "--help"], capture_output=True,
                          text=True, check=True)
    text = " ".join(proc.stdout.split())
    assert "sliding windows" in text and "exact grid" in text and "--model" in text


def test_no_protocol_that_maps_is_named():
    from tmf.config import ParamsError

    with pytest.raises(ParamsError, match="predict.enabled: none of evaluate.protocols makes maps of RGB tiles"):
        plan_of({"evaluate": {"protocols": ["knn"]}})


def test_auto_fraction_and_seed_are_the_largest_and_the_first():
    plan = plan_of({"evaluate": {"fractions": [0.1, 0.5], "seeds": [3, 4]}, "predict": {"protocol": "finetune"}})
    assert plan.jobs("evaluate_model")[0].wildcards == {"protocol": "finetune", "method": "simclr",
                                                        "fraction": "0.5", "seed": "3"}
    plan = plan_of({"predict": {"method": "random", "fraction": 1, "seed": 1}})
    assert plan.jobs("evaluate_model")[0].wildcards == {"protocol": "linear", "method": "random",
                                                        "fraction": "1", "seed": "1"}
