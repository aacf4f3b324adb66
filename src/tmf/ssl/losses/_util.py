"""Shared helpers of the loss modules."""

from __future__ import annotations

import torch


def full(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (bf16 / fp16 under autocast) go to float32; float32 and float64 are kept, so the
    losses run in at least single precision and the tests can check them in double."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
