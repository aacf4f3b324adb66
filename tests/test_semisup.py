"""Semi-supervised pieces (seed 004 ch. 3): the auxiliary losses of Table 3.3 against hand-worked examples and
direct loops, FixMatch's pseudo-labels and loss, the weak and strong augmentations (the strong view's geometry
moves the pseudo-label map with the image, pixel by pixel; photometric operations against PIL), and SegNet's
unpooling at the pooling indices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from tmf.data.minifrance import IGNORE_INDEX
from tmf.evaluate import augment
from tmf.evaluate.augment import GEOMETRIC, dihedral_crop_index, strong_augment, warp_image, warp_labels
from tmf.evaluate.losses import (
    fixmatch_loss,
    l2_reconstruction,
    mumford_shah_loss,
    pseudo_labels,
    total_variation,
)
from tmf.models.segnet import SegNetDecoder, SegNetEncoder, max_unpool, segnet


# ---------------------------------------------------------------- auxiliary losses (Table 3.3)
def test_l2_reconstruction_is_the_mean_squared_error():
    a, b = torch.rand(2, 3, 4, 5, dtype=torch.float64), torch.rand(2, 3, 4, 5, dtype=torch.float64)
    loop = sum(float(a[n, c, i, j] - b[n, c, i, j]) ** 2 for n in range(2) for c in range(3) for i in range(4)
               for j in range(5)) / a.numel()
    assert float(l2_reconstruction(a, b)) == pytest.approx(loop)
    with pytest.raises(ValueError, match="l2_reconstruction"):
        l2_reconstruction(a, b[..., :2])


def test_total_variation_of_a_step_image():
    # two segments split by a vertical edge: each of the 2 maps jumps by 1 once per row, so Σ_k Σ_i |∇y| = 2H
    h, w = 6, 8
    y = torch.zeros(1, 2, h, w)
    y[0, 0, :, :3], y[0, 1, :, 3:] = 1, 1
    assert float(total_variation(y)) == pytest.approx(2 * h / (h * w))
    # a diagonal soft edge: hand count of |∂h| + |∂w| over a 2 x 2 map with values 0, .5 / .5, 1 (one map)
    z = torch.tensor([[[[0.0, 0.5], [0.5, 1.0]]]])
    assert float(total_variation(z)) == pytest.approx((0.5 + 0.5 + 0.5 + 0.5) / 4)
    assert float(total_variation(torch.full((2, 3, 5, 5), 0.2))) == 0.0


def test_mumford_shah_hard_segmentation_of_a_piecewise_constant_image_is_its_edges():
    # image constant on each segment: the data term vanishes, what remains is alpha x TV
    h, w = 4, 6
    x = torch.zeros(1, 3, h, w)
    x[0, :, :, 2:] = torch.tensor([0.2, 0.7, 0.1]).view(3, 1, 1)
    y = torch.zeros(1, 2, h, w)
    y[0, 0, :, :2], y[0, 1, :, 2:] = 1, 1
    assert float(mumford_shah_loss(y, x, 0.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(mumford_shah_loss(y, x, 0.5)) == pytest.approx(0.5 * 2 * h / (h * w))


def test_mumford_shah_data_term_against_a_direct_loop():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 4, 5))
    logits = rng.normal(size=(2, 3, 4, 5))
    y = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # soft memberships, K = 3
    expected = 0.0
    for n in range(2):
        for k in range(3):
            c = (x[n] * y[n, k]).sum((1, 2)) / y[n, k].sum()  # eq. 3.8
            for i in range(4):
                for j in range(5):
                    expected += ((x[n, :, i, j] - c) ** 2).sum() * y[n, k, i, j]
    expected /= 2 * 4 * 5  # averaged over pixels and images
    got = mumford_shah_loss(torch.tensor(y), torch.tensor(x), alpha_reg=0.0)
    assert float(got) == pytest.approx(expected, rel=1e-6)  # the losses compute in float32
    with pytest.raises(ValueError, match="mumford_shah_loss"):
        mumford_shah_loss(torch.tensor(y)[..., :3], torch.tensor(x))


# ---------------------------------------------------------------- FixMatch (eqs. 3.25, 3.26)
def test_fixmatch_mask_and_loss_on_known_confident_pixels():
    torch.manual_seed(0)
    c, omega = 4, 0.9
    weak = torch.randn(2, c, 3, 3)
    confident = torch.tensor([[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 0], [1, 1, 0], [0, 0, 0]]], dtype=torch.bool)
    winner = torch.randint(c, (2, 3, 3))
    boost = F.one_hot(winner, c).permute(0, 3, 1, 2) * 10.0  # softmax max > 0.99 where added
    weak = torch.where(confident[:, None], weak.clamp(-1, 1) + boost, weak.clamp(-1, 1) * 0.1)  # else max < 0.3
    target = pseudo_labels(weak, omega)
    assert torch.equal(target != IGNORE_INDEX, confident)
    assert torch.equal(target[confident], winner[confident])
    strong = torch.randn(2, c, 3, 3)
    # direct loop over pixels: 1{max q >= ω} H(q̂, p(y | A(u))), divided by every pixel
    total = 0.0
    for n in range(2):
        for i in range(3):
            for j in range(3):
                q = torch.softmax(weak[n, :, i, j], 0)
                if q.max() >= omega:
                    total += -float(torch.log_softmax(strong[n, :, i, j], 0)[q.argmax()])
    assert float(fixmatch_loss(strong, target)) == pytest.approx(total / (2 * 9), rel=1e-6)
    assert float(fixmatch_loss(strong, torch.full_like(target, IGNORE_INDEX))) == 0.0
    with pytest.raises(ValueError, match="fixmatch_loss"):
        fixmatch_loss(strong, target[:, :2])


# ---------------------------------------------------------------- weak augmentation
def test_dihedral_crops_equal_rot90_then_flip_of_each_crop():
    rng = np.random.default_rng(1)
    side, crop, b = 9, 5, 40
    images = torch.from_numpy(rng.integers(0, 256, (3, side, side, 3), dtype=np.uint8))
    idx, rows, cols = (torch.from_numpy(rng.integers(0, hi, b)) for hi in (3, side - crop + 1, side - crop + 1))
    rots, flips = torch.from_numpy(rng.integers(0, 4, b)), torch.from_numpy(rng.integers(0, 2, b))
    got = images.view(-1, 3)[dihedral_crop_index(side, crop, idx, rows, cols, rots, flips)]
    for s in range(b):
        ref = images[idx[s], rows[s]:rows[s] + crop, cols[s]:cols[s] + crop]
        ref = torch.rot90(ref, int(rots[s]), (0, 1))
        ref = ref.flip(1) if flips[s] else ref
        assert torch.equal(got[s], ref), s


# ---------------------------------------------------------------- strong augmentation
def _blocks(b: int, side: int, block: int, seed: int = 0):
    """Images of constant square blocks with distinct colours (none grey) and the block-id label maps."""
    rng = np.random.default_rng(seed)
    n = (side // block) ** 2
    colours = rng.uniform(0.0, 0.4, (n, 3)) + rng.choice([0.0, 0.6], (n, 1))  # away from the 0.5 fill
    ids = np.arange(n).reshape(side // block, side // block).repeat(block, 0).repeat(block, 1)
    labels = torch.from_numpy(np.broadcast_to(ids, (b, side, side)).copy()).long()
    x = torch.from_numpy(colours[ids].transpose(2, 0, 1)).float()[None].repeat(b, 1, 1, 1)
    return x, labels, torch.from_numpy(colours).float()


def test_geometric_strong_augmentation_moves_image_and_pseudo_labels_identically():
    side, block, b = 48, 8, 12
    x, labels, colours = _blocks(b, side, block)
    gen = torch.Generator().manual_seed(3)
    xs, theta = strong_augment(x, gen, n_ops=2, magnitude=10, ops=GEOMETRIC)
    assert not torch.allclose(theta, torch.eye(3).expand_as(theta))
    moved = warp_labels(labels, theta)
    # a pixel whose bilinear value is exactly one block's colour has all its neighbours in that block: its
    # (nearest-neighbour) label must be that block's id, pixel by pixel
    dist = (xs.permute(0, 2, 3, 1)[..., None, :] - colours).abs().amax(-1)  # (b, H, W, n blocks)
    best, which = dist.min(-1)
    pure = best < 1e-5
    assert pure.float().mean() > 0.4
    assert torch.equal(moved[pure], which[pure])
    # pixels brought in from outside the crop carry no pseudo-label and are grey-filled, never a block colour
    outside = moved == IGNORE_INDEX
    assert outside.any() and not (outside & pure).any()
    # an integer translation is an exact shift of both
    t = torch.eye(3).repeat(1, 1, 1)
    t[0, 0, 2] = 2 * 5 / side  # sample 5 pixels to the right
    shifted_x, shifted_y = warp_image(x[:1], t), warp_labels(labels[:1], t)
    assert torch.allclose(shifted_x[..., :-5], x[:1, :, :, 5:], atol=1e-5)
    assert torch.equal(shifted_y[..., :-5], labels[:1, :, 5:]) and (shifted_y[..., -5:] == IGNORE_INDEX).all()


def test_photometric_strong_augmentation_keeps_the_geometry():
    x, labels, _ = _blocks(6, 32, 8, seed=2)
    ops = tuple(o for o in augment.OPS if o not in GEOMETRIC)
    xs, theta = strong_augment(x, torch.Generator().manual_seed(0), n_ops=3, magnitude=10, ops=ops)
    assert torch.equal(theta, torch.eye(3).expand_as(theta)) and torch.equal(warp_labels(labels, theta), labels)
    assert xs.shape == x.shape and 0 <= float(xs.min()) and float(xs.max()) <= 1
    assert not torch.allclose(xs, x)
    with pytest.raises(ValueError, match="unknown operations"):
        strong_augment(x, torch.Generator(), 1, 5, ops=("cutout",))


@pytest.mark.parametrize("name, s, sign, pil", [
    ("equalize", 0.0, 1.0, lambda im: ImageOps.equalize(im)),
    ("posterize", 0.5, 1.0, lambda im: ImageOps.posterize(im, 6)),
    ("solarize", 0.25, 1.0, lambda im: ImageOps.solarize(im, 192)),
    ("autocontrast", 0.0, 1.0, lambda im: ImageOps.autocontrast(im)),
    ("brightness", 0.5, -1.0, lambda im: ImageEnhance.Brightness(im).enhance(0.55)),
    ("color", 0.5, 1.0, lambda im: ImageEnhance.Color(im).enhance(1.45)),
    ("contrast", 1.0, -1.0, lambda im: ImageEnhance.Contrast(im).enhance(0.1)),
    ("sharpness", 1.0, 1.0, lambda im: ImageEnhance.Sharpness(im).enhance(1.9)),
])
def test_photometric_operations_follow_pil(name, s, sign, pil):
    rng = np.random.default_rng(0)
    img = rng.integers(20, 200, (24, 24, 3), dtype=np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    got = augment.PHOTOMETRIC_OPS[name](x, torch.tensor([s]), torch.tensor([sign])).clamp(0, 1)
    got = (got[0].permute(1, 2, 0) * 255).round().numpy()
    ref = np.asarray(pil(Image.fromarray(img)), dtype=np.float64)
    inner = (slice(1, -1), slice(1, -1)) if name == "sharpness" else (slice(None), slice(None))  # PIL keeps borders
    tol = 0 if name in ("equalize", "posterize", "solarize") else 1  # PIL rounds its intermediate images
    assert np.abs(got[inner] - ref[inner]).max() <= tol, name


# ---------------------------------------------------------------- SegNet
def test_unpooling_puts_values_back_at_the_pooling_indices():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 7)  # odd width: the last column is dropped by the pooling
    pooled, idx = F.max_pool2d(x, 2, return_indices=True)
    up = max_unpool(pooled, idx, x.shape[-2:])
    assert up.shape == x.shape
    for n in range(2):
        for c in range(3):
            for i in range(3):
                for j in range(3):
                    window = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    r, q = divmod(int(window.argmax()), 2)
                    assert up[n, c, 2 * i + r, 2 * j + q] == window.max()
    assert int((up != 0).sum()) == pooled.numel()  # zeros elsewhere
    # the gradient flows back to the pooled values only (a gather at the same indices)
    v = pooled.clone().requires_grad_(True)
    g = torch.randn_like(x)
    max_unpool(v, idx, x.shape[-2:]).mul(g).sum().backward()
    assert torch.equal(v.grad, g.flatten(2).gather(2, idx.flatten(2)).view_as(v))


def test_segnet_shapes_heads_and_parameter_groups():
    enc, dec = SegNetEncoder((4, 8, 8, 16, 16)), SegNetDecoder((4, 8, 8, 16, 16))
    bottom, pools = enc.feature_maps(torch.randn(2, 3, 64, 40))
    assert bottom.shape == (2, 16, 2, 1) and len(pools) == 5
    assert dec((bottom, pools)).shape == (2, 4, 64, 40)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in enc.modules()) == 13  # VGG-16's 13 convolutions
    m = segnet(14, (4, 8, 8, 16, 16), aux_channels=5)
    logits, aux = m(torch.randn(2, 3, 32, 32), aux=True)
    assert logits.shape == (2, 14, 32, 32) and aux.shape == (2, 5, 32, 32)
    groups = m.parameter_groups()
    assert sum(p.numel() for g in groups.values() for p in g) == sum(p.numel() for p in m.parameters())
    with pytest.raises(ValueError, match="SegNet"):
        SegNetEncoder((4, 8), (2, 2, 3))


# ---------------------------------------------------------------- the report's table
def test_semisupervised_table_compares_like_with_like(tmp_path):
    from tmf.plan.items import item
    from tmf.report.items import Context
    from tmf.report.scores import segmentation_vs_published, semisupervised_comparison

    rows = []
    for protocol, method, miou in (("finetune", "supervised", 0.10), ("finetune", "fixmatch", 0.13),
                                   ("finetune", "berundanet_l2", 0.09), ("finetune", "simclr", 0.15),
                                   ("finetune_fixmatch", "simclr", 0.17), ("finetune_fixmatch", "random", 0.11),
                                   ("segnet", "supervised", 0.05), ("linear", "simclr", 0.2)):
        for fraction in (0.01, 1.0):
            rows.append({"protocol": protocol, "method": method, "test_set": "test_cities", "fraction": fraction,
                         "status": "ok", "reason": "", "n_seeds": 2, "n_train": 3,
                         "architecture": "segnet" if protocol == "segnet" else "unet", "oa_mean": 0.4,
                         "oa_std": 0.01, "miou_mean": miou + fraction / 10, "miou_std": 0.02, "kappa_mean": 0.2,
                         "kappa_std": 0.0})
    path = tmp_path / "summary_agg.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    ctx = Context({"aggregate": str(path)})
    t = semisupervised_comparison(ctx)
    assert set(t["protocol"]) == {"finetune", "finetune_fixmatch"}
    assert list(t["label fraction"]) == ["1 %"] * 6 + ["100 %"] * 6  # same fractions side by side
    first = t[t["label fraction"] == "1 %"]
    assert list(first["method"]) == ["supervised", "berundanet_l2", "fixmatch", "simclr", "simclr", "random"]
    row = first.set_index(["protocol", "method"]).loc[("finetune_fixmatch", "simclr")]
    assert row["family"] == "self-supervised + FixMatch" and row["Δ mIoU vs supervised (points)"] == "+7.0"
    assert row["mIoU (%)"] == "17.1 ± 2.0"
    # published numbers (U-Net, all labels, test cities) only next to our fraction-1 rows: Table 3.3 for the
    # auxiliary losses
    l2 = t.set_index(["label fraction", "method"])
    assert l2.loc[("100 %", "berundanet_l2"), "mIoU, published (%)"] == 16.27
    assert l2.loc[("100 %", "berundanet_l2"), "published in"] == "Table 3.3"
    assert l2.loc[("100 %", "supervised"), "OA, published (%)"] == 46.30
    assert pd.isna(l2.loc[("1 %", "supervised"), "OA, published (%)"])
    # on another test set: no published number (Table 3.1 / 3.3 score the test cities)
    pd.DataFrame(rows).assign(test_set="labeled_holdout").to_csv(path, index=False)
    assert semisupervised_comparison(ctx)["OA, published (%)"].isna().all()
    pd.DataFrame(rows).to_csv(path, index=False)
    # Table 3.1: the SegNet run next to the SegNet column
    s = segmentation_vs_published(ctx).set_index(["protocol", "method", "label fraction"])
    assert s.loc[("segnet", "supervised", "100 %"), "OA, Table 3.1 (%)"] == 36.76
    assert s.loc[("segnet", "supervised", "100 %"), "network"] == "SegNet"
    assert s.loc[("finetune", "supervised", "100 %"), "OA, Table 3.1 (%)"] == 46.30
    assert s.loc[("finetune", "supervised", "100 %"), "network"] == "U-Net"
    # without a semi-supervised run the table says so, and how to get one
    pd.DataFrame([r for r in rows if r["method"] in ("supervised", "simclr") and r["protocol"] == "finetune"]).to_csv(
        path, index=False)
    assert "params/semisup.yaml" in semisupervised_comparison(ctx).iloc[0, 0]
    assert item("semisupervised_comparison").part == "evaluation"
