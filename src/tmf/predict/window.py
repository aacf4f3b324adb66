"""Sliding-window prediction of one tile: a regular grid of windows, their logits blended by a raised-cosine
cross-fade, accumulated one strip of window rows at a time so that memory is bounded by the window, not the tile.

Windows (per axis, :func:`axis_windows`): a tile side no longer than ``window`` is one window, its length rounded
up to a multiple of 32 (the U-Net's total stride); a longer side gets windows of ``window`` px every
``window - overlap`` px from 0, the last one reaching past the border. Border windows (and a tile smaller than
its window) are padded by reflection; the padded pixels are predicted and dropped.

Blending (:func:`ramp`): each window's logits are weighted by ``w(y)·w(x)``, with ``w`` rising over the first
``overlap`` px as ``sin²(π (t + ½) / (2·overlap))``, 1 inside, falling likewise over the last ``overlap`` px (a
Tukey window). Two neighbours' ramps sum to exactly 1 (``sin²a + sin²(π/2 − a) = 1``), so across a seam the
prediction fades from one window into the next instead of jumping where one stops. A pixel's class is
``argmax_c Σ_k w_k(p) z_{k,c}(p)``; dividing by ``Σ_k w_k(p) > 0`` (the weighted mean) would change no argmax,
so it is not done. With ``overlap = 0`` windows tile the raster edge to edge.

Memory (:func:`predict_tile`): windows are visited row by row. The accumulator holds one strip, ``window`` rows
× the tile's width × classes floats; once a window row is added, the rows no later window reaches
(``window - overlap`` of them) are final: they are turned into class ids and handed to ``write_rows``, and the
``overlap`` rows the next window row also covers move up. The image is read one strip at a time as well. For a
10,000 px tile, 512 px windows and 14 classes the strip is 72 M floats (287 MB), plus one batch of logits
(batch × 14 × 512²), where a whole-tile accumulator would be 1.4 G floats; ``peak_floats`` counts what was held
(strip + blend weights + the largest logits batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

ALIGN = 32  # the U-Net's total stride: window sides are multiples of it


@dataclass(frozen=True)
class Axis:
    """The windows along one side of a tile: their length and start offsets (px)."""

    size: int
    starts: tuple[int, ...]
    overlap: int

    @property
    def stride(self) -> int:
        return self.size - self.overlap


def axis_windows(length: int, window: int, overlap: int) -> Axis:
    """Windows covering ``length`` px (module docstring). ``window``: a multiple of 32; ``0 <= overlap <= window/2``."""
    if length < 1:
        raise ValueError(f"a tile side of {length} px has nothing to predict")
    if window < ALIGN or window % ALIGN:
        raise ValueError(f"predict.window = {window}: must be a positive multiple of {ALIGN} px")
    if not 0 <= overlap <= window // 2:
        raise ValueError(f"predict.overlap = {overlap}: must lie in [0, predict.window / 2 = {window // 2}] px")
    if length <= window:
        return Axis(-(-length // ALIGN) * ALIGN, (0,), 0)
    stride = window - overlap
    n = -(-(length - window) // stride) + 1
    return Axis(window, tuple(k * stride for k in range(n)), overlap)


def ramp(size: int, overlap: int) -> np.ndarray:
    """Blend weights along one window side (float32, all > 0): raised-cosine ramps over ``overlap`` px."""
    w = np.ones(size, dtype=np.float64)
    if overlap:
        r = np.sin(np.pi * (np.arange(overlap) + 0.5) / (2 * overlap)) ** 2
        w[:overlap] = r
        w[size - overlap:] = r[::-1]
    return w.astype(np.float32)


def _pad(strip: np.ndarray, h: int, w: int) -> np.ndarray:
    """(bands, h', w') → (bands, h, w) by reflection at the bottom and right (a window reaching past the tile)."""
    ph, pw = h - strip.shape[1], w - strip.shape[2]
    if ph == 0 and pw == 0:
        return strip
    return np.pad(strip, ((0, 0), (0, ph), (0, pw)), mode="reflect")


@dataclass
class TileStats:
    """What predicting one tile took."""

    windows: int = 0
    batches: int = 0
    peak_floats: int = 0
    seconds: float = 0.0


ReadRows = Callable[[int, int], np.ndarray]  # (row0, row1) -> uint8 (3, row1 - row0, width)
WriteRows = Callable[[int, np.ndarray], None]  # (row0, class ids uint8 (rows, width))
PredictFn = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, 3, h, w) on device -> logits (B, C, h, w)


@torch.inference_mode()
def predict_tile(read_rows: ReadRows, write_rows: WriteRows, height: int, width: int, predict: PredictFn,
                 class_ids: tuple[int, ...], *, window: int, overlap: int, batch: int,
                 device: torch.device) -> TileStats:
    """Predict a ``height × width`` tile window by window (module docstring) and hand its class ids (the
    MiniFrance id ``class_ids[c]`` of the winning channel ``c``) to ``write_rows`` in row order, each row once."""
    if batch < 1:
        raise ValueError(f"predict.batch = {batch}: must be at least 1")
    t0 = time.perf_counter()
    ay, ax = axis_windows(height, window, overlap), axis_windows(width, window, overlap)
    wh, ww = ay.size, ax.size
    weight = torch.from_numpy(np.outer(ramp(wh, ay.overlap), ramp(ww, ax.overlap))).to(device)
    lut = torch.as_tensor(class_ids, dtype=torch.uint8, device=device)
    n_classes = len(class_ids)
    acc = torch.zeros((n_classes, wh, width), dtype=torch.float32, device=device)
    stats = TileStats(peak_floats=acc.numel() + weight.numel())
    for i, y0 in enumerate(ay.starts):
        vh = min(wh, height - y0)  # rows of this window row inside the tile
        strip = read_rows(y0, y0 + vh)
        if strip.shape[1:] != (vh, width):
            raise ValueError(f"read_rows({y0}, {y0 + vh}) gave {strip.shape}, expected (bands, {vh}, {width})")
        spans = [(x0, min(ww, width - x0)) for x0 in ax.starts]
        for b in range(0, len(spans), batch):
            chunk = spans[b:b + batch]
            x = np.stack([_pad(strip[:, :, x0:x0 + vw], wh, ww) for x0, vw in chunk])
            logits = predict(torch.from_numpy(x).to(device))
            if logits.shape != (len(chunk), n_classes, wh, ww):
                raise ValueError(f"the model gave logits {tuple(logits.shape)} for windows {tuple(x.shape)}; "
                                 f"expected ({len(chunk)}, {n_classes}, {wh}, {ww})")
            stats.peak_floats = max(stats.peak_floats, acc.numel() + weight.numel() + logits.numel())
            stats.batches += 1
            stats.windows += len(chunk)
            for (x0, vw), z in zip(chunk, logits.float(), strict=True):  # in place: no temporary
                acc[:, :vh, x0:x0 + vw].addcmul_(z[:, :vh, :vw], weight[:vh, :vw])
        last = i + 1 == len(ay.starts)
        done = vh if last else ay.stride  # rows that no later window reaches
        write_rows(y0, lut[acc[:, :done].argmax(0)].cpu().numpy())
        if not last:  # the overlap rows move up (overlap <= stride: the two ranges do not overlap)
            keep = wh - done
            acc[:, :keep].copy_(acc[:, done:wh])
            acc[:, keep:].zero_()
    stats.seconds = time.perf_counter() - t0
    return stats
