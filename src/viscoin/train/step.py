"""The compute of one VisCoIN training step, with the speed options applied.

:class:`StepCompute` owns the two GPU-heavy calls of a step — sampling the generated half of the
batch from G, and the forward pass of every loss term — so that the trainer and
``benchmarks/train_step.py`` run exactly the same code. The options only change how the numbers
are computed, not which numbers:

* ``amp="bf16"``: autocast to bfloat16, with the synthesis network computing in bfloat16 too
  (the image is accumulated in float32; demodulation coefficients and every loss stay float32);
* ``channels_last``: NHWC memory format for the classifier, the synthesis network and LPIPS;
* ``compile``: ``torch.compile`` in the given mode (``reduce-overhead`` adds CUDA graphs), over
  ``compile_scope``: ``whole`` compiles the loss computation (forward and backward graphs) and the
  sampling as two graphs; ``regional`` compiles each repeated block of f, G's synthesis network
  and LPIPS on its own (see :func:`repeated_blocks`), in place, and runs the glue between them
  eagerly: blocks of the same code and shapes share one compiled graph, which bounds what is
  traced by the distinct blocks rather than the whole step.

The trainer takes them from the config through :func:`resolve_speed_options`: by default
(``viscoin.amp=auto``, ``viscoin.compile=auto``) bf16 and ``torch.compile`` on a CUDA GPU that
supports them (compiled in one process only), float32 and eager elsewhere.

The reconstruction path always uses the unfused modulated convolution (scale the activations
around one shared convolution): it is the cheaper one when gradients flow back through G. Compiled,
the loss computation applies G's FIR filters as two matrix products per filter
(``compiled_fir="matmul"``, when every resampling filter is the standard one): the backward of
the fused shifted-view form re-reads the activation gradient once per filter tap, and was the
largest kernel of the step. The sampling, which has no backward, keeps the fused form.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from viscoin.errors import UserError
from viscoin.models.stylegan2.ops import (
    COMPILED_FIR_IMPLS,
    standard_filters,
    use_compiled_fir_impl,
)

if TYPE_CHECKING:
    from viscoin.config import ViscoinConfig

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_SCOPES = ("whole", "regional")
AMP_MODES = ("none", "bf16")


@dataclass
class SpeedOptions:
    amp: str = "none"  # none | bf16
    channels_last: bool = False
    compile: str = "none"  # one of COMPILE_MODES
    compile_scope: str = "whole"  # one of COMPILE_SCOPES
    # how the compiled loss computation applies the synthesis network's FIR filters: matmul (two
    # matrix products, whose backward is matrix products again) | pointwise (shifted views fused
    # with the element-wise work around them); the sampling, with no backward, always fuses them
    compiled_fir: str = "matmul"

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise UserError(f"viscoin.amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if self.compile not in COMPILE_MODES:
            raise UserError(
                f"viscoin.compile_mode must be one of {', '.join(COMPILE_MODES)}, not {self.compile!r}"
            )
        if self.compiled_fir not in COMPILED_FIR_IMPLS:
            raise ValueError(
                f"compiled_fir must be one of {COMPILED_FIR_IMPLS}, not {self.compiled_fir!r}"
            )
        if self.compile_scope not in COMPILE_SCOPES:
            raise UserError(
                f"viscoin.compile_scope must be one of {', '.join(COMPILE_SCOPES)}, "
                f"not {self.compile_scope!r}"
            )

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype: bfloat16 with ``amp="bf16"``, else None (float32)."""
        return torch.bfloat16 if self.amp == "bf16" else None

    def describe(self) -> str:
        """The options in a few words, e.g. ``fp32 eager`` or ``bf16 + torch.compile (default)``."""
        parts = ["bf16" if self.amp == "bf16" else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile == "none":
            return " + ".join(parts) + " eager"
        scope = ", regional" if self.compile_scope == "regional" else ""
        return " + ".join([*parts, f"torch.compile ({self.compile}{scope})"])


def bf16_supported() -> bool:
    """Whether the current CUDA device computes in bfloat16 natively (compute capability 8.0 or
    later, or ROCm). Older GPUs only emulate it: slowly, and without cuDNN's bf16 convolutions."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the argument counts native support only
        return torch.cuda.is_bf16_supported()


def compile_supported() -> bool:
    """Whether ``torch.compile`` can build GPU kernels here: Inductor writes them in Triton, which
    not every CUDA build of torch installs."""
    return importlib.util.find_spec("triton") is not None


def resolve_speed_options(
    v: ViscoinConfig, device: torch.device, world_size: int = 1
) -> SpeedOptions:
    """The step's speed options for the config ``v`` on ``device``: ``auto`` resolved.

    ``viscoin.amp``: ``"auto"`` is ``bf16`` when ``device`` is CUDA and :func:`bf16_supported`,
    else ``none``; ``none`` and ``bf16`` as given (``bf16`` on the CPU too). ``viscoin.compile``:
    ``"auto"`` compiles in ``viscoin.compile_mode`` exactly when ``device`` is CUDA,
    :func:`compile_supported` and the run is one process (``world_size`` 1: the compiled step with
    DistributedDataParallel and the global batch norm's collectives is not measured); ``True``
    compiles on CUDA, under torchrun too; elsewhere, and with ``False``, the step
    is eager, without a word. Needs no GPU: ``device`` is only read for its type. The config keeps
    ``auto``: the run's ``config.yaml`` records what was asked, these options what ran.
    """
    cuda = device.type == "cuda"
    amp = v.amp
    if amp == "auto":
        amp = "bf16" if cuda and bf16_supported() else "none"
    if v.compile == "auto":
        compiled = cuda and world_size == 1 and compile_supported()
    else:
        compiled = cuda and v.compile is True
    return SpeedOptions(
        amp=amp,
        channels_last=v.channels_last,
        compile=v.compile_mode if compiled else "none",
        compile_scope=v.compile_scope,
    )


class StepCompute:
    """Sampling and loss computation of a training step for fixed f, G, LPIPS and a trained core.

    ``channels_last`` converts the frozen classifier and LPIPS to NHWC in place.
    """

    def __init__(
        self,
        classifier: nn.Module,
        core: nn.Module,
        generator: nn.Module,
        lpips: nn.Module | None,
        weights,
        options: SpeedOptions,
        device: torch.device,
    ) -> None:
        self.classifier, self.core, self.generator = classifier, core, generator
        self.lpips, self.weights, self.options, self.device = lpips, weights, options, device
        if options.channels_last:
            classifier.to(memory_format=torch.channels_last)
            if lpips is not None:
                lpips.to(memory_format=torch.channels_last)
        self.synthesis_kwargs = {
            "fused_modconv": False,
            "dtype": options.dtype,
            "channels_last": options.channels_last,
        }
        self._losses: Callable = self._loss_terms
        self._sample: Callable = self._sample_images
        # the matmul FIR holds for the standard filter only, which a compiled graph cannot check:
        # checked here, on the host, when the step is compiled (eager steps never read the choice)
        self.compiled_fir = options.compiled_fir
        compiled = options.compile != "none"
        if compiled and self.compiled_fir == "matmul" and not standard_filters(generator):
            self.compiled_fir = "pointwise"
        self.cudagraphs = options.compile in ("reduce-overhead", "max-autotune")
        self.regions: list[nn.Module] = []
        if options.compile != "none" and options.compile_scope == "whole":
            # static shapes: the training batches all have one size (drop_last), and a
            # dynamic-shape graph would compile more slowly and run no faster
            self._losses = torch.compile(self._loss_terms, mode=options.compile, dynamic=False)
            self._sample = torch.compile(self._sample_images, mode=options.compile, dynamic=False)
        elif options.compile != "none":
            for net in (classifier, generator.synthesis, lpips):
                if net is not None:
                    self.regions += repeated_blocks(net)
            # every block of one class shares one code object, and each of its shapes and grad
            # modes is a compiled entry of it: more than dynamo's default of 8 per code object
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
            for block in self.regions:
                block.compile(mode=options.compile, dynamic=False)

    @contextmanager
    def eager(self) -> Iterator[None]:
        """f, G and LPIPS run eagerly inside (``regional`` scope compiles their blocks in place):
        an evaluation at other batch sizes compiles nothing."""
        compiled = [(block, block._compiled_call_impl) for block in self.regions]
        for block, _ in compiled:
            block._compiled_call_impl = None
        try:
            yield
        finally:
            for block, impl in compiled:
                block._compiled_call_impl = impl

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.options.amp == "bf16"
        )

    def _sample_images(
        self, z: torch.Tensor, c: torch.Tensor, noise: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        with self._autocast():
            ws = self.generator.mapping(z, c)
            img = self.generator.synthesis(
                ws,
                noise_mode="const" if noise is None else "random",
                noise=noise,
                dtype=self.options.dtype,
                channels_last=self.options.channels_last,
            )
        return img.float().clamp(-1, 1)

    @torch.no_grad()
    def sample(
        self, z: torch.Tensor, c: torch.Tensor, noise: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Generated images (B, 3, R, R) in [−1, 1] for latents z (B, z_dim), labels c (B, c_dim).

        ``noise``: G's random noise images (B, 1, r, r) per ``noise_resolutions()``; None: constant.
        """
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        images = self._sample(z, c, noise)  # no backward: the fused pointwise FIR is the faster
        return images.clone() if self.cudagraphs else images

    def _loss_terms(
        self,
        images: torch.Tensor,
        warm: torch.Tensor | float,
        gamma: torch.Tensor | float,
        mark: Callable[[str], None] | None = None,
        dropout_mask: torch.Tensor | None = None,
        noise: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        from viscoin.train.viscoin import viscoin_losses

        if self.options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            return viscoin_losses(
                images,
                self.classifier,
                self.core,
                self.generator,
                self.weights,
                self.lpips,
                warm=warm,
                mark=mark,
                gamma=gamma,
                synthesis_kwargs=self.synthesis_kwargs,
                dropout_mask=dropout_mask,
                noise=noise,
            )

    def losses(
        self,
        images: torch.Tensor,
        warm: bool,
        gamma: float,
        mark: Callable[[str], None] | None = None,
        dropout_mask: torch.Tensor | None = None,
        noise: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every loss term for a batch (B, 3, R, R) in [−1, 1] (see ``viscoin_losses``).

        ``dropout_mask`` (B, K, 3, 3) and ``noise`` (G's noise images, (B, 1, r, r) each) are the
        step's random draws, passed in as tensors so the compiled graph draws nothing itself.
        Compiled whole, the step's scalars go in as tensors (one graph for every value) and
        ``mark`` is not called inside the graph.
        """
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        with use_compiled_fir_impl(self.compiled_fir):
            if self.options.compile == "none" or self.options.compile_scope == "regional":
                return self._losses(images, float(warm), gamma, mark, dropout_mask, noise)
            scalars = to_device([float(warm), gamma], self.device)
            return self._losses(images, scalars[0], scalars[1], None, dropout_mask, noise)


def repeated_blocks(net: nn.Module) -> list[nn.Module]:
    """The regions of regional compilation: the outermost submodules of ``net`` whose class occurs
    more than once in it and that hold parameters, looking inside containers of composite modules
    (a ResNet's bottlenecks rather than its stages, the synthesis network's blocks, LPIPS's VGG
    slices and linear heads), each compiled on its own.

    Shapes differ between a network's stages, so a region is compiled once per distinct shape
    (e.g. once per ResNet stage for its repeated bottlenecks, once per synthesis resolution).
    """
    counts = Counter(type(m) for m in net.modules())
    chosen: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            # a container of composite modules (a ResNet stage) is looked into for its blocks;
            # one of layers only (a VGG slice) is a block itself
            container = isinstance(child, nn.Sequential | nn.ModuleList | nn.ModuleDict)
            composite = any(True for c in child.children() for _ in c.children())
            if container and composite:
                visit(child)
            elif counts[type(child)] > 1 and any(True for _ in child.parameters()):
                chosen.append(child)
            else:
                visit(child)

    visit(net)
    return chosen


def make_optimizers(
    core: nn.Module, lr: float, device: torch.device
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The two Adams of METHOD.md: Ψ+Θ, and Ω. On CUDA, the fused implementation (one kernel for
    every parameter's update; same state dict, so checkpoints move between devices)."""
    fused = device.type == "cuda"
    concepts = [*core.extractor.parameters(), *core.head.parameters()]
    return (
        torch.optim.Adam(concepts, lr=lr, fused=fused),
        torch.optim.Adam(core.translator.parameters(), lr=lr, fused=fused),
    )


def to_device(values: torch.Tensor | list[float], device: torch.device) -> torch.Tensor:
    """``values`` as a float32 tensor on ``device``, copied from pinned memory on CUDA (a copy
    from pageable memory would wait for the GPU to finish its queued work)."""
    t = torch.as_tensor(values, dtype=torch.float32)
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)
