"""Batched remote-sensing augmentations (tmf.ssl.augment)."""

from __future__ import annotations

import pytest
import torch

from tmf.models.resnet import IMAGENET_MEAN, IMAGENET_STD
from tmf.ssl.augment import (
    AugmentConfig,
    augment_view,
    colour_jitter,
    crop_flip_rotate,
    gaussian_blur,
    make_paired_views,
    make_views,
    normalise,
    to_float,
)

OFF = AugmentConfig(flip_p=0.0, rot90=False, jitter_p=0.0, blur_p=0.0, ratio=(1.0, 1.0))


def _imgs(b=6, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, s, s, 3), generator=g, dtype=torch.uint8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_to_float_layout_and_checks():
    x = _imgs()
    f = to_float(x)
    assert f.shape == (6, 3, 16, 16)
    assert torch.equal(f[2, 1], x[2, :, :, 1].float() / 255)
    with pytest.raises(ValueError, match="uint8"):
        to_float(x.float())


def test_identity_when_everything_is_off():
    x = to_float(_imgs())
    out = augment_view(x, 16, (1.0, 1.0), OFF, _gen())
    torch.testing.assert_close(out, normalise(x), atol=1e-5, rtol=0)


def test_normalise_is_imagenet():
    x = torch.full((1, 3, 2, 2), 0.5)
    out = normalise(x)
    expected = torch.tensor([(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225])
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_flips_both_always():
    x = to_float(_imgs())
    cfg = AugmentConfig(flip_p=1.0, rot90=False, ratio=(1.0, 1.0))
    out = crop_flip_rotate(x, 16, (1.0, 1.0), cfg, _gen(), 6, 0)
    torch.testing.assert_close(out, x.flip(-1).flip(-2), atol=1e-5, rtol=0)


def test_rotations_are_multiples_of_90_and_all_occur():
    x = to_float(_imgs(b=64))
    cfg = AugmentConfig(flip_p=0.0, rot90=True, ratio=(1.0, 1.0))
    out = crop_flip_rotate(x, 16, (1.0, 1.0), cfg, _gen(), 64, 0)
    seen = set()
    for i in range(64):
        errs = [float((out[i] - torch.rot90(x[i], k, dims=(1, 2))).abs().max()) for k in range(4)]
        k = min(range(4), key=errs.__getitem__)
        assert errs[k] < 1e-5
        seen.add(k)
    assert seen == {0, 1, 2, 3}


def test_crop_takes_a_window_of_the_right_area():
    # an image whose value is its column coordinate: a crop of area fraction s spans sqrt(s) of the columns
    s = 64
    ramp = torch.linspace(0, 1, s).view(1, 1, 1, s).expand(32, 3, s, s).contiguous()
    out = crop_flip_rotate(ramp, 32, (0.25, 0.25), OFF, _gen(), 32, 0)
    span = out[:, 0].amax(dim=(1, 2)) - out[:, 0].amin(dim=(1, 2))
    assert torch.all((span > 0.42) & (span < 0.52))  # half the width (minus the edge half-pixels)
    assert out.min() >= 0 and out.max() <= 1
    lo = out[:, 0].amin(dim=(1, 2))
    assert lo.std() > 0.05  # boxes at random places


def test_slices_of_the_global_batch_match_the_whole():
    x = to_float(_imgs(b=8))
    cfg = AugmentConfig()
    whole = augment_view(x, 12, (0.2, 1.0), cfg, _gen(3))
    parts = [augment_view(x[i * 4:(i + 1) * 4], 12, (0.2, 1.0), cfg, _gen(3), batch=8, offset=i * 4)
             for i in range(2)]
    assert torch.equal(whole, torch.cat(parts))
    with pytest.raises(ValueError, match="outside the global batch"):
        augment_view(x, 12, (0.2, 1.0), cfg, _gen(3), batch=4, offset=0)


def test_deterministic_given_generator_and_different_across_seeds():
    x = to_float(_imgs())
    a = augment_view(x, 12, (0.2, 1.0), AugmentConfig(), _gen(1))
    b = augment_view(x, 12, (0.2, 1.0), AugmentConfig(), _gen(1))
    c = augment_view(x, 12, (0.2, 1.0), AugmentConfig(), _gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_brightness_scales_each_sample_by_one_factor():
    x = 0.2 + 0.3 * torch.rand(16, 3, 8, 8, generator=_gen())  # in [0.2, 0.5]: no clamping at 1.4×
    cfg = AugmentConfig(jitter_p=1.0, brightness=0.4, contrast=0.0, saturation=0.0)
    out = colour_jitter(x, cfg, _gen(), 16, 0)
    ratio = out / x
    per_sample = ratio.view(16, -1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-5)
    f = per_sample[:, 0]
    assert torch.all((f >= 0.6 - 1e-6) & (f <= 1.4 + 1e-6)) and f.std() > 0.05


def test_saturation_zero_gives_gray_and_jitter_off_is_identity():
    x = torch.rand(4, 3, 8, 8, generator=_gen())
    cfg = AugmentConfig(jitter_p=1.0, brightness=0.0, contrast=0.0, saturation=1.0)
    out = colour_jitter(x, cfg, _gen(), 4, 0)
    assert torch.all((out >= 0) & (out <= 1))
    off = colour_jitter(x, AugmentConfig(jitter_p=0.0), _gen(), 4, 0)
    torch.testing.assert_close(off, x)


def test_blur_keeps_constants_and_smooths_noise():
    const = torch.full((4, 3, 112, 112), 0.3)
    cfg = AugmentConfig(blur_p=1.0, blur_sigma=(3.0, 4.0))  # 1.5–2 px at 112 px (sigma scales with size/224)
    torch.testing.assert_close(gaussian_blur(const, cfg, _gen(), 4, 0), const)
    noise = torch.rand(4, 3, 112, 112, generator=_gen())
    out = gaussian_blur(noise, cfg, _gen(), 4, 0)
    assert out.std() < 0.6 * noise.std()
    torch.testing.assert_close(out.mean(), noise.mean(), atol=0.01, rtol=0)
    assert torch.equal(gaussian_blur(noise, AugmentConfig(blur_p=0.0), _gen(), 4, 0), noise)


def test_blur_matches_a_direct_2d_convolution():
    x = torch.rand(2, 3, 112, 112, generator=_gen(5))
    cfg = AugmentConfig(blur_p=1.0, blur_sigma=(2.0, 2.0))  # sigma = 2·112/224 = 1 px, radius 3
    sigma, r = 1.0, 3
    out = gaussian_blur(x, cfg, _gen(), 2, 0)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k1 = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k1 = k1 / k1.sum()
    k2 = (k1[:, None] * k1[None, :]).view(1, 1, 2 * r + 1, 2 * r + 1).repeat(3, 1, 1, 1)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (r, r, r, r), mode="reflect"), k2, groups=3)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_make_views_follows_crop_specs():
    class Spec:
        def __init__(self, f, s):
            self.size_factor, self.scale = f, s

    views = make_views(_imgs(b=4, s=32), [Spec(1.0, (0.4, 1.0)), Spec(1.0, (0.4, 1.0)), Spec(0.5, (0.05, 0.4))],
                       24, AugmentConfig(), _gen())
    assert [tuple(v.shape) for v in views] == [(4, 3, 24, 24), (4, 3, 24, 24), (4, 3, 12, 12)]
    assert not torch.equal(views[0], views[1])
    assert all(torch.isfinite(v).all() for v in views)


def test_config_from_dict_rejects_unknown_keys():
    assert AugmentConfig.from_dict({"ratio": [0.5, 2]}).ratio == (0.5, 2.0)
    with pytest.raises(ValueError, match="unknown keys"):
        AugmentConfig.from_dict({"hue": 0.1})


def test_jitter_matches_torchvision_steps_when_nothing_clips():
    # torchvision's definitions, step by step (brightness, contrast, saturation), on values that never leave [0, 1]
    x = 0.35 + 0.3 * torch.rand(8, 3, 6, 6, generator=_gen(7))
    cfg = AugmentConfig(jitter_p=1.0, brightness=0.2, contrast=0.2, saturation=0.2)
    out = colour_jitter(x, cfg, _gen(4), 8, 0)
    g = _gen(4)
    torch.rand(8, generator=g)  # the on/off draw
    fb, fc, fs = (0.8 + 0.4 * torch.rand(8, generator=g) for _ in range(3))

    def gray(t):
        return 0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3]

    y = x * fb.view(-1, 1, 1, 1)
    y = fc.view(-1, 1, 1, 1) * y + (1 - fc.view(-1, 1, 1, 1)) * gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = fs.view(-1, 1, 1, 1) * y + (1 - fs.view(-1, 1, 1, 1)) * gray(y)
    assert y.min() > 0 and y.max() < 1
    torch.testing.assert_close(out, y, atol=1e-6, rtol=0)


def test_channel_gain_follows_the_torchvision_steps_with_one_factor_per_channel():
    # the same steps as above, then each channel times its own factor, drawn (3 per sample) after the saturation's
    x = 0.35 + 0.3 * torch.rand(8, 3, 6, 6, generator=_gen(7))
    cfg = AugmentConfig(jitter_p=1.0, brightness=0.1, contrast=0.1, saturation=0.1, channel_gain=0.2)
    out = colour_jitter(x, cfg, _gen(4), 8, 0)
    g = _gen(4)
    torch.rand(8, generator=g)
    fb, fc, fs = (0.9 + 0.2 * torch.rand(8, generator=g) for _ in range(3))
    fg = (0.8 + 0.4 * torch.rand(24, generator=g)).view(8, 3)

    def gray(t):
        return 0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3]

    y = x * fb.view(-1, 1, 1, 1)
    y = fc.view(-1, 1, 1, 1) * y + (1 - fc.view(-1, 1, 1, 1)) * gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = fs.view(-1, 1, 1, 1) * y + (1 - fs.view(-1, 1, 1, 1)) * gray(y)
    y = y * fg.view(8, 3, 1, 1)
    assert y.min() > 0 and y.max() < 1
    torch.testing.assert_close(out, y, atol=1e-6, rtol=0)
    assert float(fg.std()) > 0.05 and torch.all((fg >= 0.8) & (fg <= 1.2))


def test_channel_gain_off_draws_nothing_and_jitter_off_leaves_it_out():
    x = torch.rand(4, 3, 8, 8, generator=_gen())
    g = _gen(3)
    colour_jitter(x, AugmentConfig(jitter_p=1.0), g, 4, 0)
    ref = _gen(3)
    for _ in range(4):  # on/off, brightness, contrast, saturation: the stream of before the gains existed
        torch.rand(4, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())
    off = colour_jitter(x, AugmentConfig(jitter_p=0.0, channel_gain=0.5), _gen(), 4, 0)
    torch.testing.assert_close(off, x)


class _Spec:
    def __init__(self, f, s):
        self.size_factor, self.scale = f, s


@pytest.mark.parametrize("blur_p,jitter_p,gain", [(0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.5, 0.8, 0.0), (0.0, 1.0, 0.1),
                                                 (0.5, 0.8, 0.1)])
def test_fused_views_equal_the_step_by_step_augmentation(blur_p, jitter_p, gain):
    # mid-range images and mild jitter: nothing saturates, so the clamp's place does not matter
    g0 = torch.Generator().manual_seed(11)
    imgs = torch.randint(70, 180, (6, 24, 24, 3), generator=g0, dtype=torch.uint8)
    cfg = AugmentConfig(jitter_p=jitter_p, brightness=0.1, contrast=0.1, saturation=0.1, channel_gain=gain,
                        blur_p=blur_p, blur_sigma=(5.0, 9.0))
    specs = [_Spec(1.0, (0.3, 1.0)), _Spec(0.5, (0.05, 0.3))]
    fused = make_views(imgs, specs, 16, cfg, _gen(5), batch=8, offset=2)
    g = _gen(5)
    x = to_float(imgs)
    ref = [augment_view(x, s, sp.scale, cfg, g, batch=8, offset=2) for s, sp in zip((16, 8), specs, strict=True)]
    # the contrast mean is taken after the blur in the fused path: a small difference when both are on
    tol = 2e-3 if blur_p and jitter_p else 1e-5
    for f, r in zip(fused, ref, strict=True):
        torch.testing.assert_close(f, r, atol=tol, rtol=0)


def test_fused_views_dtype_layout_and_range():
    views = make_views(_imgs(b=4, s=32), [_Spec(1.0, (0.2, 1.0))], 24, AugmentConfig(jitter_p=1.0, brightness=0.9),
                       _gen(), memory_format=torch.channels_last)
    v = views[0]
    assert v.shape == (4, 3, 24, 24) and v.dtype == torch.float32
    assert v.is_contiguous(memory_format=torch.channels_last)
    lo = normalise(torch.zeros(1, 3, 1, 1)).view(3)
    hi = normalise(torch.ones(1, 3, 1, 1)).view(3)
    per_c = v.permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.all(per_c.min(1).values >= lo - 1e-5) and torch.all(per_c.max(1).values <= hi + 1e-5)


def test_half_precision_path_is_close_to_float32():
    imgs = _imgs(b=4, s=32)
    specs = [_Spec(1.0, (0.2, 1.0))]
    ref = make_views(imgs, specs, 24, AugmentConfig(), _gen(2))[0]
    half = make_views(imgs, specs, 24, AugmentConfig(), _gen(2), work=torch.float16)[0]
    assert half.dtype == torch.float16
    assert float((half.float() - ref).abs().max()) < 0.03  # normalised units; ~1/255 of the [0, 1] range is 0.017


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_views_move_both_modalities_with_the_same_geometry(seed):
    # the second modality is the red channel itself: with the optical steps off, every view of it must equal the
    # red channel of the RGB view pixel by pixel, whatever crop, flips and rotation each sample drew
    imgs = _imgs(b=8, s=24, seed=seed)
    red = imgs[..., 0].float().unsqueeze(1) / 255.0
    other = torch.cat([red, 1 - red], 1)  # two channels, as elevation with its slope
    cfg = AugmentConfig(jitter_p=0.0, blur_p=0.0)  # crops, flips and rotations on
    specs = [_Spec(1.0, (0.2, 1.0)), _Spec(0.5, (0.05, 0.4))]
    rgb, dem = make_paired_views(imgs, other, specs, 16, cfg, _gen(seed), batch=10, offset=1)
    assert [v.shape for v in dem] == [(8, 2, 16, 16), (8, 2, 8, 8)]
    for v, d in zip(rgb, dem, strict=True):
        r = v[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # undo the normalisation of the red channel
        torch.testing.assert_close(d[:, 0], r, atol=1e-5, rtol=0)
        torch.testing.assert_close(d[:, 1], 1 - r, atol=1e-5, rtol=0)
    # the RGB views are those of make_views (same random numbers), also with the optical steps on
    cfg = AugmentConfig()
    rgb, _ = make_paired_views(imgs, other, specs, 16, cfg, _gen(seed))
    for a, b in zip(rgb, make_views(imgs, specs, 16, cfg, _gen(seed)), strict=True):
        assert torch.equal(a, b)
    # and without the RGB views, the other modality's views are unchanged
    _, alone = make_paired_views(imgs, other, specs, 16, cfg, _gen(seed), rgb=False)
    _, both = make_paired_views(imgs, other, specs, 16, cfg, _gen(seed))
    assert all(torch.equal(a, b) for a, b in zip(alone, both, strict=True))
    with pytest.raises(ValueError, match="co-registered"):
        make_paired_views(imgs, other[:, :, :20], specs, 16, cfg, _gen(seed))
