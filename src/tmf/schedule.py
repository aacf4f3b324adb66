"""The learning-rate schedule of every training loop (pretraining, fine-tuning, linear probe): linear warm-up,
then cosine decay (Loshchilov & Hutter 2017, SGDR without restarts).

A pure function of the step, so resuming needs only the step.
"""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int, final_lr_ratio: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up ``lr·(step+1)/warmup`` for step < warmup, then
    cosine ``final + (lr − final)·(1 + cos(π·t))/2`` with t = (step − warmup)/(total − warmup), clipped at 1, and
    ``final = final_lr_ratio·lr``. With ``base_lr = 1`` it is the factor applied to each group's own rate."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    final = final_lr_ratio * base_lr
    return final + (base_lr - final) * 0.5 * (1 + math.cos(math.pi * t))
