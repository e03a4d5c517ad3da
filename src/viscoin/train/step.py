"""The compute of one VisCoIN training step, with the speed options applied.

:class:`StepCompute` owns the two GPU-heavy calls of a step — sampling the generated half of the
batch from G, and the forward pass of every loss term — so that the trainer and
``benchmarks/train_step.py`` run exactly the same code. The options only change how the numbers
are computed, not which numbers:

* ``amp="bf16"``: autocast to bfloat16, with the synthesis network computing in bfloat16 too
  (the image is accumulated in float32; demodulation coefficients and every loss stay float32);
* ``channels_last``: NHWC memory format for the classifier, the synthesis network and LPIPS;
* ``compile``: ``torch.compile`` of the loss computation (forward and backward graphs) and of the
  sampling, in the given mode (``reduce-overhead`` adds CUDA graphs).

The reconstruction path always uses the unfused modulated convolution (scale the activations
around one shared convolution): it is the cheaper one when gradients flow back through G.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from viscoin.errors import UserError

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AMP_MODES = ("none", "bf16")


@dataclass
class SpeedOptions:
    amp: str = "none"  # none | bf16
    channels_last: bool = False
    compile: str = "none"  # one of COMPILE_MODES

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise UserError(f"viscoin.amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if self.compile not in COMPILE_MODES:
            raise UserError(
                f"viscoin.compile_mode must be one of {', '.join(COMPILE_MODES)}, not {self.compile!r}"
            )

    @property
    def dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.amp == "bf16" else None


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
        self.cudagraphs = options.compile in ("reduce-overhead", "max-autotune")
        if options.compile != "none":
            self._losses = torch.compile(self._loss_terms, mode=options.compile)
            self._sample = torch.compile(self._sample_images, mode=options.compile)

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
        images = self._sample(z, c, noise)
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
        Compiled, the step's scalars go in as tensors (one graph for every value) and ``mark`` is
        not called inside the graph.
        """
        if self.options.compile == "none":
            return self._losses(images, float(warm), gamma, mark, dropout_mask, noise)
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        scalars = to_device([float(warm), gamma], self.device)
        return self._losses(images, scalars[0], scalars[1], None, dropout_mask, noise)


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
