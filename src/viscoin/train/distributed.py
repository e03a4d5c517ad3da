"""torch.distributed set-up for ``torchrun``: one process per device, only rank 0 writes.

Without torchrun's environment variables everything runs in one process and these helpers are
no-ops, so the same training code serves both. :class:`GlobalBatchNorm1d` gives batch
normalisation the statistics of the global batch, as one process would compute them;
:func:`average_gradients` and :func:`sum_over_ranks` serve the GAN trainer, which averages each
phase's gradients itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from viscoin.utils.device import resolve_device


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, 0, resolve_device(device_spec))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the run directory rank 0 created)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward sums the gradients over the ranks too: d(Σ_r x_r)/dx_r
    reaches every rank's graph, as one process's graph would carry it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Σ over the ranks of ``x`` (any shape), differentiable: the gradient reaching the sum is
    summed over the ranks on its way back, so every rank's ``x`` gets the gradient one process
    holding all the terms would give it. Alone, ``x`` itself."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _SumOverRanks.apply(x)


def average_gradients(params: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Replace each ``.grad`` of ``params`` by its mean over the ranks (one all-reduce of all of
    them flattened); parameters without a gradient are skipped, so every rank must pass the same
    ones with gradients. With per-rank losses that are means over equal shares of a global batch,
    the result is the gradient of the global batch's mean loss."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= info.world
    for grad, mean in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(mean.view(grad.shape))


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (B, F) whose training statistics are those of the whole global batch
    (every process holding B rows).

    Under DDP each process sees only its share of the batch; the mean and variance here are
    all-reduced (two passes: mean first, then the centred squares, as precise as one process's)
    with differentiable collectives, so the gradient through the statistics reaches every rank,
    and the running statistics follow the global ones. Like ``nn.SyncBatchNorm``, which needs a
    GPU; this one also runs on gloo/CPU. Alone, or in eval mode, it is a plain BatchNorm1d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() == 1:
            return super().forward(x)
        n = (
            x.shape[0] * dist.get_world_size()
        )  # every rank holds an equal share (the trainer's rule)
        mean = _SumOverRanks.apply(x.sum(dim=0)) / n
        var = _SumOverRanks.apply((x - mean).square().sum(dim=0)) / n
        out = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                # the running variance is the unbiased one, as nn.BatchNorm1d keeps it
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        return out


def use_global_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d`` inside ``module`` by a :class:`GlobalBatchNorm1d` with
    the same settings and state (parameter and buffer names are kept, so is the state dict)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            glob = GlobalBatchNorm1d(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
                device=child.running_mean.device if child.running_mean is not None else None,
            )
            glob.load_state_dict(child.state_dict())
            glob.train(child.training)
            setattr(module, name, glob)
        else:
            use_global_batch_norm(child)
    return module
