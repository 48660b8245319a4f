"""Distributed training set-up (torchrun, DDP) and batch norm over the global batch.

DDP. Launched by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment) the
model is wrapped in ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA), each rank takes
its ``B/R`` slice of every global batch, and batch norm statistics are computed over the global
batch (``torch.nn.SyncBatchNorm`` on CUDA; :class:`DistributedBatchNorm2d` on CPU, where
``SyncBatchNorm`` is not supported), so ``R`` processes give the result of one process on the
same global batch. :func:`check_batch_norm_batch` refuses batches too small for batch norm.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .errors import InputError


class DistContext:
    """Rank, world size and device of this process (``torchrun`` environment or single process)."""

    def __init__(self, device: str = "auto"):
        env = os.environ
        self.world = int(env.get("WORLD_SIZE", "1"))
        self.rank = int(env.get("RANK", "0"))
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if want_cuda and not torch.cuda.is_available():
            raise InputError(f"--device: {device} requested but CUDA is not available")
        if want_cuda:
            index = self.local_rank if (self.world > 1 or ":" not in device) else int(device.split(":")[1])
            self.device = torch.device("cuda", index)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.initialised_here = False
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
            self.initialised_here = True

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.distributed:
            torch.distributed.barrier()

    def all_reduce_sum(self, values: dict[str, float]) -> dict[str, float]:
        """Sum a dict of floats over ranks (same keys on every rank)."""
        if not self.distributed or not values:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def close(self):
        if self.initialised_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: forward ``y = Σ_r x_r``, backward ``∂L/∂x_r = Σ_r' ∂L_r'/∂y``."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        torch.distributed.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics run over the global batch of all DDP ranks.

    For the ``R`` local batches ``x^{(r)}`` (``n_r`` elements per channel):
    ``μ = Σ_r Σ x^{(r)} / Σ_r n_r``, ``σ² = Σ_r Σ (x^{(r)} − μ)² / Σ_r n_r`` (two passes, float64
    sums, differentiable all-reduce), ``y = (x − μ)/√(σ² + ε)·γ + β``; the running variance gets
    the unbiased ``σ²·n/(n − 1)``, as ``nn.BatchNorm2d``. Used on CPU (gloo), where
    ``nn.SyncBatchNorm`` is not available; single process or eval mode: plain batch norm.
    """

    def forward(self, x):
        dist = torch.distributed
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        c = x.shape[1]
        xd = x.double()
        n_local = xd.new_tensor([x.numel() // c])
        total = all_reduce(torch.cat([xd.sum(dim=(0, 2, 3)), n_local]))
        n = total[c]
        mean = total[:c] / n
        sq = all_reduce((xd - mean.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3)))
        var = sq / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                unbiased = var * (n / max(float(n) - 1.0, 1.0))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        y = (x - mean.to(x.dtype).view(1, c, 1, 1)) * scale.view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` by its global-batch version for DDP (in place)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = DistributedBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                         child.track_running_stats)
            ref = next(iter(child.state_dict().values()))
            new.to(device=ref.device, dtype=torch.float64 if ref.dtype == torch.float64 else torch.float32)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child, device)
    return module


def check_batch_norm_batch(unet, h: int, w: int, global_batch: int) -> None:
    """InputError unless every batch-norm layer that trains sees more than one value per channel.

    A training batch norm normalises each channel over ``batch × h_l × w_l`` values; with one
    value (batch 1 at the 1×1 bottom level of a 128² t128 network) its variance is undefined and
    torch raises mid-run. Encoder level ``i >= 1`` works at ``(h, w)/2^(i+1)``, decoder level
    ``i >= 1`` at ``(h, w)/2^i``; frozen encoder batch norm (stage 2) does not count. Checked
    before anything is written.
    """
    counts = [(h >> i) * (w >> i) for i in range(1, unet.levels)]  # decoder levels 1 .. L-1
    if not unet.encoder_bn_frozen:
        counts += [(h >> (i + 1)) * (w >> (i + 1)) for i in range(1, unet.levels)]
    smallest = min(counts, default=2)
    if global_batch * smallest < 2:
        raise InputError(f"--batch-size: {global_batch} sample(s) per step leave batch norm one value per channel "
                         f"at the {h >> unet.levels}x{w >> unet.levels} bottom level of this {unet.levels}-level "
                         "network; use --batch-size 2 or more (or stage 2, whose encoder batch norm is frozen)")


__all__ = ["DistContext", "DistributedBatchNorm2d", "convert_batchnorm", "check_batch_norm_batch"]
