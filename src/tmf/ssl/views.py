"""Each pretraining step's augmented views of the feed's batch (of every modality for the multi-modal methods),
made one step ahead on CUDA."""

from __future__ import annotations

import torch

from tmf.ssl.augment import make_views, work_dtype


def view_dtype_for(device: torch.device) -> torch.dtype:
    """The dtype the augmentations hand to the model: their own working dtype (float16 on CUDA, where bf16
    autocast casts it at the first convolution; float32 on the CPU), so that no extra pass converts them."""
    return work_dtype(device)


class ViewSource:
    """Each step's views. On CUDA they are made one step ahead on a side stream, so that the feed and the
    augmentation of step s+1 (memory-bound) overlap the model's step s (mostly compute-bound) on the GPU; the
    random numbers are drawn in the same order as without prefetching. :meth:`generator_state` is the
    augmentation generator's state as if nothing had been prefetched: what a checkpoint stores."""

    def __init__(self, feed, specs, crop_size, aug, gen, batch, info, mf, dtype, dev, modal=None):
        self.feed, self.specs, self.crop_size, self.aug, self.gen = feed, specs, crop_size, aug, gen
        self.batch, self.info, self.mf, self.dtype, self.dev = batch, info, mf, dtype, dev
        self.modal = modal  # (modalities, elevation section, absolute reference) of a multi-modal method
        self.side = torch.cuda.Stream(dev) if dev.type == "cuda" else None
        self._next = None  # (step, views, event, generator state before they were drawn)

    def _make(self, step: int):
        """The step's views: a list (one per crop spec), or ``{modality: [views]}`` for a multi-modal method."""
        local = self.batch // self.info.world_size
        kw = dict(batch=self.batch, offset=self.info.rank * local, memory_format=self.mf, out_dtype=self.dtype)
        if self.modal is not None:
            from tmf.ssl.multimodal import modal_views

            modalities, elevation, reference = self.modal
            arrays = self.feed.batch_arrays(step, self.batch, self.info.rank, self.info.world_size)
            return modal_views(arrays, modalities, self.specs, self.crop_size, self.aug, self.gen, elevation,
                               reference, **kw)
        imgs = self.feed.batch(step, self.batch, self.info.rank, self.info.world_size)
        return make_views(imgs, self.specs, self.crop_size, self.aug, self.gen, **kw)

    def _produce(self, step: int):
        state = self.gen.get_state()
        with torch.cuda.stream(self.side):
            views = self._make(step)
            ev = torch.cuda.Event()
            ev.record(self.side)
        return step, views, ev, state

    def views(self, step: int, total: int):
        if self.side is None:
            return self._make(step)
        nxt = self._next if self._next is not None and self._next[0] == step else self._produce(step)
        _, views, ev, _ = nxt
        cur = torch.cuda.current_stream(self.dev)
        cur.wait_event(ev)
        for v in _tensors(views):
            v.record_stream(cur)  # made on the side stream, used on this one
        self._next = self._produce(step + 1) if step + 1 < total else None
        return views

    def generator_state(self) -> torch.Tensor:
        return self._next[3] if self._next is not None else self.gen.get_state()


def _tensors(views) -> list[torch.Tensor]:
    return [v for vs in views.values() for v in vs] if isinstance(views, dict) else list(views)
