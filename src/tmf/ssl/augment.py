"""Remote-sensing augmentations as batched tensor operations (SPEC.md §4, "Remote-sensing practice").

Seeds 001 and 000 §4.2: for nadir aerial RGB the useful augmentations are random crops, flips, 90° rotations,
moderate colour jitter and blur; rotation *prediction* is meaningless because a nadir image has no "up".
Everything here works on a whole batch at once, on whatever device the batch lives (the packed uint8 set sits
on the GPU during GPU training, so nothing is decoded or augmented per sample on the host):

* random resized crop + horizontal/vertical flip + 90° rotation: one affine map per sample with one non-zero
  per row, i.e. separable bilinear resampling, view = P·Z·Qᵀ (Z the image or its transpose);
* colour jitter (brightness, contrast, saturation; torchvision's definitions, fixed order, per-sample factors),
  which composes into one per-sample affine colour map;
* Gaussian blur with a per-sample sigma, as y = K·x·Kᵀ (reflect padding folded into K);
* ImageNet normalisation.

:func:`make_views` (what training uses) fuses them: crop, flips, rotation and blur become two batched matrix
products per view, colour jitter and normalisation one affine colour map and a clamp; on CUDA in float16
(memory-bound passes, half the bytes), handing bf16 channels-last views to the model. The step-by-step
functions (:func:`augment_view`) are the readable reference the fused path is tested against.

All randomness is drawn from a passed ``torch.Generator`` (on the batch's device), so the CPU path is
deterministic. Random parameters are drawn for the *global* batch and then sliced (``offset``), so that a
data-parallel rank augments its share of the batch exactly as a single process would.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

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
    channel_gain: float = 0.0  # per-channel gain factors in [1 - g, 1 + g], part of the jitter (0: off, nothing drawn)
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


@functools.lru_cache(maxsize=64)
def _const(name: str, device: torch.device, dtype: torch.dtype, size: int = 0, radius: int = 0) -> torch.Tensor:
    """Constants made once per device and dtype: building them from Python lists on every call would copy host
    memory to the GPU each step, and such a copy waits for the GPU's queue (a hidden synchronisation)."""
    if name == "luma":
        return torch.tensor(_LUMA, dtype=dtype).to(device)
    if name == "eye3":
        return torch.eye(3, dtype=dtype).to(device)
    if name == "norm_scale":  # 1 / std
        return (1 / torch.tensor(IMAGENET_STD, dtype=torch.float64)).to(dtype).view(1, 3, 1, 1).to(device)
    if name == "norm_shift":  # −mean / std
        m, sd = torch.tensor(IMAGENET_MEAN, dtype=torch.float64), torch.tensor(IMAGENET_STD, dtype=torch.float64)
        return (-m / sd).to(dtype).view(1, 3, 1, 1).to(device)
    if name in ("norm_lo", "norm_hi"):  # the normalised images of 0 and 1, as (1, 1, 3, 1)
        m, sd = torch.tensor(IMAGENET_MEAN, dtype=torch.float64), torch.tensor(IMAGENET_STD, dtype=torch.float64)
        v = (0 - m) / sd if name == "norm_lo" else (1 - m) / sd
        return v.to(dtype).view(1, 1, 3, 1).to(device)
    if name == "shifts":  # (2r+1, S, S): row i of slice k has a one at reflect(i + k − r) (F.pad "reflect")
        t = torch.arange(-radius, radius + 1).view(-1, 1)
        j = torch.arange(size).view(1, -1) + t
        j = torch.where(j < 0, -j, j)
        j = torch.where(j > size - 1, 2 * (size - 1) - j, j)
        p = torch.zeros(2 * radius + 1, size, size, dtype=dtype)
        p.scatter_(2, j.unsqueeze(-1), 1.0)
        return p.to(device)
    raise KeyError(name)


def to_float(images_uint8: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, H, W, 3) uint8 (the packed layout) → (B, 3, H, W) floats in [0, 1]."""
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (B, H, W, 3), got {tuple(images_uint8.shape)} "
                         f"{images_uint8.dtype}")
    return images_uint8.permute(0, 3, 1, 2).to(dtype).div_(255.0)


def _interp_matrix(a: torch.Tensor, t: torch.Tensor, s_out: int, s_in: int) -> torch.Tensor:
    """(b, s_out, s_in) bilinear resampling along one axis: output pixel k (normalised centre
    u_k = (2k+1)/s_out − 1) reads the input at v = a·u_k + t, i.e. pixel p = ((v+1)·s_in − 1)/2 (align_corners
    False, clamped to the border), with the tent weights max(0, 1 − |p − j|)."""
    u = (2 * torch.arange(s_out, device=a.device, dtype=torch.float32) + 1) / s_out - 1
    v = a.view(-1, 1) * u.view(1, -1) + t.view(-1, 1)
    p = (((v + 1) * s_in - 1) / 2).clamp(0, s_in - 1)
    j = torch.arange(s_in, device=a.device, dtype=torch.float32)
    return (1 - (p.unsqueeze(-1) - j).abs()).clamp_min(0)


def _crop_matrices(b: int, size: int, s_in: int, scale: tuple[float, float], cfg: AugmentConfig,
                   g: torch.Generator, batch: int, offset: int, dev) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random resized crop (area fraction in ``scale``, aspect ratio in ``cfg.ratio``), flips and a multiple of
    90°, as separable resampling: view = P·Z·Qᵀ per channel, Z the image, transposed (``swap``) for odd
    multiples of 90°. Returns P (b, size, s_in), Q (b, size, s_in), swap (b,).

    In normalised coordinates (−1…1) the output point u maps to the input point M·u + t with
    M = diag(w, h)·R_k·diag(s_x, s_y) (flips s, rotation R_k by k·90°, the crop's half-extents w, h) and t the
    crop's centre; w = sqrt(s·r), h = sqrt(s/r) (fractions of the side) for area fraction s and ratio r, clamped to
    the image, the centre uniform such that the box stays inside. M has one non-zero per row, so each image axis
    is resampled independently: P acts on the rows, Q on the columns.
    """
    sl = slice(offset, offset + b)
    s = _uniform(batch, scale[0], scale[1], g, dev)[sl]
    logr = _uniform(batch, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), g, dev)[sl]
    ucx = torch.rand(batch, generator=g, device=dev)[sl]
    ucy = torch.rand(batch, generator=g, device=dev)[sl]
    fh = torch.rand(batch, generator=g, device=dev)[sl] < cfg.flip_p
    fv = torch.rand(batch, generator=g, device=dev)[sl] < cfg.flip_p
    if cfg.rot90:
        k = torch.randint(0, 4, (batch,), generator=g, device=dev)[sl]
    else:
        k = torch.zeros(b, dtype=torch.long, device=dev)
    r = torch.exp(logr)
    w = torch.sqrt(s * r).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(s / r).clamp(max=1.0)
    cx = (ucx * 2 - 1) * (1 - w)  # centre in −1…1 keeping the box inside
    cy = (ucy * 2 - 1) * (1 - h)
    cos = (k == 0).float() - (k == 2).float()  # rotation by k·90°
    sin = (k == 1).float() - (k == 3).float()
    sx = torch.where(fh, -1.0, 1.0)
    sy = torch.where(fv, -1.0, 1.0)
    # M = diag(w, h)·R·diag(sx, sy) = [[w·cos·sx, −w·sin·sy], [h·sin·sx, h·cos·sy]]
    m00, m01, m10, m11 = w * cos * sx, -w * sin * sy, h * sin * sx, h * cos * sy
    swap = k % 2 == 1
    # rows of the view follow u_y: input y (no swap, m11) or input x (swap, m01); columns likewise
    p = _interp_matrix(torch.where(swap, m01, m11), torch.where(swap, cx, cy), size, s_in)
    q = _interp_matrix(torch.where(swap, m10, m00), torch.where(swap, cy, cx), size, s_in)
    return p, q, swap


def crop_flip_rotate(x: torch.Tensor, size: int, scale: tuple[float, float], cfg: AugmentConfig,
                     g: torch.Generator, batch: int, offset: int) -> torch.Tensor:
    """Random resized crop + flips + 90° rotation of a float batch (b, C, S, S) → (b, C, size, size) (see
    :func:`_crop_matrices`; bilinear, border-clamped)."""
    b, c, hgt, wid = x.shape
    if hgt != wid:
        raise ValueError(f"crop_flip_rotate: square images expected, got {hgt}x{wid}")
    p, q, swap = _crop_matrices(b, size, wid, scale, cfg, g, batch, offset, x.device)
    return _geometry(x, p, q, swap)


_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def _jitter_factors(b: int, cfg: AugmentConfig, g: torch.Generator, batch: int, offset: int, dev):
    """Per-sample brightness, contrast, saturation factors (b,) and per-channel gains (b, 3) (1 where jitter is
    off). The gains are drawn only when ``cfg.channel_gain`` > 0, so that without them the random stream is the
    same as before they existed."""
    sl = slice(offset, offset + b)
    on = (torch.rand(batch, generator=g, device=dev)[sl] < cfg.jitter_p).float()
    fb = _uniform(batch, 1 - cfg.brightness, 1 + cfg.brightness, g, dev)[sl]
    fc = _uniform(batch, 1 - cfg.contrast, 1 + cfg.contrast, g, dev)[sl]
    fs = _uniform(batch, 1 - cfg.saturation, 1 + cfg.saturation, g, dev)[sl]
    if cfg.channel_gain > 0:
        fg = _uniform(3 * batch, 1 - cfg.channel_gain, 1 + cfg.channel_gain, g, dev).view(batch, 3)[sl]
        fg = 1 + on.view(b, 1) * (fg - 1)
    else:
        fg = torch.ones(b, 3, device=dev)
    return (*(1 + on * (f - 1) for f in (fb, fc, fs)), fg)


def _jitter_affine(fb, fc, fs, fg, m0):
    """The colour jitter as y = A·x + c per sample: A (b, 3, 3), c (b, 3) (see :func:`colour_jitter`)."""
    dev = fb.device
    w = _const("luma", dev, torch.float32)
    eye = _const("eye3", dev, torch.float32)
    b = fb.shape[0]
    sat = fs.view(b, 1, 1) * eye + (1 - fs).view(b, 1, 1) * w.view(1, 1, 3)  # rows: fs·e_i + (1 − fs)·wᵀ
    a = (fc * fb).view(b, 1, 1) * sat * fg.view(b, 3, 1)
    c = ((1 - fc) * fb * m0).view(b, 1) * fg
    return a, c


def colour_jitter(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, batch: int, offset: int) -> torch.Tensor:
    """Brightness, contrast, saturation with per-sample factors f ~ U(1−a, 1+a), applied with probability
    ``cfg.jitter_p``, in torchvision's order and definitions (brightness x·f_b; contrast: blend with the mean
    luma m; saturation: blend with the luma image; luma = 0.299 R + 0.587 G + 0.114 B), then, when
    ``cfg.channel_gain`` > 0, a gain per channel f_g ~ U(1−g, 1+g) (not torchvision's: a sensor's or a region's
    colour cast, docs/pretraining.md); clamped to [0, 1] once at the end (torchvision clamps after each step; the
    two agree whenever no intermediate value leaves [0, 1]).

    The steps compose into one per-sample affine colour map, applied in one pass:
    y = G·(f_c·f_b·S·x + (1 − f_c)·f_b·m₀), with S = f_s·I + (1 − f_s)·1·wᵀ (w the luma weights, S·1 = 1),
    G = diag(f_g) (the identity without gains) and m₀ the mean luma of x.
    """
    b, ch, hgt, wid = x.shape
    fb, fc, fs, fg = _jitter_factors(b, cfg, g, batch, offset, x.device)
    m0 = x.float().mean(dim=(2, 3)) @ _const("luma", x.device, torch.float32)
    a, c = _jitter_affine(fb, fc, fs, fg, m0)
    y = torch.baddbmm(c.to(x.dtype).unsqueeze(-1), a.to(x.dtype), x.reshape(b, ch, hgt * wid))
    return y.view(b, ch, hgt, wid).clamp_(0, 1)


def _blur_matrix(b: int, size: int, cfg: AugmentConfig, g: torch.Generator, batch: int, offset: int, dev):
    """(b, size, size) matrices K of the per-sample 1-D Gaussian kernels with reflect padding folded in
    (K = Σ_k w_k P_k, P_k the reflected shift by k − r); the identity for samples not blurred."""
    sl = slice(offset, offset + b)
    on = torch.rand(batch, generator=g, device=dev)[sl] < cfg.blur_p
    sigma = _uniform(batch, cfg.blur_sigma[0], cfg.blur_sigma[1], g, dev)[sl] * (size / 224.0)
    radius = max(1, min(int(math.ceil(3 * cfg.blur_sigma[1] * size / 224.0)), size - 1))
    t = torch.arange(-radius, radius + 1, device=dev, dtype=torch.float32)
    ker = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    ker = ker / ker.sum(dim=1, keepdim=True)
    ker = torch.where(on.view(-1, 1), ker, (t == 0).float().view(1, -1))  # (b, 2r+1)
    shifts = _const("shifts", dev, torch.float32, size, radius)  # (2r+1, S, S)
    return (ker @ shifts.view(2 * radius + 1, -1)).view(b, size, size)


def gaussian_blur(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, batch: int, offset: int) -> torch.Tensor:
    """Gaussian blur with probability ``cfg.blur_p`` and per-sample sigma ~ U(blur_sigma)·size/224, reflect
    padding (as ``F.pad(mode="reflect")``), radius ⌈3·σ_max⌉; samples not blurred are unchanged.

    Separable: y = K·x·Kᵀ per channel (:func:`_blur_matrix`). As matrix products the blur runs on a GPU's matrix
    units, where a depth-wise convolution with a different kernel per sample does not, and it folds into the
    crop's resampling matrices (:func:`make_views`).
    """
    b, c, hgt, wid = x.shape
    if hgt != wid:
        raise ValueError(f"gaussian_blur: square crops expected, got {hgt}x{wid}")
    k = _blur_matrix(b, wid, cfg, g, batch, offset, x.device).to(x.dtype).unsqueeze(1)
    return k @ x @ k.transpose(2, 3)


def normalise(x: torch.Tensor, out_dtype: torch.dtype | None = None,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """ImageNet normalisation (x − mean) / std, channel-wise, written once in ``out_dtype`` / ``memory_format``."""
    y = torch.addcmul(_const("norm_shift", x.device, x.dtype), x, _const("norm_scale", x.device, x.dtype))
    return y.to(dtype=out_dtype or x.dtype, memory_format=memory_format)


def augment_view(x: torch.Tensor, size: int, scale: tuple[float, float], cfg: AugmentConfig,
                 g: torch.Generator, batch: int | None = None, offset: int = 0, out_dtype: torch.dtype | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """One augmented, normalised view of a float batch ``x`` (b, 3, H, W) in [0, 1]: crop/flip/rotate to
    ``size``, colour jitter, blur, ImageNet normalisation. ``batch``/``offset``: the global batch this slice
    belongs to (random parameters are drawn for all ``batch`` samples and sliced at ``offset``)."""
    batch = x.shape[0] if batch is None else batch
    if offset < 0 or offset + x.shape[0] > batch:
        raise ValueError(f"slice [{offset}, {offset + x.shape[0]}) outside the global batch of {batch}")
    v = crop_flip_rotate(x, size, scale, cfg, g, batch, offset)
    v = colour_jitter(v, cfg, g, batch, offset)
    v = gaussian_blur(v, cfg, g, batch, offset)
    return normalise(v, out_dtype, memory_format)


def crop_size_for(spec_size_factor: float, crop_size: int) -> int:
    """Output side of a crop spec: round(size_factor · crop_size), at least 8 px."""
    return max(8, int(round(spec_size_factor * crop_size)))


def work_dtype(device: torch.device) -> torch.dtype:
    """Arithmetic of the augmentations: float16 on CUDA (half the bytes of these memory-bound passes; 11
    significant bits, more than the 8 of the uint8 source and of the bf16 the model then sees), float32 on the
    CPU (exact and deterministic)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def make_views(images_uint8: torch.Tensor, crop_specs, crop_size: int, cfg: AugmentConfig,
               g: torch.Generator, batch: int | None = None, offset: int = 0,
               memory_format: torch.memory_format = torch.contiguous_format,
               out_dtype: torch.dtype | None = None, work: torch.dtype | None = None) -> list[torch.Tensor]:
    """All views of a uint8 batch (b, S, S, 3) for a method's crop specs (global crops first; multi-crop
    methods add smaller local crops): a list of normalised tensors (b, 3, s, s) in ``out_dtype`` (default:
    the working dtype ``work``, itself by default :func:`work_dtype`) and ``memory_format``. ``batch``/``offset``: the global batch this
    slice belongs to.

    The same augmentation as :func:`augment_view` (the random numbers are drawn in the same order), fused for
    speed: crop, flips, rotation and blur are linear in the pixels and act on each axis separately, so they
    become two batched matrix products, view = (K·P)·Z·(K·Q)ᵀ; the colour jitter and the ImageNet normalisation
    are then one per-sample affine colour map and a clamp. Two details differ from the step-by-step order: the
    clamp to [0, 1] comes after the blur instead of before it, and the contrast's mean luma is that of the
    blurred crop (identical whenever jitter does not saturate; the mean barely moves under a blur).
    """
    return _views(images_uint8, None, crop_specs, crop_size, cfg, g, batch, offset, memory_format, out_dtype,
                  work)[0]


def make_paired_views(images_uint8: torch.Tensor, other: torch.Tensor, crop_specs, crop_size: int,
                      cfg: AugmentConfig, g: torch.Generator, batch: int | None = None, offset: int = 0,
                      memory_format: torch.memory_format = torch.contiguous_format,
                      out_dtype: torch.dtype | None = None, rgb: bool = True
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The views of :func:`make_views` (``rgb``; an empty list without) and, with the same geometry, the views of a
    co-registered float batch ``other`` (b, C, S, S) (the elevation channels): the same crop, flips and 90°
    rotation per sample and spec, pixel for pixel, without the optical steps (colour jitter, blur, ImageNet
    normalisation). The random numbers are those of :func:`make_views` (its RGB views are the same)."""
    return _views(images_uint8, other, crop_specs, crop_size, cfg, g, batch, offset, memory_format, out_dtype,
                  None, rgb)


def _geometry(x: torch.Tensor, p: torch.Tensor, q: torch.Tensor, swap: torch.Tensor) -> torch.Tensor:
    """view = P·Z·Qᵀ per channel, Z = x or its transpose where ``swap`` (:func:`_crop_matrices`)."""
    z = torch.where(swap.view(-1, 1, 1, 1), x.transpose(2, 3), x)
    return p.to(x.dtype).unsqueeze(1) @ z @ q.to(x.dtype).transpose(1, 2).unsqueeze(1)


def _views(images_uint8, other, crop_specs, crop_size, cfg, g, batch, offset, memory_format, out_dtype, work,
           rgb: bool = True) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[-1] != 3 \
            or images_uint8.shape[1] != images_uint8.shape[2]:
        raise ValueError(f"expected square uint8 images (B, S, S, 3), got {tuple(images_uint8.shape)} "
                         f"{images_uint8.dtype}")
    dev = images_uint8.device
    b, s_in = images_uint8.shape[0], images_uint8.shape[1]
    batch = b if batch is None else batch
    if offset < 0 or offset + b > batch:
        raise ValueError(f"slice [{offset}, {offset + b}) outside the global batch of {batch}")
    if other is not None and (other.ndim != 4 or other.shape[0] != b or other.shape[2:] != (s_in, s_in)):
        raise ValueError(f"paired views: expected a co-registered batch ({b}, C, {s_in}, {s_in}), got "
                         f"{tuple(other.shape)}")
    wd = work or work_dtype(dev)
    out_dtype = out_dtype or wd
    # once per batch: the images as (b, y, 4, x) in [0, 255] with their luma as a 4th channel (every spatial step is
    # linear, so the luma of a view is the view of the luma), channels inside each row so that both resampling
    # products below are plain batched matrix products
    if rgb:
        z = torch.empty((b, s_in, 4, s_in), dtype=wd, device=dev)
        z[:, :, :3].copy_(images_uint8.permute(0, 1, 3, 2))
        w = _LUMA
        torch.add(z[:, :, 0] * w[0], z[:, :, 1], alpha=w[1], out=z[:, :, 3])
        z[:, :, 3].add_(z[:, :, 2], alpha=w[2])
        zf = z.view(b, s_in * 4, s_in)
    inv_std = _const("norm_scale", dev, torch.float32).view(1, 3)
    shift = _const("norm_shift", dev, torch.float32).view(1, 3)
    lo, hi = _const("norm_lo", dev, wd), _const("norm_hi", dev, wd)
    views, others = [], []
    other_w = other.to(wd) if other is not None else None
    for spec in crop_specs:
        size = crop_size_for(spec.size_factor, crop_size)
        p, q, swap = _crop_matrices(b, size, s_in, tuple(spec.scale), cfg, g, batch, offset, dev)
        fb, fc, fs, fg = _jitter_factors(b, cfg, g, batch, offset, dev)
        k = _blur_matrix(b, size, cfg, g, batch, offset, dev)
        if other_w is not None:
            o2 = _geometry(other_w, p, q, swap).contiguous(memory_format=memory_format)
            others.append(o2 if out_dtype == wd else o2.to(out_dtype))
        if not rgb:
            continue
        p, q = k @ p, k @ q
        # a transposed view (odd multiple of 90°) is computed as (Q·X·Pᵀ)ᵀ: swap the factors, transpose at the end
        sw = swap.view(-1, 1, 1)
        left = torch.where(sw, q, p).div_(255.0).to(wd)  # 1/255: [0, 255] → [0, 1]
        right = torch.where(sw, p, q).to(wd)
        t = torch.bmm(zf, right.transpose(1, 2))  # columns: (b, y·4, size)
        o = torch.bmm(left, t.view(b, s_in, 4 * size)).view(b, size, 4, size)  # rows: (b, i, 4, j)
        lum = o[:, :, 3:4, :]
        m0 = lum.float().mean(dim=(1, 2, 3))  # mean luma of the view
        # jitter (colour_jitter's affine map) as y_c = f_g,c·(α·x_c + β·luma + γ), then the normalisation
        # (y − mean)/std
        alpha, beta = fc * fb * fs, fc * fb * (1 - fs)
        gamma = (1 - fc) * fb * m0
        gain = fg * inv_std  # (b, 3)
        a_c = (alpha.view(b, 1) * gain).to(wd).view(b, 1, 3, 1)
        b_c = (beta.view(b, 1) * gain).to(wd).view(b, 1, 3, 1)
        g_c = (gamma.view(b, 1) * gain + shift).to(wd).view(b, 1, 3, 1)
        y = torch.addcmul(g_c, lum, b_c)  # (b, i, 3, j)
        y.addcmul_(o[:, :, :3, :], a_c)
        y.clamp_(lo, hi)  # the normalised images of 0 and 1: the clamp to [0, 1]
        out = torch.empty((b, 3, size, size), dtype=wd, device=dev).contiguous(memory_format=memory_format)
        torch.where(swap.view(-1, 1, 1, 1), y.permute(0, 2, 3, 1), y.permute(0, 2, 1, 3), out=out)
        views.append(out if out_dtype == wd else out.to(out_dtype))
    return views, others
