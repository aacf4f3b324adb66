"""The multi-modal fine-tuning protocols (tmf.evaluate.multimodal): inputs and crops of both modalities, encoders read
from encoder.pt, MM-SupCon + CE, the jobs a method may run, and named errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_evaluate import make_tiny, tiny_cfg

from tmf.config import ParamsError, validate
from tmf.data.minifrance import IGNORE_INDEX
from tmf.data.packed import open_packed
from tmf.evaluate.engine import TrainPool
from tmf.evaluate.multimodal import ModalSupCon, dominant_scored_class, load_modal_encoders
from tmf.evaluate.run import run_job
from tmf.models.elevation import ElevationEncoder, FusedEncoder
from tmf.models.resnet import resnet18
from tmf.ssl.losses import mm_supcon

torch.set_num_threads(1)
ELEVATION = validate({"elevation": {"encoder": {"widths": [8, 8, 16, 16]}}})["elevation"]
HEIGHT = {0: 0.0, 1: 3.0, 5: 1.0, 7: 1.5, 10: 12.0, 14: -6.0, 15: 0.0}  # forest on hills, water below


def add_elevation(manifest, packed):
    """Give the tiny set an elevation tied to its classes (and an invalid corner in the first sub-tile)."""
    frame = pd.read_csv(manifest)
    labels = np.load(packed / "labels.npy")
    z = np.vectorize(HEIGHT.get)(labels).astype(np.float32) + 50.0
    valid = np.ones(labels.shape, np.uint8)
    valid[0, :4, :4] = 0
    z[valid == 0] = 0
    np.save(packed / "dem.npy", z)
    np.save(packed / "dem_valid.npy", valid)
    zv = np.where(valid == 1, z, np.nan)
    frame = frame.assign(dem="x.tif", has_dem=1, dem_min=np.nanmin(zv, (1, 2)), dem_mean=np.nanmean(zv, (1, 2)),
                         dem_max=np.nanmax(zv, (1, 2)), dem_valid=valid.mean((1, 2)).round(6))
    frame.to_csv(manifest, index=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mm")
    manifest, packed = make_tiny(root)
    add_elevation(manifest, packed)
    return manifest, packed


def _cfg(**over):
    cfg = tiny_cfg(protocols=["finetune_mm", "supcon_mm"], **over)
    return {**cfg, "elevation": ELEVATION}


def test_training_crops_move_both_modalities_together():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (5, 24, 24, 3), generator=g, dtype=torch.uint8).numpy()
    extra = torch.from_numpy(imgs[..., 0].astype(np.float32)).unsqueeze(1)  # the red channel as a second modality
    pool = TrainPool(imgs, None, torch.device("cpu"), crop=16, augment=True, extra=extra)
    for _ in range(4):  # crops, flips and rotations drawn per sample
        x8, _ = pool.sample(6, g)
        x = pool.to_input(x8)
        assert x.shape == (6, 4, 16, 16)
        assert torch.equal(x[:, 3], x8[:, 0].float())  # pixel by pixel
    dem_only = TrainPool(imgs, None, torch.device("cpu"), 16, extra=extra, rgb=False)
    assert dem_only.to_input(dem_only.sample(2, g)[0]).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="co-registered"):
        TrainPool(imgs, None, torch.device("cpu"), 16, extra=extra[:, :, :20])


def test_dominant_class_and_the_supcon_term():
    y = torch.tensor([[[1, 1], [2, IGNORE_INDEX]], [[IGNORE_INDEX] * 2] * 2, [[3, 0], [0, 3]]])
    assert dominant_scored_class(y, 14, IGNORE_INDEX).tolist() == [1, -1, 0]
    torch.manual_seed(0)
    fused = FusedEncoder({"rgb": resnet18(), "dem": ElevationEncoder(1, (8, 8, 16, 16))}, {"rgb": 3, "dem": 1})
    term = ModalSupCon(fused, 8, 0.1, 14, IGNORE_INDEX)
    x = torch.randn(4, 4, 32, 32)
    y = torch.tensor([0, 0, 5, IGNORE_INDEX]).view(4, 1, 1).expand(4, 32, 32)
    stages = fused.feature_maps(x)
    pooled = fused.pooled_by_modality(stages[-1])
    ref = mm_supcon([term.projectors[m](pooled[m]) for m in ("rgb", "dem")], torch.tensor([0, 0, 5, -1]), 0.1)
    torch.testing.assert_close(term(stages, y), ref)
    assert not any(p is q for p in term.parameters() for q in fused.parameters())  # trained once, as the backbone


@pytest.mark.parametrize("protocol", ["finetune_mm_rgb_dem", "finetune_mm_dem", "supcon_mm_rgb_dem"])
def test_random_init_runs_every_subset(data, tmp_path, protocol):
    manifest, packed = data
    m = run_job(protocol, "random", 0.5, 0, manifest, packed, None, tmp_path, _cfg(), device="cpu", threads=1)
    assert m["subset"] == protocol.split("mm_")[1] and np.isfinite(m["train"]["final_loss"])
    assert 0 <= m["oa"] <= 1 and m["modalities"] == m["subset"].split("_")
    assert m["recipe"]["alpha"] == (0.5 if protocol.startswith("supcon") else 0.0)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["protocol"] == protocol and (tmp_path / "predictions.png").is_file()


def test_pretrained_encoders_are_read_and_checked(data, tmp_path):
    from tmf.ssl.methods import build_method

    torch.manual_seed(0)
    method = build_method("mm_ssl", resnet18(), {"hidden_dim": 8, "proj_dim": 4}, elevation=ELEVATION)
    path = tmp_path / "encoder.pt"
    torch.save(method.encoder_payload("resnet18"), path)
    enc = load_modal_encoders("resnet18", ELEVATION, path, ("rgb", "dem"))
    for m in ("rgb", "dem"):
        torch.testing.assert_close(enc[m].state_dict(), method.encoder(m).state_dict())
    with pytest.raises(ValueError, match="pretrained with .* but elevation.encoder"):
        load_modal_encoders("resnet18", {**ELEVATION, "slope": True}, path, ("dem",))
    torch.save(build_method("simclr", resnet18(), {}).encoder_payload("resnet18"), path)
    with pytest.raises(ValueError, match="no DEM encoder"):
        load_modal_encoders("resnet18", ELEVATION, path, ("dem",))
    m = run_job("finetune_mm_rgb", "simclr", 0.5, 0, *data, path, tmp_path / "o", _cfg(), device="cpu", threads=1)
    assert m["encoder"] == str(path)


def test_jobs_a_method_may_not_run_and_data_without_elevation(tmp_path):
    manifest, packed = make_tiny(tmp_path)
    cfg = _cfg()
    with pytest.raises(ValueError, match="cannot be evaluated on the modalities 'rgb_dem'"):
        run_job("finetune_mm_rgb_dem", "simclr", 1.0, 0, manifest, packed, "x.pt", tmp_path, cfg, device="cpu")
    with pytest.raises(ValueError, match="pretrained no RGB encoder"):
        run_job("finetune", "mm_ssl_dem", 1.0, 0, manifest, packed, "x.pt", tmp_path, cfg, device="cpu")
    with pytest.raises(ValueError, match="subset suffix"):
        run_job("finetune_mm", "random", 1.0, 0, manifest, packed, None, tmp_path, cfg, device="cpu")
    with pytest.raises(ParamsError, match=r"evaluate.protocols: finetune_mm \(dem\) needs elevation"):
        run_job("finetune_mm_dem", "random", 1.0, 0, manifest, packed, None, tmp_path, cfg, device="cpu")
    assert not open_packed(manifest, packed).has_dem


def test_the_grid_has_table_4_3_shape(tmp_path):
    from tmf.evaluate.summary import GRID_COLUMNS, aggregate_table, modality_grid
    from tmf.report.items import Context
    from tmf.report.scores import modality_grid as grid_table

    cells = [("random", s) for s in ("rgb", "dem", "rgb_dem")] + [("mm_ssl_dem", "dem"), ("mm_ssl", "rgb_dem"),
                                                                   ("mm_ssl_star", "rgb")]
    rows = [{"protocol": f"finetune_mm_{s}", "method": m, "test_set": "test_cities", "fraction": 0.01, "seed": k,
             "n_train": 3, "oa": 0.5 + 0.01 * k, "miou": 0.2 + 0.01 * k, "kappa": 0.1, "hierarchical_cost": 1.0,
             "status": "ok", "reason": "", "level": "pixel", "architecture": ""}
            for m, s in cells for k in range(3)]
    rows.append({**rows[0], "protocol": "finetune", "method": "simclr"})  # not a multi-modal run: not in the grid
    grid = modality_grid(aggregate_table(pd.DataFrame(rows)))
    assert list(grid.columns) == list(GRID_COLUMNS) and len(grid) == len(cells)
    assert list(dict.fromkeys(grid["pretraining"])) == ["random init", "DEM", "RGB + DEM", "RGB + DEM ⋆"]
    assert grid["miou_mean"].iloc[0] == pytest.approx(0.21) and grid["n_seeds"].eq(3).all()
    agg_csv = tmp_path / "agg.csv"
    aggregate_table(pd.DataFrame(rows)).to_csv(agg_csv, index=False)
    miou = grid_table(Context({"aggregate": str(agg_csv)}))
    assert list(miou.columns) == ["protocol", "test set", "label fraction", "pretraining", "RGB", "DEM", "RGB + DEM",
                                  "seeds"]
    table = miou.set_index("pretraining")
    assert table.loc["random init", "RGB"] == "21.0 ± 1.0" and table.loc["DEM", "RGB"] == "—"
    assert table.loc["RGB + DEM", "RGB + DEM"] != "—" and table.loc["RGB + DEM ⋆", "DEM"] == "—"
    assert (miou["label fraction"] == "1 %").all() and (miou["test set"] == "the test cities").all()
