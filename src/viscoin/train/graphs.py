"""CUDA graphs of whole training phases (``gan.cuda_graphs``).

``gan.cuda_graphs=auto`` (the default) uses them wherever they work: in one CUDA process, on
torch >= 2.5, without ``gan.compile`` (:func:`resolve_cuda_graphs`); ``true`` asks for them and
says why when they cannot run, ``false`` never uses them.

A small network trains launch-bound: at 32 px a StyleGAN2 step is thousands of kernels of a few
microseconds each, and the host spends longer issuing them than the GPU running them. A
:class:`PhaseGraph` records one phase of a step (forward, backward and the gradient clean-up)
once as a CUDA graph and replays it at every later call: one launch for the whole phase.

What a captured phase may do is what a CUDA graph can replay: device work on tensors that stay at
their addresses (parameters, buffers, the graph's own inputs and outputs) and random numbers from
the default CUDA generator or from the generators given (both advance at every replay as they
would eagerly). It must not read the device on the host (``.item()``, ``bool(t)``, shapes that
depend on values), copy host data to the device or change which kernels run from call to call.
The GAN's phases are written that way; ``tests/train/test_gan_graphs.py`` checks it on the CPU
(no op that would sync or copy from the host), and ``benchmarks/gan_vs_official.py graphs`` checks
on a GPU that replayed steps give the eager loop's weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from viscoin.errors import UserError
from viscoin.train.distributed import DistInfo, average_gradients

# Eager calls before the capture: cuDNN picks its algorithms and the allocator settles, on a side
# stream as PyTorch's capture recipe asks.
WARMUP_CALLS = 3


def graphs_supported() -> bool:
    """Whether this torch can capture the phases: torch >= 2.5, whose CUDA graphs also replay the
    draws of other generators than the default one (``CUDAGraph.register_generator_state``)."""
    return hasattr(torch.cuda.CUDAGraph, "register_generator_state")


def graphs_unavailable(world_size: int) -> str | None:
    """Why the phases cannot run as CUDA graphs here, as a user message; None when they can
    (besides a CUDA device): several processes all-reduce inside the phases, and an older torch
    cannot replay the augmentation's generator."""
    if world_size > 1:
        return "gan.cuda_graphs works in one process; under torchrun set gan.cuda_graphs=false."
    if not graphs_supported():
        return (
            f"gan.cuda_graphs needs torch >= 2.5 (this is {torch.__version__}): "
            "upgrade torch or set gan.cuda_graphs=false."
        )
    return None


def resolve_cuda_graphs(
    setting: bool | str, device: torch.device, world_size: int, compile: bool
) -> bool:
    """Whether the GAN's phases run as CUDA graphs, from ``gan.cuda_graphs`` (``setting``).

    ``"auto"``: exactly when ``device`` is CUDA, ``world_size`` is 1, torch is at least 2.5 and
    ``compile`` (``gan.compile``) is off; otherwise eager, silently. ``False``: never. ``True``:
    on a CUDA device, or a :class:`UserError` saying why they cannot run (several processes, an
    older torch); False on another device (the caller says so). The config's validation refuses
    ``True`` with ``compile``.
    """
    if setting == "auto":
        return device.type == "cuda" and not compile and graphs_unavailable(world_size) is None
    if setting is not True or device.type != "cuda":
        return False
    reason = graphs_unavailable(world_size)
    if reason is not None:
        raise UserError(reason)
    return True


def clean_gradients(parameters: Any) -> None:
    """A rare inf/nan gradient (e.g. float16 overflow) must not poison Adam's moments: NaN → 0,
    ±inf → ±1e5, in place (StyleGAN2-ADA's ``nan_to_num``)."""
    for param in parameters:
        if param.grad is not None:
            torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)


def phase_gradients(
    module: nn.Module,
    fn: Callable[..., dict[str, torch.Tensor]],
    *args: Any,
    dist: DistInfo | None = None,
) -> dict[str, torch.Tensor]:
    """``fn(*args)`` (a phase's losses, each calling ``backward``) with gradients for ``module``
    only; they are averaged over the processes under ``dist``, then cleaned (:func:`clean_gradients`).
    """
    module.requires_grad_(True)
    values = fn(*args)
    module.requires_grad_(False)
    if dist is not None:
        average_gradients(module.parameters(), dist)
    clean_gradients(module.parameters())
    return values


class PhaseGraph:
    """``fn(*args)`` with gradients for ``module`` only, as a CUDA graph after a few eager calls.

    ``fn`` computes a phase's losses and calls ``backward`` itself, returning a dict of 0-d
    tensors. A call leaves ``module``'s gradients (:func:`phase_gradients`) in its parameters'
    ``.grad`` for the optimiser, as the eager phase does. ``args`` are tensors of the
    same shape and dtype at every call (copied into the graph's inputs) or constants, which must
    not change (a change is refused). ``generators``: non-default CUDA generators ``fn`` draws from
    (reseeding one between calls changes the replay's draws as it would eager ones).

    The returned tensors are the graph's outputs: the next call overwrites them (copy what must
    outlive it).
    """

    def __init__(
        self,
        module: nn.Module,
        fn: Callable[..., dict[str, torch.Tensor]],
        generators: Sequence[torch.Generator] = (),
        warmup: int = WARMUP_CALLS,
    ) -> None:
        self.module, self.fn, self.generators, self.warmup = module, fn, tuple(generators), warmup
        self.params = list(module.parameters())
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: list[Any] = []
        self.outputs: dict[str, torch.Tensor] = {}
        self.grads: list[torch.Tensor | None] = []

    def __call__(self, *args: Any) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            for param in self.params:
                param.grad = None
            side, current = torch.cuda.Stream(), torch.cuda.current_stream()
            side.wait_stream(current)
            with torch.cuda.stream(side):
                values = phase_gradients(self.module, self.fn, *args)
            current.wait_stream(side)
            return values
        if self.graph is None:
            self._capture(args)
        self._check_constants(args)
        for static, value in zip(self.inputs, args, strict=True):
            if isinstance(static, torch.Tensor):
                static.copy_(value)
        for param, grad in zip(self.params, self.grads, strict=True):
            param.grad = grad
        self.graph.replay()
        return self.outputs

    def _capture(self, args: Sequence[Any]) -> None:
        self.inputs = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
        for param in self.params:
            param.grad = None
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        # thread_local: the data loader's pin-memory thread may use CUDA during the capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.outputs = phase_gradients(self.module, self.fn, *self.inputs)
        self.grads = [param.grad for param in self.params]
        self.graph = graph

    def _check_constants(self, args: Sequence[Any]) -> None:
        for i, (static, value) in enumerate(zip(self.inputs, args, strict=True)):
            if isinstance(static, torch.Tensor):
                if not isinstance(value, torch.Tensor) or value.shape != static.shape:
                    raise ValueError(
                        f"PhaseGraph argument {i}: {tuple(static.shape)} captured, got "
                        f"{getattr(value, 'shape', value)!r}"
                    )
            elif value != static:
                raise ValueError(f"PhaseGraph argument {i}: {static!r} captured, got {value!r}")
