"""Data-parallel pretraining helpers (issue #8 item 3): process group from torchrun's environment, a
differentiable all-gather for global-batch losses, and batch-norm synchronised over the processes.

The global batch is fixed: each of the W processes gets batch/W images. For the loss over the global batch to
equal the single-process loss, embeddings are all-gathered with a differentiable gather (:func:`gather`):
forward concatenates every rank's rows; backward sums the incoming gradients over ranks (each rank computes the
same global loss) and returns this rank's rows. DDP then averages parameter gradients over the W ranks, which
gives exactly the single-process gradient: (1/W)·Σ_r W·∂L/∂z_r·∂z_r/∂θ = Σ_r ∂L/∂z_r·∂z_r/∂θ.

Batch-norm statistics are made global with torch's ``SyncBatchNorm`` on CUDA; torch's version refuses CPU
tensors, so on the CPU (gloo) :class:`CPUSyncBatchNorm` gathers the per-rank counts, means and centred sums of
squares instead (differentiably, as the embeddings; the backward sums over ranks as above). Methods that
compute contrastive losses call :func:`gather` on their embeddings (a no-op in a single process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """RANK / WORLD_SIZE / LOCAL_RANK as set by ``torchrun`` (a single process when absent)."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init(info: DistInfo, device: torch.device) -> None:
    """Start the process group (nccl on CUDA, gloo on the CPU) unless it already runs."""
    if info.is_distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=info.rank,
                                world_size=info.world_size)


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherCat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ws, rank = dist.get_world_size(), dist.get_rank()
        x = x.contiguous()
        out = [torch.empty_like(x) for _ in range(ws)]
        dist.all_gather(out, x)
        ctx.rank, ctx.rows = rank, x.shape[0]
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (rows of this rank) over all ranks in rank order, differentiably; identity in a
    single process. Every rank must pass the same number of rows."""
    if not is_active():
        return x
    return _GatherCat.apply(x)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm (any of 1-d, 2-d, 3-d inputs, channels on dim 1) whose training statistics are those of the
    global batch: per-rank count, mean and centred sum of squares gathered from the ranks, differentiably. In a
    single process, or in eval mode, it is plain batch norm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-d input (N, C, ...), got {x.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and is_active()):
            return super().forward(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        # per-rank count, mean and centred sum of squares, combined as Chan et al. (1979) — stable, unlike
        # E[x²] − E[x]² — and differentiable through the gather
        n_local = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        mean_r = x.mean(dim=dims)
        m2_r = (x - mean_r.view(shape)).pow(2).sum(dim=dims)
        stats = _GatherCat.apply(torch.cat([n_local, mean_r, m2_r]).unsqueeze(0))  # (W, 1 + 2C)
        counts, means, m2s = stats[:, :1], stats[:, 1:1 + c], stats[:, 1 + c:]
        n = counts.sum()
        mean = (counts * means).sum(0) / n
        var = ((m2s + counts * (means - mean).pow(2)).sum(0) / n).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                nd = n.detach()
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * nd / (nd - 1).clamp_min(1))
                self.num_batches_tracked.add_(1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Swap every BatchNorm for its synchronised version (torch's on CUDA, :class:`CPUSyncBatchNorm` on the
    CPU), keeping parameters and running statistics (state-dict keys are unchanged)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        # the module's own parameters and buffers, as torch's convert_sync_batchnorm does: same dtype and device
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (no gradient; for logging)."""
    if not is_active():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()
