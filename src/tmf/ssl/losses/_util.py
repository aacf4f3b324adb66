"""Shared helpers of the loss modules."""

from __future__ import annotations

import functools

import torch


def full(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (bf16 / fp16 under autocast) go to float32; float32 and float64 are kept, so the
    losses run in at least single precision and the tests can check them in double."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def check_pair(z_a: torch.Tensor, z_b: torch.Tensor, name: str) -> None:
    """Refuse anything but two (N, d) tensors of the same shape (the two views of a joint-embedding loss)."""
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(f"{name}: expected two (N, d) tensors of the same shape, got {tuple(z_a.shape)} and "
                         f"{tuple(z_b.shape)}")


def _first_tensor(args, kwargs) -> torch.Tensor | None:
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, list | tuple):
            for b in a:
                if isinstance(b, torch.Tensor):
                    return b
    return None


def no_autocast(fn):
    """Run a loss with autocast off on its tensors' device: under bf16 autocast every matmul of the loss (z zᵀ,
    costs divided by ε = 0.01...) would be rounded to 3 significant digits, which wrecks the softmaxes and plans.
    Together with :func:`full` the loss is computed in float32 whatever the caller's autocast state."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = _first_tensor(args, kwargs)
        if t is None or not torch.is_autocast_enabled(t.device.type):
            return fn(*args, **kwargs)
        with torch.autocast(device_type=t.device.type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper
