"""Multi-modal pretraining (tmf.ssl.multimodal) and the elevation input (tmf.models.elevation): gradients reach every
modality's encoder, the star variant, encoder.pt, the engine on packed elevation, named errors without it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pretrain_toy import make_packed, toy_cfg

from tmf.config import ParamsError, validate
from tmf.models.elevation import ElevationEncoder, FusedEncoder, elevation_input
from tmf.models.resnet import resnet18
from tmf.ssl.methods import build_method
from tmf.ssl.multimodal import MM_METHODS
from tmf.ssl.train import pretrain

torch.set_num_threads(1)
ELEVATION = validate({"elevation": {"encoder": {"widths": [8, 8, 16, 16]}}})["elevation"]
SMALL = {"hidden_dim": 16, "proj_dim": 8}


def _method(name, elevation=ELEVATION):
    torch.manual_seed(0)
    return build_method(name, resnet18(), SMALL, elevation=elevation)


def _views(method, n=4, crop=32):
    g = torch.Generator().manual_seed(0)
    chans = {"rgb": 3, "dem": 1}
    return {m: [torch.randn(n, chans[m], crop, crop, generator=g) for _ in method.crop_specs()]
            for m in method.modalities}


@pytest.mark.parametrize("name", [c.name for c in MM_METHODS])
def test_one_step_reaches_every_modality_encoder(name):
    method = _method(name)
    method.train()
    out = method(_views(method))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    for m in method.modalities:
        grads = [p.grad for p in method.encoder(m).parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), f"{name}: {m} encoder"
        assert any(g.abs().sum() > 0 for g in grads)
    for n, p in method.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient on {n}"
    assert len(method.crop_specs()) == (1 if name == "mm_ssl_star" else 2)


def test_modalities_star_and_payload():
    both = _method("mm_ssl")
    assert both.modalities == ("rgb", "dem") and isinstance(both.encoder("dem"), ElevationEncoder)
    assert _method("mm_ssl_dem").modalities == ("dem",) and _method("mm_ssl_rgb").modalities == ("rgb",)
    star = _method("mm_ssl_star")
    off = star.view_augment(None)
    assert off.jitter_p == off.blur_p == off.flip_p == 0 and not off.rot90 and star.crop_specs()[0].scale == (1, 1)
    with pytest.raises(ValueError, match="expected 2 view"):
        both({"rgb": _views(both)["rgb"]})
    with pytest.raises(ValueError, match="needs the elevation section"):
        _method("mm_ssl", elevation=None)
    payload = both.encoder_payload("resnet18")
    assert payload["modalities"] == ["rgb", "dem"] and "conv1.weight" in payload["state_dict"]
    assert payload["dem"]["config"] == {"in_channels": 1, "widths": [8, 8, 16, 16], "blocks": 1}
    assert payload["dem"]["input"] == {"normalise": "relative", "scale_m": 10.0, "slope": False}
    assert "state_dict" not in _method("mm_ssl_dem").encoder_payload("resnet18")


def test_elevation_input_relative_absolute_and_slope():
    z = torch.zeros(2, 6, 6)
    z[0] = 100 + 0.5 * torch.arange(6.0).view(1, 6)  # a plane: 0.5 m per 0.5 m pixel along x, slope 1
    z[1] = 40.0
    valid = torch.ones(2, 6, 6, dtype=torch.uint8)
    valid[0, 0, 0] = 0
    cfg = dict(ELEVATION, slope=True)
    x = elevation_input(z, valid, cfg)
    assert x.shape == (2, 2, 6, 6) and x[0, 0, 0, 0] == 0 and x[0, 1, 0, 0] == 0
    ok = valid[0].bool()
    assert float(x[0, 0][ok].mean()) == pytest.approx(0.0, abs=1e-6)  # relative to the valid mean
    assert float(x[0, 0, 3, 5] - x[0, 0, 3, 0]) == pytest.approx(2.5 / 10.0)  # metres / scale_m
    torch.testing.assert_close(x[0, 1, 2:, :], torch.ones(4, 6))  # |grad z| = 1, one-sided at the borders
    assert x[0, 1, 0, 1] == x[0, 1, 1, 0] == 0 and x[0, 1, 1, 1] == 1  # (0, 0), invalid, is their neighbour
    assert torch.all(x[1] == 0)  # a flat sub-tile: relative height and slope 0
    a = elevation_input(z, valid, dict(ELEVATION, normalise="absolute"), reference=(70.0, 30.0))
    assert float(a[1, 0, 0, 0]) == pytest.approx((40 - 70) / 30)
    with pytest.raises(ValueError, match="reference"):
        elevation_input(z, valid, dict(ELEVATION, normalise="absolute"))


def test_fused_encoder_concatenates_stages():
    torch.manual_seed(0)
    rgb, dem = resnet18(), ElevationEncoder(2, (8, 8, 16, 16))
    fused = FusedEncoder({"rgb": rgb, "dem": dem}, {"rgb": 3, "dem": 2})
    x = torch.randn(2, 5, 64, 64)
    maps = fused.feature_maps(x)
    assert [m.shape[1] for m in maps] == [72, 136, 272, 528] and fused.stage_channels == (72, 136, 272, 528)
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]  # strides 4..32, as the ResNet's
    torch.testing.assert_close(maps[1][:, :128], rgb.feature_maps(x[:, :3])[1])
    torch.testing.assert_close(maps[1][:, 128:], dem.feature_maps(x[:, 3:])[1])
    pooled = fused.pooled_by_modality(maps[-1])
    assert pooled["rgb"].shape == (2, 512) and pooled["dem"].shape == (2, 16)
    with pytest.raises(ValueError, match="expected 5 input channels"):
        fused.feature_maps(x[:, :3])


def _cfg(name):
    return toy_cfg(methods=[name], crop_size=16, held_batch=8,
                   method_params={name: validate({})["pretrain"]["method_params"][name] | SMALL})


@pytest.mark.parametrize("name", ["mm_ssl", "mm_ssl_star", "mm_ssl_dem"])
def test_engine_pretrains_on_packed_elevation(tmp_path, name):
    manifest, packed, _ = make_packed(tmp_path / "data", dem=True)
    elev = copy.deepcopy(ELEVATION)
    m = pretrain(_cfg(name), manifest, packed, tmp_path / "out", method=name, seed=0, device="cpu", threads=1,
                 elevation=elev)
    assert np.isfinite(m["final_loss"]) and m["params"]["elevation"] == elev
    enc = torch.load(tmp_path / "out" / "encoder.pt", map_location="cpu", weights_only=True)
    assert enc["method"] == name and "dem" in enc
    assert ("state_dict" in enc) == (name != "mm_ssl_dem")
    assert set(m["diagnostics"]) >= {"alignment", "uniformity", "effective_rank"}


def test_elevation_methods_refuse_data_without_it(tmp_path):
    manifest, packed, _ = make_packed(tmp_path / "data")
    with pytest.raises(ParamsError, match="pretrain.methods: mm_ssl needs elevation"):
        pretrain(_cfg("mm_ssl"), manifest, packed, tmp_path / "out", method="mm_ssl", seed=0, device="cpu",
                 threads=1, elevation=ELEVATION)
    # an RGB-only member of the family needs none
    m = pretrain(_cfg("mm_ssl_rgb"), manifest, packed, tmp_path / "out2", method="mm_ssl_rgb", seed=0,
                 device="cpu", threads=1, elevation=ELEVATION)
    assert np.isfinite(m["final_loss"])
