"""Evaluation stage: data pools and nested fractions, BerundaNet losses, decoder, probes and fine-tuning on tiny
packed data made here, determinism, outputs and their schema, the summary tables, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tmf.cli import main
from tmf.config import ParamsError, validate, workflow_config
from tmf.data.minifrance import CITIES, IGNORE_INDEX, SCORED_IDS, cities_in
from tmf.data.packed import open_packed
from tmf.evaluate.data import (
    dominant_class,
    fraction_count,
    label_pool,
    nested_fraction,
    scoring_pool,
    targets,
)
from tmf.evaluate.engine import load_encoder
from tmf.evaluate.finetune import finetune_steps
from tmf.evaluate.losses import l1_reconstruction, relaxed_kmeans_loss
from tmf.evaluate.run import run_job
from tmf.evaluate.summary import aggregate_table, collect, summary_table
from tmf.models.decoder import SegmentationModel
from tmf.models.resnet import resnet18
from tmf.plan import Plan

S = 32
# a few clearly coloured classes, so that a few steps learn something
PALETTE = {1: (200, 60, 60), 5: (120, 200, 80), 7: (60, 150, 60), 10: (20, 90, 20), 14: (30, 60, 220)}


def make_tiny(root, per_city=4, unlabeled_has_labels=True, seed=0):
    """A packed tinyMiniFrance-like set: every city, ``per_city`` sub-tiles of S px; each sub-tile has two
    class blocks, a strip of id 0 and a few pixels of id 15."""
    rng = np.random.default_rng(seed)
    rows, images, labels = [], [], []
    classes = list(PALETTE)
    for city in CITIES:
        for k in range(per_city):
            a, b = rng.choice(classes, 2, replace=False)
            lab = np.full((S, S), a, np.uint8)
            cut = rng.integers(8, S - 8)
            lab[:, cut:] = b
            lab[:2, :] = 0
            lab[-1, :3] = 15
            img = np.array([PALETTE.get(int(v), (0, 0, 0)) for v in lab.ravel()], np.float32).reshape(S, S, 3)
            img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
            has = int(city.split != "unlabeled" or unlabeled_has_labels)
            if not has:
                lab = np.zeros_like(lab)
            cnt = np.bincount(lab.ravel(), minlength=16)
            rows.append({"id": f"{city.name}__t__r0_c{k}", "city": city.name, "split": city.split, "tile": "t",
                         "row_off": 0, "col_off": k * S, "height": S, "width": S, "image": "", "label": "",
                         "has_label": has, **{f"count_{i}": int(cnt[i]) for i in range(16)}})
            images.append(img)
            labels.append(lab)
    (root / "packed").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    np.save(root / "packed" / "images.npy", np.stack(images))
    np.save(root / "packed" / "labels.npy", np.stack(labels))
    return root / "manifest.csv", root / "packed"


def tiny_cfg(**over):
    cfg = {"eval_batch": 16, "examples": 2,
           "linear": {"steps": 5, "batch": 4},
           "finetune": {"steps": 4, "batch": 2, "unlabeled_batch": 2, "crop": 32,
                        "decoder_channels": [16, 16, 8, 8, 8]},
           "semisup": {"kmeans": {"k": 3}, "mumford_shah": {"k": 3}, "fixmatch": {"mu": 1}}, "knn": {"k": 3}, "logreg": {"max_iter": 200}}
    cfg.update(over)
    return validate({"evaluate": cfg})["evaluate"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("tiny"))


# ---------------------------------------------------------------- data
def test_pools_and_targets(tiny):
    data = open_packed(*tiny)
    frame = data.manifest
    lab = label_pool(frame, "labeled")
    assert set(frame["city"].iloc[lab]) == set(cities_in("labeled"))
    ora = label_pool(frame, "oracle")
    assert set(frame["city"].iloc[ora]) == set(cities_in("labeled") + cities_in("unlabeled"))
    full = scoring_pool(frame)
    assert set(frame["city"].iloc[full]) == set(cities_in("test"))
    sub = scoring_pool(frame, max_per_city=2)
    assert set(sub) <= set(full) and len(sub) == 2 * 8
    assert frame["city"].iloc[sub].value_counts().eq(2).all()
    np.testing.assert_array_equal(sub, scoring_pool(frame, max_per_city=2))
    np.testing.assert_array_equal(scoring_pool(frame, max_per_city=99), full)
    t = targets(np.array([0, 1, 14, 15, 8]))
    assert t.tolist() == [IGNORE_INDEX, 0, 13, IGNORE_INDEX, 7]
    dom = dominant_class(frame)
    assert set(dom) <= set(SCORED_IDS)


def test_nested_fractions():
    pool = np.arange(100, 360)
    for seed in (0, 1):
        sets = [set(nested_fraction(pool, f, seed)) for f in (0.01, 0.1, 1.0)]
        assert sets[0] <= sets[1] <= sets[2] == set(pool)
        assert [len(s) for s in sets] == [3, 26, 260]  # ceil(2.6), ceil(26)
    assert not np.array_equal(nested_fraction(pool, 0.1, 0), nested_fraction(pool, 0.1, 1))
    np.testing.assert_array_equal(nested_fraction(pool, 0.1, 3), nested_fraction(pool, 0.1, 3))
    assert fraction_count(5, 0.01) == 1 and fraction_count(5, 1.0) == 5
    with pytest.raises(ValueError, match="fraction"):
        fraction_count(5, 0.0)


def test_oracle_without_unlabeled_labels_is_a_clear_error(tmp_path):
    manifest, packed = make_tiny(tmp_path, per_city=1, unlabeled_has_labels=False)
    frame = open_packed(manifest, packed).manifest
    with pytest.raises(ValueError, match="oracle.*LeMans"):
        label_pool(frame, "oracle")


def test_packed_mismatch_errors(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="manifest"):
        open_packed(tmp_path / "nope.csv", tiny[1])
    with pytest.raises(FileNotFoundError, match="images.npy"):
        open_packed(tiny[0], tmp_path)
    frame = pd.read_csv(tiny[0]).iloc[:-1]
    frame.to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="rows"):
        open_packed(tmp_path / "short.csv", tiny[1])


# ---------------------------------------------------------------- losses
def test_relaxed_kmeans_hard_memberships_match_kmeans_quantisation():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 5, 4))
    assign = rng.integers(0, 3, (2, 5, 4))
    y = np.eye(3)[assign].transpose(0, 3, 1, 2)  # one-hot (N, K, H, W)
    # independent computation: each pixel replaced by the mean colour of its cluster in its image
    xq = np.empty_like(x)
    for n in range(2):
        for k in range(3):
            m = assign[n] == k
            if m.any():
                xq[n][:, m] = x[n][:, m].mean(1, keepdims=True)
    expected = np.abs(x - xq).mean()
    got = relaxed_kmeans_loss(torch.tensor(y), torch.tensor(x), 1.0, 5.0)  # regulariser is 0 for one-hot
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_relaxed_kmeans_uniform_memberships():
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    k = 4
    y = torch.full((1, k, 4, 4), 1 / k, dtype=torch.float64)
    # every centroid is the image mean; the regulariser Σ_k y(1 − y) = 1 − 1/K at every pixel
    rec = (x - x.mean((2, 3), keepdim=True)).abs().mean()
    assert float(relaxed_kmeans_loss(y, x, 1.0, 0.0)) == pytest.approx(float(rec))
    assert float(relaxed_kmeans_loss(y, x, 0.0, 1.0)) == pytest.approx(1 - 1 / k)
    with pytest.raises(ValueError):
        relaxed_kmeans_loss(y[:, :, :2], x)


def test_l1_reconstruction():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert float(l1_reconstruction(a, b)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        l1_reconstruction(a, b[..., :1])


# ---------------------------------------------------------------- decoder
def test_segmentation_model_shapes_and_heads():
    torch.manual_seed(0)
    m = SegmentationModel(resnet18(), 14, decoder_channels=(16, 16, 8, 8, 8), aux_channels=3).eval()
    with torch.no_grad():
        for h, w in ((64, 64), (50, 70)):
            logits, aux = m(torch.randn(2, 3, h, w), aux=True)
            assert logits.shape == (2, 14, h, w) and aux.shape == (2, 3, h, w)
    from tmf.models.hyperbolic import make_head

    hm = SegmentationModel(resnet18(), 14, head=lambda c: make_head("horospherical", c, 14, 3,
                                                                    prototypes="random"),
                           decoder_channels=(16, 16, 8, 8, 8)).eval()
    with torch.no_grad():
        assert hm(torch.randn(1, 3, 32, 32)).shape == (1, 14, 32, 32)
    with pytest.raises(ValueError, match="ResNet"):
        SegmentationModel(torch.nn.Linear(2, 2))


def test_heads_share_the_optimiser_of_the_network_and_only_prototypes_are_riemannian():
    """finetune_horospherical vs finetune_euclidean (and finetune) compare heads, so everything but the prototypes
    must be trained alike: the same AdamW, the same groups and settings; Riemannian Adam only on the sphere."""
    import geoopt

    from tmf.evaluate.finetune import build_head, build_optimizers

    cfg = tiny_cfg()
    cfg = {**cfg, "hyperbolic": {**cfg["hyperbolic"], "dim": 3}}
    setups = {}
    for head in ("horospherical", "euclidean", "conv"):
        torch.manual_seed(0)
        model = SegmentationModel(resnet18(), 14, head=build_head(head, cfg, 0), decoder_channels=(16, 16, 8, 8, 8))
        opts = build_optimizers(model, lr=1e-3, encoder_lr_scale=0.1, weight_decay=1e-4)
        names = {id(p): n for n, p in model.named_parameters()}
        assert type(opts[0]) is torch.optim.AdamW
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": sorted(names[id(p)] for p in g["params"])}
                  for g in opts[0].param_groups]
        setups[head] = groups
        sphere = [p for o in opts[1:] for g in o.param_groups for p in g["params"]]
        if head == "horospherical":
            assert len(opts) == 2 and isinstance(opts[1], geoopt.optim.RiemannianAdam)
            assert sphere == [model.head.prototypes]
            assert opts[1].param_groups[0]["weight_decay"] == 0.0 and opts[1].param_groups[0]["lr"] == 1e-3
        else:
            assert len(opts) == 1
        trained = {n for g in groups for n in g["params"]} | {names[id(p)] for p in sphere}
        assert trained == set(names.values())  # every parameter is trained
        assert sum(len(g["params"]) for g in groups) + len(sphere) == len(names)  # each once
    for head in ("euclidean", "conv"):
        for ga, gb in zip(setups["horospherical"], setups[head], strict=True):
            same = ga if ga["name"] != "head" else {**ga, "params": None}
            assert same == (gb if gb["name"] != "head" else {**gb, "params": None})


# ---------------------------------------------------------------- jobs
def _run(tiny, tmp_path, protocol, method, fraction=1.0, seed=0, encoder=None, name=None, **over):
    out = tmp_path / (name or f"{protocol}_{method}_{fraction}_{seed}")
    m = run_job(protocol, method, fraction, seed, tiny[0], tiny[1], encoder, out, tiny_cfg(**over),
                device="cpu", threads=1)
    return m, out


def _check_schema(m, out):
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("protocol", "method", "fraction", "seed", "oa", "miou", "kappa", "per_class_iou", "confusion",
                "per_city", "n_train", "hierarchical_cost"):
        assert key in on_disk, key
    assert np.asarray(on_disk["confusion"]).shape == (14, 14)
    assert set(on_disk["per_class_iou"]) == {str(i) for i in SCORED_IDS}
    assert set(on_disk["per_city"]) == set(cities_in("test"))
    for v in on_disk["per_city"].values():
        assert 0 <= v["oa"] <= 1
    cm = np.asarray(on_disk["confusion"])
    assert on_disk["oa"] == pytest.approx(np.trace(cm) / cm.sum())
    assert (out / "predictions.png").stat().st_size > 1000
    assert m["protocol"] == on_disk["protocol"]


def test_finetune_runs_is_deterministic_and_writes_schema(tiny, tmp_path):
    m1, out = _run(tiny, tmp_path, "finetune", "random", 0.5, seed=3, name="a")
    _check_schema(m1, out)
    # test sub-tiles: 8 cities x 4, each with (S-2)*S - 3 scored pixels
    assert sum(sum(r) for r in m1["confusion"]) == 8 * 4 * ((S - 2) * S - 3)
    assert m1["n_train"] == math.ceil(0.5 * 8) and m1["recipe"]["freeze_steps"] == 0  # round(0.1 * 4) = 0
    m2, _ = _run(tiny, tmp_path, "finetune", "random", 0.5, seed=3, name="b")
    assert m1["confusion"] == m2["confusion"] and m1["train"]["final_loss"] == m2["train"]["final_loss"]
    m3, _ = _run(tiny, tmp_path, "finetune", "random", 0.5, seed=4, name="c")
    assert m3["train"]["final_loss"] != m1["train"]["final_loss"]


def test_finetune_steps_scale_with_the_label_pool(tiny, tmp_path):
    fixed = tiny_cfg()["finetune"]
    assert [finetune_steps(fixed, n) for n in (1, 3, 262)] == [4, 4, 4]  # steps > 0: every fraction alike
    ft = {**fixed, "steps": 0, "epochs": 4, "min_steps": 60, "max_steps": 200, "batch": 8}
    # ceil(4 n / 8) within [60, 200]: the floor for a few sub-tiles, the cap for many
    assert [finetune_steps(ft, n) for n in (3, 120, 121, 262, 401, 5000)] == [60, 60, 61, 131, 200, 200]
    with pytest.raises(ValueError, match="max_steps"):
        finetune_steps({**ft, "max_steps": 10}, 100)
    with pytest.raises(ParamsError, match="evaluate.finetune.max_steps = 10 is below min_steps = 60"):
        Plan(workflow_config({"evaluate": {"finetune": {"steps": 0, "min_steps": 60, "max_steps": 10}}},
                             Path(__file__).parents[1] / "params" / "default.yaml"))
    # the job runs the schedule's steps and freezes the encoder for its share of them
    m, _ = _run(tiny, tmp_path, "finetune", "random", 1.0,
                finetune={**{k: fixed[k] for k in ("batch", "crop", "decoder_channels")}, "steps": 0, "epochs": 2,
                          "min_steps": 3, "max_steps": 50, "freeze_encoder_frac": 0.5})
    assert m["n_train"] == 8 and m["train"]["steps"] == 8 and m["recipe"]["freeze_steps"] == 4  # ceil(2·8/2)


def test_finetune_learns_on_easy_data(tiny, tmp_path):
    # colours identify classes: a short fine-tuning beats chance by far
    m, _ = _run(tiny, tmp_path, "finetune", "supervised", 1.0,
                finetune={"steps": 30, "batch": 4, "crop": 32, "lr": 0.01, "decoder_channels": [16, 16, 8, 8, 8]})
    assert m["oa"] > 0.5


@pytest.mark.parametrize("method, aux", [("berundanet_l1", "l1"), ("berundanet_l2", "l2"),
                                         ("berundanet_kmeans", "kmeans"), ("berundanet_mumford_shah", "mumford_shah"),
                                         ("fixmatch", "fixmatch"), ("oracle", None)])
def test_semi_supervised_and_oracle_run(tiny, tmp_path, method, aux):
    m, out = _run(tiny, tmp_path, "finetune", method)
    _check_schema(m, out)
    assert m["n_train"] == (8 * 4 if method == "oracle" else 2 * 4) and m["architecture"] == "unet"
    assert m["recipe"]["aux"] == aux
    if aux is not None:
        semi = tiny_cfg()["semisup"][aux]
        assert m["n_unlabeled"] == 6 * 4 and m["recipe"]["semisup"] == semi
        assert m["recipe"]["aux_weight"] == semi["lambda"] and m["train"]["final_unlabeled_loss"] >= 0
        per_step = semi["mu"] * 2 if aux == "fixmatch" else 2  # tiny_cfg: batch 2, unlabeled_batch 2, mu 1
        assert m["recipe"]["unlabeled_per_step"] == per_step
        assert (m["train"]["confident_share"] is not None) == (aux == "fixmatch")


def test_fixmatch_threshold_selects_the_pseudo_labelled_pixels(tiny, tmp_path):
    """ω = 0: every weak-view pixel is pseudo-labelled; ω = 1: none (softmax < 1), so L_u is exactly 0."""
    none = {"fixmatch": {"mu": 1, "threshold": 1.0}}
    m, _ = _run(tiny, tmp_path, "finetune", "fixmatch", semisup=none, name="w1")
    assert m["train"]["confident_share"] == 0.0 and m["train"]["final_unlabeled_loss"] == 0.0
    assert all(u == 0.0 and share == 0.0 for _, u, share in m["train"]["history_unlabeled"])
    m, _ = _run(tiny, tmp_path, "finetune", "fixmatch", semisup={"fixmatch": {"mu": 1, "threshold": 0.0}}, name="w0")
    assert m["train"]["confident_share"] == 1.0 and m["train"]["final_unlabeled_loss"] > 0
    m2, _ = _run(tiny, tmp_path, "finetune", "fixmatch", semisup={"fixmatch": {"mu": 1, "threshold": 0.0}},
                 name="w0b")
    assert m2["confusion"] == m["confusion"]  # deterministic on the CPU, strong views included


def test_fixmatch_from_an_encoder_and_segnet_from_scratch(tiny, tmp_path):
    m, out = _run(tiny, tmp_path, "finetune_fixmatch", "random")
    _check_schema(m, out)
    assert m["recipe"]["aux"] == "fixmatch" and m["head"] == "conv" and m["recipe"]["encoder_lr_scale"] == 0.1
    for method in ("supervised", "berundanet_mumford_shah"):
        m, out = _run(tiny, tmp_path, "segnet", method, segnet={"channels": [4, 8, 8, 16, 16]})
        _check_schema(m, out)
        assert m["architecture"] == "segnet" and m["backbone"] is None
        assert m["recipe"]["segnet_channels"] == [4, 8, 8, 16, 16] and m["recipe"]["decoder_channels"] is None
    with pytest.raises(ValueError, match="'fixmatch'"):
        _run(tiny, tmp_path, "finetune_fixmatch", "supervised")
    with pytest.raises(ValueError, match="SegNet from scratch"):
        _run(tiny, tmp_path, "segnet", "random")


@pytest.mark.parametrize("protocol", ["linear", "knn", "logreg"])
def test_probes_run(tiny, tmp_path, protocol):
    m, out = _run(tiny, tmp_path, protocol, "random", 1.0)
    _check_schema(m, out)
    if protocol != "linear":
        assert m["level"] == "scene" and sum(map(sum, m["confusion"])) == 8 * 4


def test_linear_without_cache_and_horospherical(tiny, tmp_path):
    m, _ = _run(tiny, tmp_path, "linear", "random", linear={"steps": 3, "batch": 2, "cache_mb": 0, "crop": 32})
    assert m["feature_cache"] is False
    m, out = _run(tiny, tmp_path, "finetune_horospherical_d2", "random", hyperbolic={"prototypes": "random"})
    _check_schema(m, out)
    assert m["head"] == "horospherical" and m["head_dim"] == 2
    assert m["protocol"] == "finetune_horospherical_d2"
    with pytest.raises(ValueError, match="dimension suffix"):
        _run(tiny, tmp_path, "finetune_euclidean", "random")


@pytest.mark.parametrize("head", ["euclidean", "horospherical"])
def test_head_of_dimension_d_sits_on_at_least_d_decoder_channels(tiny, tmp_path, head):
    """A d = 128 head on 8 decoder channels would be a 1x1 conv of rank <= 8 (+ bias): not a 128-d embedding.
    The head protocols widen the last decoder step to d; smaller d keep the configured decoder."""
    from tmf.evaluate.finetune import build_head, decoder_widths

    m, _ = _run(tiny, tmp_path, f"finetune_{head}_d128", "random", hyperbolic={"prototypes": "random"})
    assert m["recipe"]["decoder_channels"] == [16, 16, 8, 8, 128]
    m, _ = _run(tiny, tmp_path, f"finetune_{head}_d2", "random", hyperbolic={"prototypes": "random"})
    assert m["recipe"]["decoder_channels"] == [16, 16, 8, 8, 8]
    cfg = tiny_cfg(hyperbolic={"prototypes": "random"})
    cfg = {**cfg, "hyperbolic": {**cfg["hyperbolic"], "dim": 128}}
    model = SegmentationModel(resnet18(), 14, head=build_head(head, cfg, 0), decoder_channels=decoder_widths(cfg, head))
    assert torch.linalg.matrix_rank(model.head.embed.weight.detach().flatten(1)) == 128


def test_phi_lambda_is_no_evaluation_parameter():
    """φ·log(1 − ‖x‖²) adds the same amount to every class's logit, so λ changes no probability, gradient,
    prediction or score (tests/test_hyperbolic.py::test_phi_term_cancels_in_the_softmax): the pipeline must not
    offer it as something to vary, and a config that sets it is refused by name."""
    with pytest.raises(ParamsError, match="phi_lambda"):
        validate({"evaluate": {"hyperbolic": {"phi_lambda": 0.5}}})
    assert "phi_lambda" not in validate({})["evaluate"]["hyperbolic"]


def test_encoder_file_roundtrip_and_errors(tiny, tmp_path):
    torch.manual_seed(1)
    enc = resnet18()
    path = tmp_path / "encoder.pt"
    torch.save({"arch": "resnet18", "method": "simclr",
                "state_dict": {k: v for k, v in enc.state_dict().items() if not k.startswith("fc.")}}, path)
    m, _ = _run(tiny, tmp_path, "knn", "simclr", encoder=str(path))
    assert m["encoder"] == str(path)
    torch.save({"arch": "resnet34", "state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="resnet34"):
        _run(tiny, tmp_path, "knn", "simclr", encoder=str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="--encoder"):
        _run(tiny, tmp_path, "knn", "simclr", encoder=None)
    # a plain torchvision state dict (ImageNet weights) loads; a foreign one is refused with the file's name
    torch.save(enc.state_dict(), tmp_path / "tv.pth")
    loaded = load_encoder("resnet18", tmp_path / "tv.pth")
    assert torch.equal(loaded.layer4[1].conv2.weight, enc.layer4[1].conv2.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(ValueError, match="foreign.pth.*missing"):
        load_encoder("resnet18", tmp_path / "foreign.pth")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_encoder("resnet18", tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="fine-tuning"):
        _run(tiny, tmp_path, "linear", "supervised")


def test_cli_missing_encoder_is_a_clear_error(tiny, tmp_path, capsys):
    rc = main(["evaluate", "--protocol", "knn", "--method", "simclr", "--fraction", "1", "--seed", "0",
               "--manifest", str(tiny[0]), "--packed", str(tiny[1]), "--encoder", str(tmp_path / "missing.pt"),
               "--out", str(tmp_path / "o"), "--device", "cpu", "--cfg", json.dumps({"knn": {"k": 3}})])
    err = capsys.readouterr().err
    assert rc == 2 and "encoder file not found" in err and "missing.pt" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "metrics.json").exists()


# ---------------------------------------------------------------- tables and plan
def _fake_metrics(path, protocol, method, fraction, seed, oa):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "protocol": protocol, "method": method, "test_set": "test_cities", "fraction": fraction, "seed": seed,
        "n_train": 3, "oa": oa,
        "miou": oa / 2, "kappa": oa - 0.1, "hierarchical_cost": 1 - oa, "level": "pixel",
        "per_class_iou": {str(i): 0.5 for i in SCORED_IDS},
        "per_city": {"Rennes": {"oa": oa, "miou": 0.1}}}))
    return path


def test_collect_tables(tmp_path):
    paths = [_fake_metrics(tmp_path / f"{m}{s}/metrics.json", "finetune", m, 0.01, s, oa)
             for m, s, oa in (("random", 0, 0.5), ("random", 1, 0.7), ("simclr", 0, 0.8))]
    out, agg_path = collect(paths, tmp_path / "summary.csv")
    summary = pd.read_csv(out)
    assert len(summary) == 3 and {"oa", "miou", "kappa", "iou_14", "oa_Rennes"} <= set(summary.columns)
    agg = pd.read_csv(agg_path).set_index("method")
    assert agg.loc["random", "oa_mean"] == pytest.approx(0.6)
    assert agg.loc["random", "oa_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert agg.loc["random", "n_seeds"] == 2 and math.isnan(agg.loc["simclr", "oa_std"])
    assert summary_table(paths).equals(summary_table(paths))
    assert len(aggregate_table(summary_table(paths))) == 2
    with pytest.raises(FileNotFoundError):
        collect([tmp_path / "nope.json"], tmp_path / "s.csv")
    rc = main(["collect", "--inputs", *map(str, paths), "--out", str(tmp_path / "cli" / "summary.csv")])
    assert rc == 0 and (tmp_path / "cli" / "summary_agg.csv").is_file()
