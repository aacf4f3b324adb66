"""Region recovery: on the embedded synthetic data, whose regional structure is known by construction
(``tmf.data.synthetic.REGIONS``), the appearance analysis must find it (issue #3, "Done when").

Generate a small synthetic MiniFrance → subsample tinyMiniFrance → pack → encode (random ResNet-18: the same
family as the thesis' ResNet-34 at half the cost; a random CNN's pooled features already carry the colour and
texture statistics the generator varies by region) → t-SNE (2 seeds) → surfaces → scores. Then:

- the mean IoU between a training and a test city of the same designed region exceeds the mean across regions;
- Labeled→Test coverage (IoT) is below Unlabeled→Test coverage, as in Table 2.7 (0.64 < 0.93).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from tmf.appearance.analysis import run_scores
    from tmf.appearance.embedding import tsne_embed
    from tmf.appearance.features import encode_images, load_encoder
    from tmf.config import validate
    from tmf.data.reader import index_tiles
    from tmf.data.subsample import pack, select_subtiles, write_tinyminifrance
    from tmf.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("regions")
    # 2 tiles of 256 px per city (min_tiles), 24 sub-tiles of 64 px per city.
    generate_synthetic(root / "raw", seed=0, tile_scale=0.001, min_tiles=2, tile_size=256)
    manifest = select_subtiles(index_tiles(root / "raw"), n_subtiles=384, size=64, seed=0)
    write_tinyminifrance(manifest, root / "raw", root / "tiny")
    images_path, _ = pack(root / "tiny" / "manifest.csv", root / "tiny" / "packed")
    manifest = pd.read_csv(root / "tiny" / "manifest.csv", keep_default_na=False)
    images = np.load(images_path, mmap_mode="r")

    cfg = validate({"appearance": {
        "input_size": 0, "grid_resolution": 100,
        "tsne": {"perplexity": 20, "negative_gradient_method": "bh", "n_jobs": 1},
    }})["appearance"]
    feats = encode_images(load_encoder("random-resnet18", random_init_seed=0), images, "last", 64, 0)
    embeddings = {seed: tsne_embed(feats, seed, **cfg["tsne"]) for seed in (0, 1)}
    summary = run_scores(manifest, embeddings, cfg, root / "out", "random-resnet18")
    return summary, pd.read_csv(root / "out" / "coverage_summary.csv")


def test_cities_of_one_region_look_alike(scored):
    from tmf.appearance.coverage import UNION_TEST, UNION_TRAIN
    from tmf.data.synthetic import REGIONS

    _, cov = scored
    pairs = cov[(cov["train"] != UNION_TRAIN) & (cov["test"] != UNION_TEST)]
    same = np.array([REGIONS[a] == REGIONS[b] for a, b in zip(pairs["train"], pairs["test"], strict=True)])
    assert same.sum() >= 5 and (~same).sum() >= 40
    within, across = pairs["iou_mean"][same].mean(), pairs["iou_mean"][~same].mean()
    assert within > across, f"mean IoU within regions {within:.3f} <= across regions {across:.3f}"
    # Each test city's best training match (by IoU) is in its own region more often than not, where it has one.
    hits = []
    for test, g in pairs.groupby("test"):
        if any(REGIONS[t] == REGIONS[test] for t in g["train"]):
            hits.append(REGIONS[g.loc[g["iou_mean"].idxmax(), "train"]] == REGIONS[test])
    assert np.mean(hits) > 0.5, hits


def test_labeled_covers_the_test_split_less_than_unlabeled(scored):
    summary, _ = scored
    cov = summary["split_coverage"]
    lab, unl = cov["labeled_vs_test"]["iot"]["mean"], cov["unlabeled_vs_test"]["iot"]["mean"]
    assert lab < unl, f"Labeled→Test IoT {lab:.3f} is not below Unlabeled→Test IoT {unl:.3f} (Table 2.7)"
    # The union of both training splits covers the test split at least as well as either.
    assert cov["training_vs_test"]["iot"]["mean"] >= unl - 1e-9
