"""The method registry: every method trains one step on a tiny ResNet-18 batch; EMA targets and queues behave."""

import copy
import functools
import math

import pytest
import torch

from tmf.config import schema, validate
from tmf.modalities import is_multimodal
from tmf.models.resnet import resnet18
from tmf.ssl.methods import METHODS, CropSpec, StepOutput, build_method, default_method_cfg

torch.set_num_threads(1)

# small heads so that the test is quick; everything else at the schema's defaults
SMALL = {"hidden_dim": 32, "proj_dim": 16}
QUEUED = ("mocov2", "densecl", "dense_ot_exact", "dense_ot_entropic", "dense_ot_unbalanced", "dense_ot_uniform")
EMA = ("byol", "mocov2", "densecl")  # the dense OT variants share densecl's class


def _cfg(name):
    cfg = dict(SMALL)
    if name in ("ssw", "sw", "wang_isola"):
        cfg["proj_dim"] = 3
    if name in QUEUED:
        cfg["queue_size"] = 20  # not a multiple of the batch: the ring buffer wraps
    if name == "hydes":
        cfg.update(n_local=2)
    return cfg


def _views(method, n=4, crop=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, max(8, round(s.size_factor * crop)), max(8, round(s.size_factor * crop)),
                        generator=g) for s in method.crop_specs()]


@functools.lru_cache(maxsize=1)
def _resnet18():
    torch.manual_seed(0)
    return resnet18()


def _build(name, seed=0):
    torch.manual_seed(seed)
    return build_method(name, copy.deepcopy(_resnet18()), _cfg(name))


def test_registry_matches_schema():
    props = schema()["properties"]["pretrain"]["properties"]["method_params"]["properties"]
    assert set(METHODS) == set(props)
    expected = {"simclr", "mocov2", "byol", "barlow_twins", "iot_ua", "iot_u1", "iot_uab", "ot_sample", "ot_feature",
                "ssw", "sw", "wang_isola", "hydes", "densecl", "dense_ot_exact", "dense_ot_entropic",
                "dense_ot_unbalanced", "dense_ot_uniform", "mm_ssl", "mm_ssl_star", "mm_ssl_rgb", "mm_ssl_dem"}
    assert set(METHODS) == expected
    for name, p in props.items():
        for key, spec in p["properties"].items():
            assert "default" in spec and spec.get("description"), f"{name}.{key}"
    filled = validate({"pretrain": {"method_params": {"simclr": {"temperature": 0.1}}}})
    assert filled["pretrain"]["method_params"]["simclr"] == {**default_method_cfg("simclr"), "temperature": 0.1}
    assert default_method_cfg("iot_uab")["eps"] == 0.5 and default_method_cfg("ot_sample")["eps"] == 0.01
    assert default_method_cfg("ssw")["lambd"] == 20 and default_method_cfg("barlow_twins")["lambd"] == 0.0051


@pytest.mark.parametrize("name", sorted(m for m in METHODS if not is_multimodal(m)))  # those: test_multimodal.py
def test_method_trains_one_step(name):
    method = _build(name)
    method.train()
    specs = method.crop_specs()
    assert len(specs) >= 2 and all(isinstance(s, CropSpec) for s in specs)
    assert all(0 < s.size_factor <= 1 and 0 < s.scale[0] <= s.scale[1] <= 1 for s in specs)
    assert specs[0].size_factor == specs[1].size_factor == 1.0  # global crops first
    out = method(_views(method))
    assert isinstance(out, StepOutput)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.z_a.shape == out.z_b.shape and out.z_a.shape[0] == 4
    torch.testing.assert_close(out.z_a.norm(dim=1), torch.ones(4))
    assert not out.z_a.requires_grad
    out.loss.backward()
    trainable = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    assert trainable
    for n, p in trainable:
        assert p.grad is not None, f"{name}: no gradient on {n}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient on {n}"
    assert not method.backbone.fc.weight.requires_grad  # unused by SSL, kept for torchvision keys
    for n, p in method.named_parameters():
        if n.startswith(("target_", "key_")):
            assert not p.requires_grad and p.grad is None


def test_hydes_crop_specs_follow_dino_multicrop():
    specs = build_method("hydes", resnet18(), SMALL).crop_specs()
    assert specs[:2] == [CropSpec(1.0, (0.4, 1.0))] * 2
    assert specs[2:] == [CropSpec(0.5, (0.05, 0.4))] * 6
    assert build_method("simclr", resnet18(), SMALL).crop_specs() == [CropSpec(1.0, (0.2, 1.0))] * 2


def _pairs(method):
    online = dict(method.named_parameters())
    out = []
    for n, p in method.named_parameters():
        for prefix, repl in (("target_", ""), ("key_", "")):
            if n.startswith(prefix):
                out.append((online[n.replace(prefix, repl, 1)], p))
    return out


@pytest.mark.parametrize("name", EMA)
def test_ema_targets_move_by_the_momentum(name):
    method = _build(name)
    pairs = _pairs(method)
    assert pairs and all(not t.requires_grad for _, t in pairs)
    with torch.no_grad():
        for o, _ in pairs:
            o.add_(torch.randn_like(o) * 0.1)
    progress = 0.3
    m = (1 - (1 - 0.996) * (math.cos(math.pi * progress) + 1) / 2) if name == "byol" else 0.999
    before = [(o.detach().clone(), t.detach().clone()) for o, t in pairs]
    method.update_targets(progress)
    for (o0, t0), (_, t) in zip(before, pairs, strict=True):
        torch.testing.assert_close(t, m * t0 + (1 - m) * o0, rtol=1e-6, atol=1e-7)
    if name == "byol":
        assert method.momentum_at(0.0) == pytest.approx(0.996)
        assert method.momentum_at(1.0) == pytest.approx(1.0)
        snap = [t.detach().clone() for _, t in pairs]
        method.update_targets(1.0)  # momentum 1 at the end: the target stops moving
        for s, (_, t) in zip(snap, pairs, strict=True):
            torch.testing.assert_close(t, s)


def test_moco_queue_is_a_ring_buffer_of_keys():
    method = _build("mocov2")
    q0 = method.key_queue.clone()
    assert q0.shape == (20, 16)
    out = method(_views(method, n=8))
    keys = out.z_b
    torch.testing.assert_close(method.key_queue[:8], keys)
    torch.testing.assert_close(method.key_queue[8:], q0[8:])
    assert int(method.key_ptr) == 8
    method(_views(method, n=8, seed=1))
    method(_views(method, n=8, seed=2))  # 24 keys into 20 slots: wraps to slot 4
    assert int(method.key_ptr) == 4


def test_dense_methods_accept_in_batch_negatives_and_larger_crops():
    torch.manual_seed(0)
    method = build_method("dense_ot_exact", resnet18(), {**SMALL, "queue_size": 0, "soft": True})
    out = method(_views(method, n=4, crop=64))  # 2 x 2 patches per view
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert not hasattr(method, "global_queue")


def test_unknown_method_and_parameter_are_errors():
    with pytest.raises(ValueError, match="unknown pretraining method 'simsiam'.*simclr"):
        build_method("simsiam", resnet18(), {})
    with pytest.raises(ValueError, match="unknown pretraining method"):
        default_method_cfg("simsiam")
    with pytest.raises(ValueError, match=r"method_params.simclr.*\['tau'\]"):
        build_method("simclr", resnet18(), {"tau": 0.1})
    method = build_method("simclr", resnet18(), SMALL)
    with pytest.raises(ValueError, match="expected 2 views"):
        method([torch.randn(2, 3, 32, 32)])
