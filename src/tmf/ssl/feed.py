"""The pretraining data feed: the rows of the pretraining splits of tinyMiniFrance, sampled by seeded index batches.

The packed images (uint8 ``(N, S, S, 3)``, rows in manifest order; docs/file-formats.md) come memory-mapped from
:func:`tmf.data.packed.open_packed`, which has checked them; the rows of ``pretrain.splits`` are chosen there. On a
CUDA device with room the selected rows are copied to the device once, as uint8, so a training step only gathers
rows on the device (no per-sample decoding, no host round trip). On the CPU the rows are gathered from the memory
map.

Batches are a pure function of (seed, step): epoch e uses the permutation ``randperm(n)`` of a generator seeded
with ``seed`` and ``e``, so a resumed run and every data-parallel rank see exactly the indices of an
uninterrupted single-process run, without sampler state to checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch

from tmf.data.packed import Packed


class PackedFeed:
    """Index batches over the rows of the packed image array that belong to the pretraining splits.

    ``device_cache``: ``"auto"`` copies the selected rows to a CUDA device when they take less than
    ``max_device_fraction`` of its free memory; ``True`` forces it, ``False`` keeps them on the host.
    """

    def __init__(self, packed: Packed, splits=("labeled", "unlabeled"), device: torch.device | str = "cpu",
                 seed: int = 0, device_cache="auto", max_device_fraction: float = 0.5):
        arr = packed.images
        try:
            self.rows = packed.rows(splits)
        except ValueError as e:
            raise ValueError(f"pretrain.splits: {e}") from None
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
