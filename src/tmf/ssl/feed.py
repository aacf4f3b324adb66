"""The pretraining data feed: the packed tinyMiniFrance array, read once, sampled by seeded index batches.

``data/tinyminifrance/packed/images.npy`` (uint8 ``(N, S, S, 3)``, rows in manifest order; docs/file-formats.md)
is memory-mapped; the rows of the pretraining splits are chosen from ``manifest.csv``. On a CUDA device with
room the selected rows are copied to the device once, as uint8, so a training step only gathers rows on the
device (no per-sample decoding, no host round trip). On the CPU the rows are gathered from the memory map.

Batches are a pure function of (seed, step): epoch e uses the permutation ``randperm(n)`` of a generator seeded
with ``seed`` and ``e``, so a resumed run and every data-parallel rank see exactly the indices of an
uninterrupted single-process run, without sampler state to checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

PRETRAIN_SPLITS = ("labeled", "unlabeled", "test")


def select_rows(manifest, splits) -> np.ndarray:
    """Row numbers (manifest order = packed order) of the sub-tiles in ``splits``."""
    import pandas as pd

    if isinstance(manifest, str | Path):
        path = Path(manifest)
        if not path.exists():
            raise FileNotFoundError(f"manifest not found: {path}")
        manifest = pd.read_csv(path)
    if "split" not in manifest.columns:
        raise ValueError("manifest has no 'split' column")
    bad = sorted(set(splits) - set(PRETRAIN_SPLITS))
    if bad:
        raise ValueError(f"pretrain.splits: unknown split(s) {bad}; expected a subset of {list(PRETRAIN_SPLITS)}")
    rows = np.flatnonzero(manifest["split"].isin(list(splits)).to_numpy())
    if rows.size == 0:
        raise ValueError(f"pretrain.splits {list(splits)}: no sub-tile of the manifest is in these splits")
    return rows


class PackedFeed:
    """Index batches over the rows of the packed image array that belong to the pretraining splits.

    ``device_cache``: ``"auto"`` copies the selected rows to a CUDA device when they take less than
    ``max_device_fraction`` of its free memory; ``True`` forces it, ``False`` keeps them on the host.
    """

    def __init__(self, packed_dir: str | Path, manifest, splits=("labeled", "unlabeled"),
                 device: torch.device | str = "cpu", seed: int = 0, device_cache="auto",
                 max_device_fraction: float = 0.5):
        path = Path(packed_dir) / "images.npy"
        if not path.exists():
            raise FileNotFoundError(f"packed images not found: {path}")
        arr = np.load(path, mmap_mode="r")
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[1] != arr.shape[2]:
            raise ValueError(f"{path}: expected uint8 (N, S, S, 3), got {arr.dtype} {arr.shape}")
        self.rows = select_rows(manifest, splits)
        if self.rows.max() >= arr.shape[0]:
            raise ValueError(f"{path}: {arr.shape[0]} rows, but the manifest selects row {self.rows.max()}")
        self.device = torch.device(device)
        self.seed = int(seed)
        self.size = int(arr.shape[1])
        self.n = int(self.rows.size)
        nbytes = self.n * self.size * self.size * 3
        on_device = False
        if self.device.type == "cuda" and device_cache is not False:
            free, _ = torch.cuda.mem_get_info(self.device)
            on_device = device_cache is True or nbytes < max_device_fraction * free
        contiguous = bool(np.all(np.diff(self.rows) == 1))
        if on_device:
            host = np.array(arr[self.rows[0]:self.rows[-1] + 1] if contiguous else arr[self.rows])  # a writable copy
            self.images = torch.from_numpy(host).to(self.device)
            self._local = None
        else:
            self.images = None
            self._local = arr
        self.on_device = on_device
        self._perm_epoch = -1
        self._perm: torch.Tensor | None = None

    # -- sampling ---------------------------------------------------------------------------------------
    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, self.n // batch_size)

    def _epoch_order(self, epoch: int, length: int) -> torch.Tensor:
        """Positions 0…n−1 in a seeded random order, repeated (fresh permutations) up to ``length``."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        parts, total = [], 0
        while total < length:
            parts.append(torch.randperm(self.n, generator=g))
            total += self.n
        return torch.cat(parts)[:length]

    def batch_positions(self, step: int, batch_size: int) -> torch.Tensor:
        """Positions (into the selected rows) of the global batch at ``step``: epoch ``step // spe`` draws
        without replacement (with fresh permutations concatenated when the set is smaller than a batch)."""
        spe = self.steps_per_epoch(batch_size)
        epoch, k = divmod(step, spe)
        if epoch != self._perm_epoch:
            order = self._epoch_order(epoch, spe * batch_size)
            if self.on_device:  # from pinned memory the copy is asynchronous (no wait for the GPU's queue)
                self._pinned = order.pin_memory()
                order = self._pinned.to(self.device, non_blocking=True)
            self._perm = order
            self._perm_epoch = epoch
        return self._perm[k * batch_size:(k + 1) * batch_size]

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """uint8 images (b, S, S, 3) of the given positions, on the training device."""
        if self.on_device:
            return self.images.index_select(0, positions)
        idx = self.rows[positions.cpu().numpy()]
        order = np.argsort(idx, kind="stable")  # read the memory map in increasing order
        out = np.empty((idx.size, self.size, self.size, 3), dtype=np.uint8)
        out[order] = self._local[idx[order]]
        t = torch.from_numpy(out)
        return t.to(self.device, non_blocking=True) if self.device.type != "cpu" else t

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """This rank's share (batch_size // world_size rows) of the global batch at ``step``."""
        if batch_size % world_size:
            raise ValueError(f"pretrain.batch_size {batch_size} is not divisible by the {world_size} processes")
        b = batch_size // world_size
        pos = self.batch_positions(step, batch_size)[rank * b:(rank + 1) * b]
        return self.gather(pos)
