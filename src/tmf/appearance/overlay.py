"""Fig. 2.18: place an external data set (the thesis used Vaihingen) in the appearance space of tinyMiniFrance.

Seed 004 §2.6: "images from the Vaihingen dataset were downsampled to the tinyMiniFrance resolution (from 9 cm/px
to 50 cm/px) before being encoded by the CNN", then t-SNE ran on both sets together. We resample every GeoTIFF
of a folder to 0.5 m/px (rasterio, bilinear), cut it into non-overlapping windows of the sub-tiles' ground size
(the manifest's ``height`` in 0.5 m pixels; the whole image when smaller), resize each to the packed size, encode
with the same encoder and embed jointly. The joint embedding is only for this figure; the scores use the
sub-tiles' own embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TARGET_RES_M = 0.5


def read_resampled(path: str | Path, res_m: float = TARGET_RES_M) -> np.ndarray:
    """First three bands of a GeoTIFF resampled to ``res_m`` m/px, as uint8 ``(H, W, 3)``."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        if src.crs is None or not src.crs.is_projected:
            raise ValueError(f"{path}: needs a projected CRS in metres to resample to {res_m} m/px")
        if src.count < 3:
            raise ValueError(f"{path}: {src.count} band(s); need 3 (RGB or IRRG)")
        scale = abs(src.res[0]) / res_m
        h, w = max(1, round(src.height * scale)), max(1, round(src.width * scale))
        data = src.read([1, 2, 3], out_shape=(3, h, w), resampling=Resampling.bilinear)
    if data.dtype != np.uint8:  # e.g. 16-bit: stretch to 8 bits per image
        lo, hi = np.percentile(data, [0.5, 99.5])
        data = np.clip((data.astype(np.float64) - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    return np.moveaxis(data, 0, -1)


def cut_windows(image: np.ndarray, window: int, size: int) -> np.ndarray:
    """Non-overlapping ``window``-px crops of ``image`` (the whole image if smaller), each resized to ``size``."""
    import torch

    h, w = image.shape[:2]
    crops = []
    if h < window or w < window:
        crops.append(image)
    else:
        for r in range(0, h - window + 1, window):
            for c in range(0, w - window + 1, window):
                crops.append(image[r : r + window, c : c + window])
    out = []
    for crop in crops:
        t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
        out.append(t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
    return np.stack(out)


def overlay_embedding(model, features: np.ndarray, folder: str | Path, manifest, packed_size: int, cfg: dict,
                      seed: int, device="cpu") -> dict[str, np.ndarray]:
    """Encode the folder's GeoTIFFs and embed them with the sub-tiles' ``features`` in one t-SNE.

    Returns ``embedding`` (N, 2) of the sub-tiles, ``overlay`` (M, 2) of the external crops, ``files`` (M,)."""
    from tmf.appearance.embedding import tsne_embed
    from tmf.appearance.features import encode_images

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"appearance.overlay_dir: folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
    if not files:
        raise ValueError(f"appearance.overlay_dir: no .tif/.tiff file under {folder}")
    window = int(np.median(manifest["height"])) if "height" in manifest.columns else packed_size
    crops, names = [], []
    for f in files:
        c = cut_windows(read_resampled(f), window, packed_size)
        crops.append(c)
        names += [f.name] * len(c)
    images = np.concatenate(crops)
    ext = encode_images(model, images, cfg["feature_layer"], cfg["batch_size"], cfg["input_size"], device)
    joint = tsne_embed(np.concatenate([features, ext]), seed, **cfg["tsne"])
    n = len(features)
    return {"embedding": joint[:n], "overlay": joint[n:], "files": np.array(names, dtype=str)}
