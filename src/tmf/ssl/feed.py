"""The pretraining data feed: the rows of the pretraining splits of tinyMiniFrance, sampled by seeded index batches.

The packed images (uint8 ``(N, S, S, 3)``, rows in manifest order; docs/file-formats.md), and for the multi-modal
methods the elevation (``dem`` float32, ``dem_valid`` uint8), come memory-mapped from
:func:`tmf.data.packed.open_packed`, which has checked them; the rows of ``pretrain.splits`` are chosen there. On a
CUDA device with room the selected rows are copied to the device once, as they are, so a training step only gathers
rows on the device (no per-sample decoding, no host round trip). On the CPU the rows are gathered from the memory
maps.

Batches are a pure function of (seed, step): epoch e uses the permutation ``randperm(n)`` of a generator seeded
with ``seed`` and ``e``, so a resumed run and every data-parallel rank see exactly the indices of an
uninterrupted single-process run, without sampler state to checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch

from tmf.data.packed import Packed


class PackedFeed:
    """Index batches over the rows of the packed arrays ``names`` (``images``; with ``dem`` and ``dem_valid`` for the
    multi-modal methods) that belong to the pretraining splits.

    ``device_cache``: ``"auto"`` copies the selected rows of every array to a CUDA device when together they take
    less than ``max_device_fraction`` of its free memory (the elevation then stays on the device with the images);
    ``True`` forces it, ``False`` keeps them on the host.
    """

    def __init__(self, packed: Packed, splits=("labeled", "unlabeled"), device: torch.device | str = "cpu",
                 seed: int = 0, device_cache="auto", max_device_fraction: float = 0.5, names=("images",)):
        try:
            self.rows = packed.rows(splits)
        except ValueError as e:
            raise ValueError(f"pretrain.splits: {e}") from None
        self.names = tuple(names)
        host = {n: packed.arrays[n] for n in self.names}
        self.device = torch.device(device)
        self.seed = int(seed)
        self.size = int(packed.size)
        self.n = int(self.rows.size)
        nbytes = sum(self.n * int(np.prod(a.shape[1:])) * a.dtype.itemsize for a in host.values())
        on_device = False
        if self.device.type == "cuda" and device_cache is not False:
            free, _ = torch.cuda.mem_get_info(self.device)
            on_device = device_cache is True or nbytes < max_device_fraction * free
        contiguous = bool(np.all(np.diff(self.rows) == 1))
        if on_device:  # a writable copy of the rows, once
            self._device = {n: torch.from_numpy(np.array(a[self.rows[0]:self.rows[-1] + 1] if contiguous
                                                         else a[self.rows])).to(self.device) for n, a in host.items()}
            self._local = None
        else:
            self._device = None
            self._local = host
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

    def gather_arrays(self, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows of every array at the given positions, on the training device (images uint8 (b, S, S, 3))."""
        if self.on_device:
            return {n: t.index_select(0, positions) for n, t in self._device.items()}
        idx = self.rows[positions.cpu().numpy()]
        order = np.argsort(idx, kind="stable")  # read the memory maps in increasing order
        out = {}
        for n, arr in self._local.items():
            rows = np.empty((idx.size, *arr.shape[1:]), dtype=arr.dtype)
            rows[order] = arr[idx[order]]
            t = torch.from_numpy(rows)
            out[n] = t.to(self.device, non_blocking=True) if self.device.type != "cpu" else t
        return out

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """uint8 images (b, S, S, 3) of the given positions, on the training device."""
        return self.gather_arrays(positions)["images"]

    def _share(self, step: int, batch_size: int, rank: int, world_size: int) -> torch.Tensor:
        if batch_size % world_size:
            raise ValueError(f"pretrain.batch_size {batch_size} is not divisible by the {world_size} processes")
        b = batch_size // world_size
        return self.batch_positions(step, batch_size)[rank * b:(rank + 1) * b]

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """This rank's share (batch_size // world_size rows) of the global batch at ``step``: its images."""
        return self.gather(self._share(step, batch_size, rank, world_size))

    def batch_arrays(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        """As :meth:`batch`, every array of the feed."""
        return self.gather_arrays(self._share(step, batch_size, rank, world_size))
