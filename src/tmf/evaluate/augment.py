"""Batched augmentations of the segmentation training pools: FixMatch's weak view (crops, flips, 90° rotations) and
strong view (RandAugment-style), with the strong view's geometry applied to the pseudo-label map as well.

Seed 004 §3.3.2 (after Sohn et al. 2020): a weak augmentation α(·) — flips and translations; for nadir aerial
images also 90° rotations (SPEC.md §4), and the translations are random crops — gives the pseudo-labels, a strong
augmentation A(·) — RandAugment (Cubuk et al. 2020): N transformations drawn from a fixed set, each at a severity
sampled in the range set by the magnitude M — is what the model must predict them on. For segmentation the
pseudo-label is a map, so every geometric transformation of A moves the map with the image (nearest-neighbour,
pixels brought in from outside the crop get no pseudo-label).

Everything works on a whole batch on the batch's device, with per-sample parameters drawn from a
``torch.Generator`` (on the CPU for CPU training, so the same seed gives the same batches): no per-sample Python
loop, no host–device synchronisation. Written by hand because torchvision (whose RandAugment is per image, on PIL or
single tensors) does not import beside the pinned torch and Kornia is not a dependency; the operations follow
PIL's definitions (ImageEnhance blends, ImageOps.equalize / posterize / solarize / autocontrast).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tmf.data.minifrance import IGNORE_INDEX

# Sohn et al. 2020 (Table 12) RandAugment set, without Cutout (a cut-out square has no pixels to carry a
# pseudo-label; our choice). Severity s in [0, M/10] maps onto each operation's range below.
PHOTOMETRIC = ("identity", "autocontrast", "equalize", "brightness", "color", "contrast", "sharpness", "posterize",
               "solarize")
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
OPS = PHOTOMETRIC + GEOMETRIC
MAX_MAGNITUDE = 10  # RandAugment's scale: M = 10 is the full range of every operation
ENHANCE = 0.9  # brightness / colour / contrast / sharpness factors 1 ± 0.9 s (Cubuk et al. 2020)
ROTATE_DEG, SHEAR, TRANSLATE = 30.0, 0.3, 0.3  # Sohn et al. 2020 Table 12 ranges (translate: share of the side)
FILL = 0.5  # grey brought in by the geometric transformations (FixMatch's (128, 128, 128))


# ---------------------------------------------------------------- weak: crops, flips, 90° rotations
def dihedral_crop_index(side: int, crop: int, idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                        rots: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Flat pixel indices ``(B, crop, crop)`` into a pool of ``(n, side, side)`` images for crops at (``rows``,
    ``cols``) of images ``idx``, each rotated by ``rots`` × 90° (``torch.rot90`` over (H, W)) and then flipped
    left–right where ``flips``: the batched equivalent of ``rot90(img[r:r+c, q:q+c], k).flip(W)`` per sample, as one
    gather."""
    c = crop
    i = torch.arange(c, device=idx.device).view(1, c, 1)
    j = torch.arange(c, device=idx.device).view(1, 1, c)
    k, f = rots.view(-1, 1, 1), flips.view(-1, 1, 1).bool()
    j = torch.where(f, c - 1 - j, j)  # the flip is applied last, so it is undone first
    i, j = torch.broadcast_tensors(i, j)
    a = torch.where(k == 0, i, torch.where(k == 1, j, torch.where(k == 2, c - 1 - i, c - 1 - j)))
    b = torch.where(k == 0, j, torch.where(k == 1, c - 1 - i, torch.where(k == 2, c - 1 - j, i)))
    return (idx.view(-1, 1, 1) * side + rows.view(-1, 1, 1) + a) * side + cols.view(-1, 1, 1) + b


# ---------------------------------------------------------------- strong: photometric operations (PIL's)
def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, PIL's ``convert("L")``: (B, 1, H, W)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: degenerate + factor · (x − degenerate), per-sample factor (B,)."""
    return degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)


def _factor(s: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    return 1.0 + sign * ENHANCE * s


def _autocontrast(x, s, sign):
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-6), x)


def _equalize(x, s, sign):
    """PIL ImageOps.equalize per channel: lut = (cdf_before + step // 2) // step, step = (n − n_last) // 255."""
    b, c, h, w = x.shape
    v = (x * 255).round().clamp(0, 255).long().contiguous().view(b * c, h * w)
    offset = torch.arange(b * c, device=x.device).view(-1, 1) * 256
    hist = torch.bincount((v + offset).view(-1), minlength=b * c * 256).view(b * c, 256)
    last = hist.gather(1, v.amax(1, keepdim=True))  # count of the highest level present
    step = torch.div(h * w - last, 255, rounding_mode="floor")
    before = hist.cumsum(1) - hist
    lut = torch.div(before + torch.div(step, 2, rounding_mode="floor"), step.clamp_min(1), rounding_mode="floor")
    lut = torch.where(step > 0, lut.clamp(max=255), torch.arange(256, device=x.device).view(1, -1))
    return (lut.gather(1, v).float() / 255).view(b, c, h, w)


def _brightness(x, s, sign):
    return _blend(torch.zeros_like(x), x, _factor(s, sign))


def _color(x, s, sign):
    return _blend(_grey(x).expand_as(x), x, _factor(s, sign))


def _contrast(x, s, sign):
    return _blend(_grey(x).mean((1, 2, 3), keepdim=True).expand_as(x), x, _factor(s, sign))


def _sharpness(x, s, sign):
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device) / 13  # PIL SMOOTH
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(x.shape[1], 1, 3, 3),
                      groups=x.shape[1])
    return _blend(smooth, x, _factor(s, sign))


def _posterize(x, s, sign):
    q = torch.pow(2.0, (4 * s).round()).view(-1, 1, 1, 1)  # keep 8 − round(4 s) bits, 4..8
    return torch.floor((x * 255).round() / q) * q / 255


def _solarize(x, s, sign):
    threshold = (256 * (1 - s)).view(-1, 1, 1, 1)  # on the 0..255 scale; s = 0 inverts nothing
    return torch.where((x * 255).round() >= threshold, 1 - x, x)


PHOTOMETRIC_OPS = {"identity": lambda x, s, sign: x, "autocontrast": _autocontrast, "equalize": _equalize,
                   "brightness": _brightness, "color": _color, "contrast": _contrast, "sharpness": _sharpness,
                   "posterize": _posterize, "solarize": _solarize}


# ---------------------------------------------------------------- strong: geometric operations (one affine map)
def _affine(name: str, s: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) homogeneous maps from output to input coordinates in ``affine_grid``'s normalised [−1, 1] frame
    (square crops: a rotation there is a rotation of the image)."""
    b = s.shape[0]
    a = torch.eye(3, device=s.device).repeat(b, 1, 1)
    v = sign * s
    if name == "rotate":
        t = v * math.radians(ROTATE_DEG)
        a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = t.cos(), -t.sin(), t.sin(), t.cos()
    elif name == "shear_x":
        a[:, 0, 1] = v * SHEAR
    elif name == "shear_y":
        a[:, 1, 0] = v * SHEAR
    elif name == "translate_x":
        a[:, 0, 2] = 2 * v * TRANSLATE
    elif name == "translate_y":
        a[:, 1, 2] = 2 * v * TRANSLATE
    else:
        raise ValueError(f"unknown geometric operation {name!r}; expected one of {GEOMETRIC}")
    return a


def _grid(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.affine_grid(theta[:, :2].float(), [theta.shape[0], 1, *size], align_corners=False)


def warp_image(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images ``(B, C, H, W)`` through the maps ``theta`` ``(B, 3, 3)`` (bilinear, grey outside)."""
    g = _grid(theta, x.shape[-2:])
    return F.grid_sample(x.float() - FILL, g, mode="bilinear", padding_mode="zeros", align_corners=False) + FILL


def warp_labels(labels: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Move label maps ``(B, H, W)`` (ids, ``IGNORE_INDEX`` for none) through the same maps as :func:`warp_image`,
    nearest neighbour; pixels that come from outside the map get ``IGNORE_INDEX``."""
    g = _grid(theta, labels.shape[-2:])
    shifted = (labels.float() + 1)[:, None]  # 0 marks "outside" after zero padding
    out = F.grid_sample(shifted, g, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].round().long()
    return torch.where(out > 0, out - 1, torch.full_like(out, IGNORE_INDEX))


def strong_augment(x: torch.Tensor, gen: torch.Generator, n_ops: int, magnitude: float,
                   ops: tuple[str, ...] = OPS) -> tuple[torch.Tensor, torch.Tensor]:
    """RandAugment for segmentation: ``n_ops`` operations per image, each drawn uniformly from ``ops`` and applied
    at a severity s ~ U(0, magnitude / 10) with a random sign where the operation has one.

    ``x``: images ``(B, 3, H, W)`` in [0, 1] (square crops). Returns ``(x_strong, theta)``: the augmented images,
    clamped to [0, 1], and the ``(B, 3, 3)`` map of their geometric part, for :func:`warp_labels`. Photometric
    operations apply in draw order; the geometric ones compose into one affine map, applied once at the end (one
    resampling instead of one per operation; it commutes with the pixel-wise operations up to the grey border).
    """
    unknown = [o for o in ops if o not in OPS]
    if unknown or not ops:
        raise ValueError(f"strong_augment: unknown operations {unknown}; expected some of {OPS}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"strong_augment: square crops expected, got {tuple(x.shape[-2:])}")
    b, dev = x.shape[0], gen.device
    choice = torch.randint(len(ops), (n_ops, b), generator=gen, device=dev).to(x.device)
    sev = (torch.rand((n_ops, b), generator=gen, device=dev) * (magnitude / MAX_MAGNITUDE)).to(x.device)
    sign = (torch.randint(2, (n_ops, b), generator=gen, device=dev) * 2 - 1).float().to(x.device)
    x = x.float()
    theta = torch.eye(3, device=x.device).repeat(b, 1, 1)
    for r in range(n_ops):
        for k, name in enumerate(ops):
            sel = choice[r] == k
            if name in PHOTOMETRIC_OPS:
                if name != "identity":
                    x = torch.where(sel.view(-1, 1, 1, 1), PHOTOMETRIC_OPS[name](x, sev[r], sign[r]).clamp(0, 1), x)
            else:
                theta = torch.where(sel.view(-1, 1, 1), theta @ _affine(name, sev[r], sign[r]), theta)
    return warp_image(x, theta).clamp(0, 1), theta
