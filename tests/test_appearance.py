"""Appearance analysis (SPEC.md §3; seed 004 §2.4–2.6): scores, surfaces, encoders, CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from tmf.appearance.coverage import (
    UNION_TEST,
    UNION_TRAIN,
    aggregate_seeds,
    coverage_matrices,
    intersection_over_test,
    iou,
    split_coverage,
    split_surfaces,
)
from tmf.appearance.features import (
    MissingWeightsError,
    encode_images,
    imagenet_weights_path,
    load_encoder,
    parse_encoder,
    pooled_features,
)
from tmf.appearance.surfaces import appearance_surfaces, embedding_grid, fit_surface
from tmf.cli import main
from tmf.data.minifrance import CITIES, N_CLASSES

TSNE_FAST = {"pca_dims": 10, "perplexity": 10, "n_iter": 60, "early_exaggeration_iter": 40, "n_jobs": 1,
             "negative_gradient_method": "bh"}


# ---------------------------------------------------------------- scores on hand-made grids

def _rect(r0, r1, c0, c1, n=10):
    g = np.zeros((n, n), bool)
    g[r0:r1, c0:c1] = True
    return g


def test_iou_and_iot_hand_worked():
    a = _rect(0, 4, 0, 10)  # 40 cells
    b = _rect(2, 6, 0, 10)  # 40 cells, 20 shared
    assert iou(a, b) == pytest.approx(20 / 60)
    assert intersection_over_test(a, b) == pytest.approx(20 / 40)
    small = _rect(0, 2, 0, 5)  # 10 cells, inside a
    assert intersection_over_test(a, small) == 1.0  # a test surface inside the training one is fully covered
    assert intersection_over_test(small, a) == pytest.approx(10 / 40)
    assert iou(small, a) == pytest.approx(10 / 40)
    assert iou(a, a) == 1.0
    assert iou(a, _rect(6, 10, 0, 10)) == 0.0
    empty = np.zeros((10, 10), bool)
    assert np.isnan(iou(empty, empty)) and np.isnan(intersection_over_test(a, empty))
    with pytest.raises(ValueError, match="different grids"):
        iou(a, np.zeros((5, 5), bool))


def _set_iou(s1, s2):
    """Independent formula on sets of cell coordinates."""
    p1, p2 = set(zip(*np.nonzero(s1), strict=True)), set(zip(*np.nonzero(s2), strict=True))
    return len(p1 & p2) / len(p1 | p2), len(p1 & p2) / len(p2)


def test_coverage_matrices_union_row_and_column():
    rng = np.random.default_rng(0)
    surf = {name: rng.random((12, 12)) < 0.3 for name in ("A", "B", "T1", "T2", "T3")}
    m_iou, m_iot = coverage_matrices(surf, ["A", "B"], ["T1", "T2", "T3"])
    assert list(m_iou.index) == ["A", "B", UNION_TRAIN]
    assert list(m_iou.columns) == ["T1", "T2", "T3", UNION_TEST]
    train_u = surf["A"] | surf["B"]
    test_u = surf["T1"] | surf["T2"] | surf["T3"]
    rows = {"A": surf["A"], "B": surf["B"], UNION_TRAIN: train_u}
    cols = {"T1": surf["T1"], "T2": surf["T2"], "T3": surf["T3"], UNION_TEST: test_u}
    for r, s1 in rows.items():
        for c, s2 in cols.items():
            ref_iou, ref_iot = _set_iou(s1, s2)
            assert m_iou.loc[r, c] == pytest.approx(ref_iou)
            assert m_iot.loc[r, c] == pytest.approx(ref_iot)
    # Covering: the union of training surfaces covers each test city at least as well as any single city.
    for c in ("T1", "T2", "T3"):
        assert m_iot.loc[UNION_TRAIN, c] >= m_iot.loc[["A", "B"], c].max()


def test_missing_city_surface_gives_nan_and_is_left_out_of_unions():
    a, t = _rect(0, 5, 0, 5), _rect(0, 5, 0, 10)
    m_iou, m_iot = coverage_matrices({"A": a, "T": t}, ["A", "B"], ["T"])
    assert m_iou.loc["B"].isna().all() and m_iot.loc["B"].isna().all()
    assert m_iot.loc[UNION_TRAIN, "T"] == pytest.approx(0.5)


def test_aggregate_mean_and_sample_std():
    frame = pd.DataFrame({"seed": [0, 1, 2], "train": "A", "test": "T", "iou": [0.2, 0.4, 0.6], "iot": [1, 1, 1]})
    agg = aggregate_seeds(frame, ["train", "test"])
    assert agg.loc[0, "iou_mean"] == pytest.approx(0.4)
    assert agg.loc[0, "iou_std"] == pytest.approx(np.std([0.2, 0.4, 0.6], ddof=1))
    assert agg.loc[0, "iot_std"] == 0.0 and agg.loc[0, "n_seeds"] == 3


# ---------------------------------------------------------------- surfaces

def _blobs(rng, centres, n=60, scale=1.0):
    pts, names = [], []
    for name, c in centres.items():
        pts.append(rng.normal(c, scale, size=(n, 2)))
        names += [name] * n
    return np.concatenate(pts), np.array(names)


def test_surfaces_cover_their_points_and_separate_far_cities():
    rng = np.random.default_rng(1)
    emb, cities = _blobs(rng, {"A": (0, 0), "B": (0.5, 0), "C": (30, 30)})
    surf, grid, skipped = appearance_surfaces(emb, cities, grid_resolution=80, nu=0.1, gamma=200, min_points=10)
    assert skipped == {} and set(surf) == {"A", "B", "C"}
    assert surf["A"].shape == (80, 80) and surf["A"].dtype == bool
    assert iou(surf["A"], surf["B"]) > 0.5  # overlapping blobs
    assert iou(surf["A"], surf["C"]) == 0.0  # far apart
    # ν bounds the fraction of training points outside the surface (Schölkopf et al. 2001, Prop. 4).
    for name in ("A", "C"):
        pts = grid.to_unit(emb[cities == name])
        ij = np.clip((pts * grid.resolution).astype(int), 0, grid.resolution - 1)
        inside = surf[name][ij[:, 1], ij[:, 0]].mean()
        assert inside >= 0.8


def test_city_with_too_few_points_is_skipped_with_a_message(caplog):
    rng = np.random.default_rng(2)
    emb, cities = _blobs(rng, {"A": (0, 0), "T": (1, 1)})
    emb = np.concatenate([emb, [[5.0, 5.0], [5.2, 5.1], [4.9, 5.0]]])
    cities = np.concatenate([cities, ["Tiny"] * 3])
    with caplog.at_level(logging.WARNING):
        surf, _, skipped = appearance_surfaces(emb, cities, grid_resolution=40, min_points=10)
    assert "Tiny" in skipped and "min_points" in skipped["Tiny"] and "3 sub-tile" in skipped["Tiny"]
    assert "Tiny" in caplog.text
    assert set(surf) == {"A", "T"}
    m_iou, _ = coverage_matrices(surf, ["A"], ["T", "Tiny"])
    assert np.isfinite(m_iou.loc["A", "T"]) and np.isnan(m_iou.loc["A", "Tiny"])


def test_split_surfaces_union_and_pooled():
    rng = np.random.default_rng(3)
    centres = {"L1": (0, 0), "L2": (20, 0), "U1": (0, 20), "T1": (0, 0.5), "T2": (20, 20)}
    emb, cities = _blobs(rng, centres)
    city_split = {"L1": "labeled", "L2": "labeled", "U1": "unlabeled", "T1": "test", "T2": "test"}
    surf, grid, _ = appearance_surfaces(emb, cities, grid_resolution=60)
    union = split_surfaces(surf, city_split, "union")
    np.testing.assert_array_equal(union["labeled"], surf["L1"] | surf["L2"])
    np.testing.assert_array_equal(union["test"], surf["T1"] | surf["T2"])
    np.testing.assert_array_equal(union["training"], surf["L1"] | surf["L2"] | surf["U1"])
    pooled = split_surfaces(surf, city_split, "pooled", emb, cities, grid, nu=0.1, gamma=200)
    # One SVM on the pooled labeled points: it must hold most of both far-apart clusters (ν = 0.1).
    for split, members in (("labeled", ("L1", "L2")), ("test", ("T1", "T2"))):
        pts = grid.to_unit(emb[np.isin(cities, members)])
        ij = np.clip((pts * 60).astype(int), 0, 59)
        assert pooled[split][ij[:, 1], ij[:, 0]].mean() >= 0.8
    table = split_coverage(union, seed=0)
    assert list(table["train_split"]) == ["labeled", "unlabeled", "training"]
    # T1 sits on L1, T2 on nothing labeled: labeled covers about half the test surface; training ⊇ labeled.
    lab = table.set_index("train_split")
    assert lab.loc["training", "iot"] >= lab.loc["labeled", "iot"]
    assert 0.2 < lab.loc["labeled", "iot"] < 0.8
    with pytest.raises(ValueError, match="union or pooled"):
        split_surfaces(surf, city_split, "mean")


def test_grid_bounds_include_margin():
    g = embedding_grid(np.array([[0.0, 0.0], [10.0, 20.0]]), resolution=10, margin=0.1)
    assert g.bounds == pytest.approx((-1.0, 11.0, -2.0, 22.0))
    assert g.centres().shape == (100, 2)
    s = fit_surface(np.random.default_rng(0).normal(5, 1, (30, 2)), g)
    assert s.shape == (10, 10)


# ---------------------------------------------------------------- encoders

def test_parse_encoder_names():
    assert parse_encoder("imagenet-vgg16").arch == "vgg16"
    assert parse_encoder("random-resnet34").kind == "random"
    assert parse_encoder("ssl-simclr").method == "simclr"
    with pytest.raises(ValueError, match="unknown encoder"):
        parse_encoder("imagenet-alexnet")


def test_missing_imagenet_weights_name_the_expected_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    expected = tmp_path / "th" / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    with pytest.raises(MissingWeightsError) as e:
        load_encoder("imagenet-resnet34")
    assert str(expected) in str(e.value) and "IMAGENET1K_V1" in str(e.value)
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        imagenet_weights_path("vgg16")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_encoder("imagenet-resnet18", weights=tmp_path / "nowhere.pth")


def test_torchvision_keyed_weights_load_from_hub_cache_and_from_a_path(tmp_path, monkeypatch):
    from tmf.models.resnet import resnet18

    torch.manual_seed(123)
    ref = resnet18()
    hub = tmp_path / "th" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(ref.state_dict(), hub / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    for model in (load_encoder("imagenet-resnet18"),
                  load_encoder("imagenet-resnet18", weights=hub / "resnet18-f37072fd.pth")):
        for k, v in ref.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
        assert not model.training
    bad = {k: v for k, v in ref.state_dict().items() if not k.startswith("layer4")}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not match"):
        load_encoder("imagenet-resnet18", weights=tmp_path / "bad.pth")


def test_ssl_checkpoint_loads_backbone_only_state(tmp_path):
    from tmf.models.resnet import resnet18

    torch.manual_seed(7)
    ref = resnet18()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    torch.save({"arch": "resnet18", "method": "simclr", "state_dict": state}, tmp_path / "encoder.pt")
    model = load_encoder("ssl-simclr", tmp_path / "encoder.pt")
    assert torch.equal(model.conv1.weight, ref.conv1.weight)
    with pytest.raises(ValueError, match="pretrained by 'simclr'"):
        load_encoder("ssl-byol", tmp_path / "encoder.pt")
    with pytest.raises(ValueError, match="encoder.pt"):
        load_encoder("ssl-simclr")


def test_feature_layers_and_random_init_is_seeded():
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8))
    m1 = load_encoder("random-resnet18", random_init_seed=5)
    m2 = load_encoder("random-resnet18", random_init_seed=5)
    assert torch.equal(m1.conv1.weight, m2.conv1.weight)
    assert not torch.equal(m1.conv1.weight, load_encoder("random-resnet18", random_init_seed=6).conv1.weight)
    f_last = encode_images(m1, x.numpy(), "last", batch_size=2)
    assert f_last.shape == (3, 512) and f_last.dtype == np.float32
    np.testing.assert_allclose(f_last, encode_images(m2, x.numpy(), "last", batch_size=3), rtol=1e-4, atol=1e-5)
    from tmf.models.resnet import normalise_uint8

    with torch.no_grad():
        assert pooled_features(m1, normalise_uint8(x), "stage2").shape == (3, 128)
        with pytest.raises(ValueError, match="stage5"):
            pooled_features(m1, normalise_uint8(x), "stage5")
    assert encode_images(m1, x.numpy(), "stage1", input_size=48).shape == (3, 64)


# ---------------------------------------------------------------- embedding

@pytest.mark.parametrize("method", ["fft", "bh"])
def test_tsne_is_deterministic_for_a_seed(method):
    from tmf.appearance.embedding import tsne_embed

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (60, 20)), rng.normal(6, 1, (60, 20))]).astype(np.float32)
    kw = {**TSNE_FAST, "negative_gradient_method": method}
    e1 = tsne_embed(x, 3, **kw)
    e2 = tsne_embed(x, 3, **kw)
    np.testing.assert_array_equal(e1, e2)
    assert e1.shape == (120, 2) and e1.dtype == np.float32
    assert not np.array_equal(e1, tsne_embed(x, 4, **kw))
    # The two clusters stay apart: each point's nearest neighbour is from its own cluster.
    d = np.linalg.norm(e1[:, None] - e1[None], axis=-1) + np.eye(120) * 1e9
    assert ((d.argmin(1) < 60) == (np.arange(120) < 60)).mean() > 0.95


def test_tsne_seeds_with_the_default_initialisation_are_independent_layouts():
    """The spread over t-SNE seeds must measure t-SNE's variability: with PCA initialisation the seeds differ only
    by openTSNE's jitter (Procrustes disparity ≈ 0.04 here), with the default (random) they are different layouts
    (≈ 0.6)."""
    from scipy.spatial import procrustes

    from tmf.appearance.embedding import tsne_embed
    from tmf.config import validate

    default = validate({})["appearance"]["tsne"]
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 1, (20, 20)) for c in rng.normal(0, 4, (6, 20))]).astype(np.float32)

    def disparities(**kw):
        e = [tsne_embed(x, seed, **{**default, **TSNE_FAST, **kw}) for seed in range(3)]
        return [procrustes(e[i], e[j])[2] for i in range(3) for j in range(i + 1, 3)]

    assert min(disparities()) > 0.3
    assert max(disparities(initialization="pca")) < 0.1


# ---------------------------------------------------------------- CLI end to end on a tiny made-up data set

def make_dataset(root, n_per_city=10, size=32, seed=0):
    """Sub-tiles whose colour depends on the city's split; a manifest in the file-formats.md layout."""
    rng = np.random.default_rng(seed)
    rows, images, labels = [], [], []
    base = {"labeled": (200, 60, 60), "unlabeled": (60, 200, 60), "test": (60, 60, 200)}
    for c in CITIES:
        for k in range(n_per_city):
            img = np.clip(rng.normal(base[c.split], 25, (size, size, 3)), 0, 255).astype(np.uint8)
            images.append(img)
            counts = rng.multinomial(size * size, rng.dirichlet(np.ones(N_CLASSES)))
            labels.append(np.repeat(np.arange(N_CLASSES, dtype=np.uint8), counts).reshape(size, size))
            row = {"id": f"{c.name}__t__r{k}_c0", "city": c.name, "split": c.split, "tile": "t", "row_off": k,
                   "col_off": 0, "height": size, "width": size, "image": "", "label": "", "has_label": 1}
            row.update({f"count_{i}": int(counts[i]) for i in range(N_CLASSES)})
            rows.append(row)
    order = {"labeled": 0, "unlabeled": 1, "test": 2}
    m = pd.DataFrame(rows)
    idx = np.argsort([order[s] for s in m["split"]], kind="stable")
    m = m.iloc[idx].reset_index(drop=True)
    root.mkdir(parents=True, exist_ok=True)
    m.to_csv(root / "manifest.csv", index=False)
    np.save(root / "images.npy", np.stack(images)[idx])
    np.save(root / "labels.npy", np.stack(labels)[idx])
    return root / "manifest.csv", root / "images.npy"


CFG = {"input_size": 0, "batch_size": 64, "tsne": TSNE_FAST, "grid_resolution": 50, "min_points": 5,
       "svm": {"nu": 0.1, "gamma": 100}, "seeds": [0, 1]}


def test_cli_end_to_end_and_skipped_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    manifest, packed = make_dataset(tmp_path / "data")
    cfg = json.dumps(CFG)
    for enc in ("random-resnet18", "imagenet-resnet34"):
        out = tmp_path / "results" / enc
        assert main(["appearance-encode", "--encoder", enc, "--manifest", str(manifest), "--packed", str(packed),
                     "--out", str(out / "features.npy"), "--device", "cpu", "--cfg", cfg]) == 0
        embs = []
        for seed in (0, 1):
            embs.append(str(out / f"embedding_seed{seed}.npy"))
            assert main(["appearance-embed", "--features", str(out / "features.npy"), "--seed", str(seed),
                         "--out", embs[-1], "--cfg", cfg]) == 0
        assert main(["appearance-score", "--manifest", str(manifest), "--embeddings", *embs, "--out-dir", str(out),
                     "--encoder", enc, "--cfg", cfg]) == 0
        assert main(["appearance-figures", "--manifest", str(manifest), "--dir", str(out), "--dpi", "40"]) == 0
        for name in ("embedding_cities", "appearance_maps", "coverage_heatmaps", "split_maps", "class_scatter"):
            assert (out / "figures" / f"{name}.png").stat().st_size > 0
    ok = json.loads((tmp_path / "results" / "random-resnet18" / "summary.json").read_text())
    assert ok["status"] == "ok" and ok["seeds"] == [0, 1] and ok["n_subtiles"] == 16 * 10
    assert set(ok["split_coverage"]) == {"labeled_vs_test", "unlabeled_vs_test", "training_vs_test"}
    cov = pd.read_csv(tmp_path / "results" / "random-resnet18" / "coverage.csv")
    assert len(cov) == 2 * (8 + 1) * (8 + 1) and cov["iou"].between(0, 1).all()
    summ = pd.read_csv(tmp_path / "results" / "random-resnet18" / "coverage_summary.csv")
    assert len(summ) == 81 and (summ["n_seeds"] == 2).all()
    # Sub-tiles coloured by split: each training split covers the test split poorly (its own colour).
    assert ok["split_coverage"]["labeled_vs_test"]["iot"]["mean"] < 0.5
    skipped = json.loads((tmp_path / "results" / "imagenet-resnet34" / "summary.json").read_text())
    assert skipped["status"] == "skipped"
    assert "resnet34-b627a593.pth" in skipped["reason"] and str(tmp_path / "empty_hub") in skipped["reason"]
    # Same embeddings, same command: byte-identical coverage (t-SNE determinism is tested above).
    out = tmp_path / "results" / "random-resnet18"
    before = (out / "coverage.csv").read_bytes()
    main(["appearance-score", "--manifest", str(manifest), "--embeddings", str(out / "embedding_seed0.npy"),
          str(out / "embedding_seed1.npy"), "--out-dir", str(out), "--encoder", "random-resnet18", "--cfg", cfg])
    assert (out / "coverage.csv").read_bytes() == before


def test_cli_bad_input_is_a_clear_message(tmp_path, capsys):
    rc = main(["appearance-encode", "--encoder", "random-resnet18", "--manifest", str(tmp_path / "none.csv"),
               "--packed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "f.npy")])
    assert rc == 2 and "none.csv" in capsys.readouterr().err
    rc = main(["appearance-encode", "--encoder", "imagenet-alexnet", "--manifest", "m", "--packed", "p",
               "--out", str(tmp_path / "f.npy")])
    assert rc == 2


def test_classes_cli_histograms(tmp_path):
    from tmf.appearance.classes import city_class_histograms, subtile_class_shares

    manifest, packed = make_dataset(tmp_path / "data", n_per_city=3)
    assert main(["classes", "--manifest", str(manifest), "--packed", str(packed), "--out-dir",
                 str(tmp_path / "classes"), "--dpi", "40"]) == 0
    m = pd.read_csv(manifest)
    hist = city_class_histograms(m)
    # Independent: Nice's share of class 7 by hand.
    nice = m[m["city"] == "Nice"]
    ids = [1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14]
    assert hist.loc["Nice", 7] == pytest.approx(100 * nice["count_7"].sum() / nice[[f"count_{i}" for i in ids]]
                                                .to_numpy().sum())
    assert np.allclose(hist[ids].sum(axis=1), 100)
    shares = subtile_class_shares(m)
    assert shares.shape == (len(m), 12) and np.all(shares.sum(1) <= 1 + 1e-9)
    colours = pd.read_csv(tmp_path / "classes" / "colour_histograms.csv")
    sums = colours.groupby(["group", "channel"])["density"].sum()
    assert np.allclose(sums, 1) and set(colours["group"]) == {"labeled", "unlabeled", "test"}
    for f in ("class_histograms_city", "class_histograms_split", "colour_histograms"):
        assert (tmp_path / "classes" / "figures" / f"{f}.png").is_file()
    split = pd.read_csv(tmp_path / "classes" / "class_histograms_split.csv")
    assert list(split["split"]) == ["labeled", "unlabeled", "test"]


def test_a_city_in_two_splits_takes_the_split_of_most_of_its_sub_tiles(caplog):
    """data.missing_label: unlabeled indexes the label-less tiles of a labeled city in the unlabeled split: the
    appearance analysis takes the city as one city, in the split of most of its sub-tiles, and says so."""
    import logging

    import pandas as pd

    from tmf.appearance.analysis import city_splits

    manifest = pd.DataFrame({"city": ["Nice"] * 5 + ["Rennes"] * 2 + ["Brest"] * 2,
                             "split": ["labeled"] * 4 + ["unlabeled"] + ["test"] * 2 + ["labeled", "unlabeled"]})
    with caplog.at_level(logging.WARNING, logger="tmf.appearance.analysis"):
        assert city_splits(manifest) == {"Nice": "labeled", "Rennes": "test", "Brest": "labeled"}
    assert "city Nice has sub-tiles in the splits {'labeled': 4, 'unlabeled': 1}" in caplog.text
    assert "Rennes" not in caplog.text
