"""Fig. 2.18 overlay: external GeoTIFFs resampled to 0.5 m/px, cut to the sub-tiles' ground size, embedded jointly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_appearance import CFG, make_dataset

from tmf.cli import main


def _write_tif(path, arr, res):
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
                       dtype=arr.dtype, crs="EPSG:2154", transform=Affine(res, 0, 500000, 0, -res, 6800000)) as dst:
        dst.write(arr)


def test_read_resampled_and_cut_windows(tmp_path):
    from tmf.appearance.overlay import cut_windows, read_resampled

    arr = np.zeros((3, 40, 60), np.uint8)
    arr[0] = 200
    _write_tif(tmp_path / "a.tif", arr, 0.25)  # 10 m × 15 m at 0.25 m/px
    img = read_resampled(tmp_path / "a.tif")
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8  # 0.5 m/px
    assert (img[..., 0] == 200).all() and (img[..., 1] == 0).all()
    crops = cut_windows(img, 10, 8)  # 2 × 3 windows of 10 px, each resized to 8
    assert crops.shape == (6, 8, 8, 3)
    assert cut_windows(img, 64, 8).shape == (1, 8, 8, 3)  # smaller than one window: the whole image
    _write_tif(tmp_path / "one_band.tif", arr[:1], 0.25)
    with pytest.raises(ValueError, match="band"):
        read_resampled(tmp_path / "one_band.tif")


def test_overlay_cli_and_figure(tmp_path):
    manifest, packed = make_dataset(tmp_path / "data", n_per_city=6)
    ext = tmp_path / "vaihingen"
    ext.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        _write_tif(ext / f"top_{k}.tif", rng.integers(0, 255, (3, 128, 128), dtype=np.uint8), 0.25)
    out = tmp_path / "res" / "random-resnet18"
    cfg = json.dumps(CFG)
    assert main(["appearance-encode", "--encoder", "random-resnet18", "--manifest", str(manifest), "--packed",
                 str(packed), "--out", str(out / "features.npy"), "--device", "cpu", "--cfg", cfg]) == 0
    assert main(["appearance-overlay", "--encoder", "random-resnet18", "--manifest", str(manifest), "--packed",
                 str(packed), "--features", str(out / "features.npy"), "--overlay-dir", str(ext), "--out",
                 str(out / "overlay.npz"), "--device", "cpu", "--cfg", cfg]) == 0
    with np.load(out / "overlay.npz") as z:
        # 128 px at 0.25 m → 64 px at 0.5 m → 4 windows of the sub-tiles' 32 px each, per file.
        assert z["overlay"].shape == (8, 2) and z["embedding"].shape == (16 * 6, 2)
        assert sorted(set(z["files"].tolist())) == ["top_0.tif", "top_1.tif"]
    emb = str(out / "embedding_seed0.npy")
    assert main(["appearance-embed", "--features", str(out / "features.npy"), "--seed", "0", "--out", emb,
                 "--cfg", cfg]) == 0
    assert main(["appearance-score", "--manifest", str(manifest), "--embeddings", emb, "--out-dir", str(out),
                 "--encoder", "random-resnet18", "--cfg", cfg]) == 0
    assert main(["appearance-figures", "--manifest", str(manifest), "--dir", str(out), "--overlay",
                 str(out / "overlay.npz"), "--dpi", "40"]) == 0
    assert (out / "figures" / "overlay.png").stat().st_size > 0
    assert main(["appearance-overlay", "--encoder", "random-resnet18", "--manifest", str(manifest), "--packed",
                 str(packed), "--features", str(out / "features.npy"), "--overlay-dir", str(tmp_path / "none"),
                 "--out", str(out / "o2.npz"), "--cfg", cfg]) == 2
