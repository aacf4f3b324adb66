"""The pretraining engine (tmf.ssl.train, tmf.ssl.optim): determinism, resumption, outputs."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from pretrain_toy import ToySimCLR, make_packed, toy_cfg

from tmf.models.resnet import resnet18
from tmf.schedule import lr_at
from tmf.ssl.checkpoint import read_checkpoint
from tmf.ssl.diagnostics import embedding_diagnostics
from tmf.ssl.optim import LARS, build_optimizer, param_groups
from tmf.ssl.train import CHECKPOINT, pretrain


@pytest.fixture()
def data(tmp_path):
    manifest, packed, _ = make_packed(tmp_path / "data")
    return manifest, packed


def _run(data, out, **kw):
    manifest, packed = data
    cfg = kw.pop("cfg", toy_cfg())
    return pretrain(cfg, manifest, packed, out, method="toy", seed=kw.pop("seed", 0), device="cpu", threads=1,
                    method_factory=ToySimCLR, **kw)


def _encoder(out):
    return torch.load(out / "encoder.pt", map_location="cpu")


# -- schedule and optimizers -------------------------------------------------------------------------------


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 10) == pytest.approx(0.5)  # half way through the cosine
    assert lr_at(100, 100, 1.0, 10, final_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr_at(0, 5, 2.0, 0) == pytest.approx(2.0)


def test_weight_decay_groups_exclude_biases_and_batchnorm():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    decay, no_decay = param_groups(m, 0.1)
    assert decay["params"] == [m[0].weight] and decay["weight_decay"] == 0.1
    assert {id(p) for p in no_decay["params"]} == {id(m[0].bias), id(m[1].weight), id(m[1].bias)}
    assert no_decay["weight_decay"] == 0.0


def test_lars_step_matches_the_formula():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(torch.randn(5))
    gw, gb = torch.randn(5, 3), torch.randn(5)
    w0, b0 = w.detach().clone(), b.detach().clone()
    opt = LARS([dict(params=[w], weight_decay=0.01, lars=True), dict(params=[b], weight_decay=0.0, lars=False)],
               lr=0.5, momentum=0.9, trust_coefficient=0.001)
    for _ in range(2):
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
    # by hand: u = η‖w‖/(‖g‖+λ‖w‖)·(g+λw); v1 = u1; v2 = 0.9 v1 + u2; w ← w − lr·v
    def u(wt):
        trust = 0.001 * wt.norm() / (gw.norm() + 0.01 * wt.norm())
        return trust * (gw + 0.01 * wt)
    v1 = u(w0)
    w1 = w0 - 0.5 * v1
    v2 = 0.9 * v1 + u(w1)
    torch.testing.assert_close(w.detach(), w1 - 0.5 * v2)
    torch.testing.assert_close(b.detach(), b0 - 0.5 * gb - 0.5 * (0.9 * gb + gb))


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="pretrain.optimizer"):
        build_optimizer(torch.nn.Linear(2, 2), "adam", 0.1, 0.0, 0.9)


def test_diagnostics_against_hand_computed_values():
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    d = embedding_diagnostics(h, h)
    assert d["alignment"] == pytest.approx(0.0)
    # normalised rows e1, e2, -e1: squared distances 2, 4, 2
    assert d["uniformity"] == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3))
    s = torch.linalg.svdvals(h)  # 3.162..., 2
    p = s / s.sum()
    assert d["effective_rank"] == pytest.approx(float(torch.exp(-(p * p.log()).sum())))


# -- runs ----------------------------------------------------------------------------------------------------


def test_outputs_are_written_and_mlflow_disabled_path(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    metrics = _run(data, out, cfg=toy_cfg(checkpoint_every=100))
    enc = _encoder(out)
    assert enc["arch"] == "resnet18" and enc["method"] == "toy"
    resnet18().load_state_dict(enc["state_dict"], strict=True)  # torchvision keys
    m = json.loads((out / "metrics.json").read_text())
    assert m == json.loads(json.dumps(metrics))
    for key in ("method", "seed", "params", "steps", "final_loss", "images_per_s", "diagnostics"):
        assert key in m
    assert m["steps"] == 4 and m["seed"] == 0 and m["params"]["batch_size"] == 8
    assert set(m["diagnostics"]) >= {"alignment", "uniformity", "effective_rank"}
    assert 0 <= m["diagnostics"]["alignment"] <= 4 and m["diagnostics"]["uniformity"] <= 0
    h = pd.read_csv(out / "history.csv")
    assert list(h.columns) == ["step", "epoch", "loss", "lr", "images_per_s"]
    assert h["step"].tolist() == [1, 2, 3, 4] and h["loss"].notna().all()
    assert h["lr"].iloc[0] == pytest.approx(0.3) and h["lr"].iloc[-1] < h["lr"].iloc[0]
    assert m["final_loss"] == pytest.approx(h["loss"].iloc[-1])
    assert (out / CHECKPOINT).exists()  # kept for a resumption
    assert not (tmp_path / "results" / "mlflow" / "mlflow.db").exists()  # no run given: no store


def test_same_seed_same_weights_other_seed_other_weights(data, tmp_path):
    cfg = toy_cfg(steps=2, checkpoint_every=100)
    _run(data, tmp_path / "a", cfg=cfg)
    _run(data, tmp_path / "b", cfg=cfg)
    _run(data, tmp_path / "c", cfg=cfg, seed=1)
    a, b, c = (_encoder(tmp_path / k)["state_dict"] for k in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    ha, hb = (pd.read_csv(tmp_path / k / "history.csv") for k in "ab")
    assert ha["loss"].tolist() == hb["loss"].tolist()


def test_killed_and_resumed_run_is_bit_identical(data, tmp_path):
    cfg = toy_cfg(steps=4, checkpoint_every=2, log_every=1,
                  optimizer="sgd", augment={"blur_p": 1.0})
    _run(data, tmp_path / "full", cfg=cfg)
    out = tmp_path / "resumed"
    stopped = _run(data, out, cfg=cfg, stop_after=3)  # checkpoint at step 2, killed after step 3
    assert stopped == {"stopped_at": 3}
    assert not (out / "encoder.pt").exists()
    assert read_checkpoint(out / CHECKPOINT)["step"] == 2
    _run(data, out, cfg=cfg)  # finds the checkpoint and resumes from step 2
    a, b = _encoder(tmp_path / "full")["state_dict"], _encoder(out)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    full_ck = read_checkpoint(tmp_path / "full" / CHECKPOINT)
    res_ck = read_checkpoint(out / CHECKPOINT)
    assert torch.equal(full_ck["model"]["ema_w"], res_ck["model"]["ema_w"])  # method state resumes too
    hf, hr = pd.read_csv(tmp_path / "full" / "history.csv"), pd.read_csv(out / "history.csv")
    assert hr["step"].tolist() == [1, 2, 3, 4]  # the curve continues, not restarts
    assert hf["loss"].tolist() == hr["loss"].tolist()


def test_checkpoint_of_other_parameters_is_not_resumed(data, tmp_path, caplog):
    """A changed parameter re-runs the job (Snakemake's params trigger): the stale checkpoint must not be
    resumed, and the result equals a fresh run with the new parameters."""
    out = tmp_path / "out"
    _run(data, out, cfg=toy_cfg(steps=2))
    with caplog.at_level("WARNING"):
        _run(data, out, cfg=toy_cfg(steps=2, lr=0.1))
    assert "other parameters" in caplog.text
    _run(data, tmp_path / "fresh", cfg=toy_cfg(steps=2, lr=0.1))
    a, b = _encoder(out)["state_dict"], _encoder(tmp_path / "fresh")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    caplog.clear()
    with caplog.at_level("INFO"):
        _run(data, out, cfg=toy_cfg(steps=2, lr=0.1, checkpoint_every=7))  # a resume-free parameter may change
    assert "resumed from" in caplog.text


def test_multicrop_and_adamw(data, tmp_path):
    def factory(backbone):
        return ToySimCLR(backbone, multicrop=True)

    manifest, packed = data
    m = pretrain(toy_cfg(steps=2, optimizer="adamw", lr=1e-3, weight_decay=0.05, checkpoint_every=100), manifest, packed,
                 tmp_path / "mc", method="toy", seed=0, device="cpu", threads=1, method_factory=factory)
    assert m["steps"] == 2 and math.isfinite(m["final_loss"])


def test_divergence_is_reported(data, tmp_path):
    with pytest.raises(FloatingPointError, match="lower pretrain.lr"):
        _run(data, tmp_path / "nan", cfg=toy_cfg(steps=3, optimizer="sgd", lr=1e30, warmup_steps=0,
                                                      checkpoint_every=100))


# -- the command ---------------------------------------------------------------------------------------------


def test_tmf_pretrain_command(data, tmp_path, monkeypatch, capsys):
    from tmf.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TMF_TRACKING_CFG", raising=False)
    manifest, packed = data
    cfg = {k: v for k, v in toy_cfg(steps=2, batch_size=8).items() if k not in ("methods", "seeds")}
    cfg["method_params"] = {"simclr": {"hidden_dim": 32, "proj_dim": 16}}
    out = tmp_path / "results" / "pretrain" / "simclr" / "seed3"
    argv = ["pretrain", "--method", "simclr", "--seed", "3", "--manifest", str(manifest), "--packed", str(packed),
            "--out", str(out), "--device", "cpu", "--threads", "1", "--cfg", json.dumps(cfg),
            "--tracking-cfg", json.dumps({"enabled": False})]
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "simclr" and m["seed"] == 3 and m["steps"] == 2
    assert m["params"]["method_params"]["simclr"]["proj_dim"] == 16
    # bad input: a clear message, exit status 2, no traceback
    bad = argv.copy()
    bad[bad.index(str(manifest))] = str(tmp_path / "missing.csv")
    bad[bad.index(str(out))] = str(tmp_path / "other")
    assert main(bad) == 2
    assert "manifest not found" in capsys.readouterr().err
    bad_cfg = argv.copy()
    bad_cfg[bad_cfg.index("--cfg") + 1] = json.dumps({**cfg, "optimizer": "adam"})
    assert main(bad_cfg) == 2
    assert "optimizer" in capsys.readouterr().err


# -- checkpoints bound to what produced them (issue 12) ---------------------------------------------------------


def _same_encoders(a, b) -> bool:
    ea, eb = _encoder(a)["state_dict"], _encoder(b)["state_dict"]
    return all(torch.equal(ea[k], eb[k]) for k in ea)


def test_checkpoint_of_other_training_data_is_not_resumed(tmp_path, caplog):
    """A new subsample (``subsample.seed`` changed) re-runs pack and pretraining with the same parameters: the
    checkpoint trained on the old sub-tiles must not be resumed. The same bytes written again (a re-run of the
    data stage) still resume: the fingerprint is of the content."""
    import numpy as np

    old = make_packed(tmp_path / "old")[:2]
    new = make_packed(tmp_path / "new", seed=1)[:2]
    cfg = toy_cfg(steps=4, checkpoint_every=2)
    out = tmp_path / "out"
    _run(old, out, cfg=cfg, stop_after=3)
    np.save(old[1] / "images.npy", np.load(old[1] / "images.npy"))
    old[0].write_bytes(old[0].read_bytes())
    with caplog.at_level("INFO"):
        assert _run(old, out, cfg=cfg, stop_after=3) == {"stopped_at": 3}
    assert "resumed from" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        _run(new, out, cfg=cfg)
    assert "other training data" in caplog.text and "resumed" not in caplog.text
    _run(new, tmp_path / "fresh", cfg=cfg)
    assert _same_encoders(out, tmp_path / "fresh")


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _random(p):
    import numpy as np

    p.write_bytes(np.random.default_rng(0).bytes(4096))


def _empty(p):
    p.write_bytes(b"")


def _patch(p):
    """64 KiB of finite float32 values written over the middle of the file (inside the saved tensors)."""
    import numpy as np

    patch = np.random.default_rng(0).standard_normal(16384).astype(np.float32).tobytes()
    with open(p, "r+b") as f:
        f.seek(p.stat().st_size // 2)
        f.write(patch)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """An uninterrupted run and a run killed after step 3 (its checkpoint at step 2), on the same data."""
    root = tmp_path_factory.mktemp("ck")
    data = make_packed(root / "data")[:2]
    _run(data, root / "fresh", cfg=toy_cfg(steps=4, checkpoint_every=2))
    _run(data, root / "killed", cfg=toy_cfg(steps=4, checkpoint_every=2), stop_after=3)
    return data, root / "fresh", root / "killed"


@pytest.mark.parametrize("damage", [_truncate, _random, _empty, _patch], ids=["truncated", "random", "empty", "patch"])
def test_corrupt_checkpoint_is_moved_aside_and_training_starts_over(killed, tmp_path, caplog, damage):
    import shutil

    data, fresh, killed_dir = killed
    out = tmp_path / "out"
    shutil.copytree(killed_dir, out)
    damage(out / CHECKPOINT)
    with caplog.at_level("INFO"):
        _run(data, out, cfg=toy_cfg(steps=4, checkpoint_every=2))
    aside = out / f"{CHECKPOINT}.corrupt"
    assert aside.exists() and f"moved it to {aside.name}" in caplog.text and str(out / CHECKPOINT) in caplog.text
    assert "resumed" not in caplog.text
    assert _same_encoders(out, fresh)  # trained from scratch: never the damaged weights
    assert read_checkpoint(out / CHECKPOINT)["step"] == 4  # a sound checkpoint again: no error on the next run


def test_checkpoints_load_without_pickled_code(killed):
    """The file loads with ``weights_only=True``; its checksum covers every value of the state."""
    from tmf.ssl.checkpoint import state_digest

    _, fresh, _ = killed
    saved = torch.load(fresh / CHECKPOINT, weights_only=True)
    assert state_digest(saved["state"]) == saved["sha256"]
    state = read_checkpoint(fresh / CHECKPOINT)
    assert state["step"] == 4 and len(state["data"]) == 64  # the data fingerprint (SHA-256)


# -- progress in the log (issue 16) ------------------------------------------------------------------------------


def test_progress_lines_at_the_log_interval(data, tmp_path, caplog):
    import re

    with caplog.at_level("INFO", logger="tmf.ssl.train"):
        _run(data, tmp_path / "out", cfg=toy_cfg(steps=6, log_every=2, checkpoint_every=100))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    pattern = re.compile(r"^step (\d+)/6 \(\d+%\): loss [-\d.]+, lr [\d.e-]+, [\d.]+ images/s, about \d+:\d\d:\d\d left$")
    assert [int(pattern.match(m).group(1)) for m in lines] == [2, 4, 6], lines
