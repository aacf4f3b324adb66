"""Remote-sensing augmentations as batched tensor operations (SPEC.md §4, "Remote-sensing practice").

Seeds 001 and 000 §4.2: for nadir aerial RGB the useful augmentations are random crops, flips, 90° rotations,
moderate colour jitter and blur; rotation *prediction* is meaningless because a nadir image has no "up".
Everything here works on a whole batch at once, on whatever device the batch lives (the packed uint8 set sits
on the GPU during GPU training, so nothing is decoded or augmented per sample on the host):

* random resized crop + horizontal/vertical flip + 90° rotation are one affine map per sample, applied with a
  single ``torch.nn.functional.grid_sample`` (bilinear) call that also resizes to the output size;
* colour jitter (brightness, contrast, saturation; torchvision's definitions, fixed order, per-sample factors);
* Gaussian blur with a per-sample sigma, as two depth-wise (grouped) 1-D convolutions;
* ImageNet normalisation.

All randomness is drawn from a passed ``torch.Generator`` (on the batch's device), so the CPU path is
deterministic. Random parameters are drawn for the *global* batch and then sliced (``offset``), so that a
data-parallel rank augments its share of the batch exactly as a single process would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tmf.models.resnet import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of the augmentations (defaults: SimCLR/BYOL values, with hue and grayscale left out and
    colour jitter halved as "moderate" for aerial RGB, seed 001)."""

    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range of the random resized crop
    flip_p: float = 0.5  # probability of each flip (horizontal, vertical)
    rot90: bool = True  # random multiple of 90° (uniform over 0, 90, 180, 270)
    jitter_p: float = 0.8  # probability of colour jitter
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    blur_p: float = 0.5  # probability of Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # sigma range, in pixels of a 224-px crop (scaled with the size)

    @classmethod
    def from_dict(cls, d: dict | None) -> AugmentConfig:
        d = dict(d or {})
        for k in ("ratio", "blur_sigma"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"pretrain.augment: unknown keys {sorted(unknown)}")
        return cls(**d)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 (the packed layout) → (B, 3, H, W) float32 in [0, 1]."""
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (B, H, W, 3), got {tuple(images_uint8.shape)} "
                         f"{images_uint8.dtype}")
    return images_uint8.permute(0, 3, 1, 2).float().div_(255.0)


def crop_flip_rotate(x: torch.Tensor, size: int, scale: tuple[float, float], cfg: AugmentConfig,
                     g: torch.Generator, batch: int, offset: int) -> torch.Tensor:
    """Random resized crop (area fraction in ``scale``, aspect ratio in ``cfg.ratio``), random flips and a random
    multiple of 90°, as one affine ``grid_sample`` per sample; output (b, C, size, size).

    In normalised coordinates (−1…1) the output pixel u is mapped to the input point
    ``A·R_k·F·u + t`` with F the flips, R_k the rotation by k·90°, A = diag(w, h) the crop's half-extent and
    t its centre; w = sqrt(s·r), h = sqrt(s/r) (fractions of the side) for area fraction s and ratio r, clamped
    to the image, the centre drawn uniformly so that the box stays inside the image.
    """
    dev = x.device
    b = x.shape[0]
    sl = slice(offset, offset + b)
    s = _uniform(batch, scale[0], scale[1], g, dev)[sl]
    logr = _uniform(batch, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), g, dev)[sl]
    ucx = torch.rand(batch, generator=g, device=dev)[sl]
    ucy = torch.rand(batch, generator=g, device=dev)[sl]
    fh = torch.rand(batch, generator=g, device=dev)[sl] < cfg.flip_p
    fv = torch.rand(batch, generator=g, device=dev)[sl] < cfg.flip_p
    k = torch.randint(0, 4, (batch,), generator=g, device=dev)[sl] if cfg.rot90 else torch.zeros(b, device=dev)
    r = torch.exp(logr)
    w = torch.sqrt(s * r).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(s / r).clamp(max=1.0)
    cx = (ucx * 2 - 1) * (1 - w)  # centre in −1…1 keeping the box inside
    cy = (ucy * 2 - 1) * (1 - h)
    # rotation by k·90°: cos, sin ∈ {1,0,−1,0}, {0,1,0,−1}
    ang = k.float() * (math.pi / 2)
    cos, sin = torch.cos(ang).round(), torch.sin(ang).round()
    sx = torch.where(fh, -1.0, 1.0)
    sy = torch.where(fv, -1.0, 1.0)
    # M = diag(w, h) · R · diag(sx, sy)
    theta = torch.stack([
        torch.stack([w * cos * sx, -w * sin * sy, cx], dim=1),
        torch.stack([h * sin * sx, h * cos * sy, cy], dim=1),
    ], dim=1).to(x.dtype)
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def colour_jitter(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, batch: int, offset: int) -> torch.Tensor:
    """Brightness, contrast, saturation with per-sample factors f ~ U(1−a, 1+a), applied with probability
    ``cfg.jitter_p`` (torchvision's definitions: brightness x·f; contrast blend with the mean luma;
    saturation blend with the luma image; clamped to [0, 1] after each)."""
    dev = x.device
    b = x.shape[0]
    sl = slice(offset, offset + b)
    on = (torch.rand(batch, generator=g, device=dev)[sl] < cfg.jitter_p).to(x.dtype)
    fb = _uniform(batch, 1 - cfg.brightness, 1 + cfg.brightness, g, dev)[sl]
    fc = _uniform(batch, 1 - cfg.contrast, 1 + cfg.contrast, g, dev)[sl]
    fs = _uniform(batch, 1 - cfg.saturation, 1 + cfg.saturation, g, dev)[sl]
    fb, fc, fs = ((1 + on * (f - 1)).to(x.dtype).view(b, 1, 1, 1) for f in (fb, fc, fs))
    x = (x * fb).clamp_(0, 1)
    m = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (fc * x + (1 - fc) * m).clamp_(0, 1)
    x = (fs * x + (1 - fs) * _gray(x)).clamp_(0, 1)
    return x


def gaussian_blur(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, batch: int, offset: int) -> torch.Tensor:
    """Gaussian blur with probability ``cfg.blur_p`` and per-sample sigma ~ U(blur_sigma)·size/224, as two
    grouped 1-D convolutions (reflect padding); samples not blurred get a delta kernel (exact identity)."""
    dev = x.device
    b, c, hgt, wid = x.shape
    sl = slice(offset, offset + b)
    on = torch.rand(batch, generator=g, device=dev)[sl] < cfg.blur_p
    sigma = _uniform(batch, cfg.blur_sigma[0], cfg.blur_sigma[1], g, dev)[sl] * (wid / 224.0)
    radius = max(1, min(int(math.ceil(3 * cfg.blur_sigma[1] * wid / 224.0)), (min(hgt, wid) - 1) // 2))
    t = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
    ker = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1).to(x.dtype) ** 2))
    ker = ker / ker.sum(dim=1, keepdim=True)
    delta = (t == 0).to(x.dtype).view(1, -1).expand(b, -1)
    ker = torch.where(on.view(-1, 1), ker, delta)  # (b, K)
    ker = ker.repeat_interleave(c, dim=0)  # (b·c, K), one kernel per channel of each sample
    y = x.reshape(1, b * c, hgt, wid)
    y = F.pad(y, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, ker.view(b * c, 1, 1, -1), groups=b * c)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, ker.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, hgt, wid)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation (x − mean) / std, channel-wise."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def augment_view(x: torch.Tensor, size: int, scale: tuple[float, float], cfg: AugmentConfig,
                 g: torch.Generator, batch: int | None = None, offset: int = 0) -> torch.Tensor:
    """One augmented, normalised view of a float batch ``x`` (b, 3, H, W) in [0, 1]: crop/flip/rotate to
    ``size``, colour jitter, blur, ImageNet normalisation. ``batch``/``offset``: the global batch this slice
    belongs to (random parameters are drawn for all ``batch`` samples and sliced at ``offset``)."""
    batch = x.shape[0] if batch is None else batch
    if offset < 0 or offset + x.shape[0] > batch:
        raise ValueError(f"slice [{offset}, {offset + x.shape[0]}) outside the global batch of {batch}")
    v = crop_flip_rotate(x, size, scale, cfg, g, batch, offset)
    v = colour_jitter(v, cfg, g, batch, offset)
    v = gaussian_blur(v, cfg, g, batch, offset)
    return normalise(v)


def crop_size_for(spec_size_factor: float, crop_size: int) -> int:
    """Output side of a crop spec: round(size_factor · crop_size), at least 8 px."""
    return max(8, int(round(spec_size_factor * crop_size)))


def make_views(images_uint8: torch.Tensor, crop_specs, crop_size: int, cfg: AugmentConfig,
               g: torch.Generator, batch: int | None = None, offset: int = 0,
               memory_format: torch.memory_format = torch.contiguous_format) -> list[torch.Tensor]:
    """All views of a uint8 batch (b, H, W, 3) for a method's crop specs (global crops first; multi-crop
    methods add smaller local crops): a list of normalised float tensors (b, 3, s, s)."""
    x = to_float(images_uint8)
    views = []
    for spec in crop_specs:
        size = crop_size_for(spec.size_factor, crop_size)
        v = augment_view(x, size, tuple(spec.scale), cfg, g, batch, offset)
        views.append(v.contiguous(memory_format=memory_format))
    return views
