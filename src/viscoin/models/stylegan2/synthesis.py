"""StyleGAN2 synthesis network: W+ (B, num_ws, w_dim) → image (B, C, R, R) in [-1, 1].

A learned 4×4 constant is refined block by block, doubling the resolution each time; every block
has two modulated 3×3 convolutions (one at 4×4) and, in the default "skip" architecture, a toRGB
whose output is added to the upsampled image of the blocks below. This is the part VisCoIN drives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from viscoin.models.stylegan2.layers import (
    DEFAULT_FILTER,
    Conv2dLayer,
    SynthesisLayer,
    ToRGBLayer,
)
from viscoin.models.stylegan2.ops import setup_filter, upsample2d

ARCHITECTURES = ("orig", "skip", "resnet")


def block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    """float16 for the blocks marked ``use_fp16``, but only on CUDA (CPUs compute them in float32)."""
    if use_fp16 and not force_fp32 and device.type == "cuda":
        return torch.float16
    return torch.float32


def channel_count(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at ``resolution``: ``min(channel_base // resolution, channel_max)``."""
    return min(channel_base // resolution, channel_max)


def fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Lowest resolution computed in float16 when the ``num_fp16_res`` highest ones are (≥ 8)."""
    return max(2 ** (int(math.log2(img_resolution)) + 1 - num_fp16_res), 8)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (x, img) at R/2 → (x, img) at R.

    Consumes ``num_conv + num_torgb`` rows of W+: conv0 (upsampling, absent at 4×4), conv1, toRGB.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        fused_modconv_default: bool | str = "inference_only",
        **layer_kwargs,
    ) -> None:
        # `fused_modconv_default` (StyleGAN3's copy of this network) only picks between two
        # numerically equal code paths; it is accepted so such networks convert, and ignored.
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels,
                img_channels,
                w_dim=w_dim,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        noise_mode: str = "random",
        dtype: torch.dtype | None = None,
        channels_last: bool | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, in_channels, R/2, R/2) or None (first block); img: (B, C, R/2, R/2) or None;
        ws: (B, num_conv + num_torgb, w_dim). Returns x (B, out_channels, R, R) and img (B, C, R, R).

        ``dtype`` / ``channels_last`` override the block's own compute dtype and memory format
        (float16 + channels_last for the official networks' top resolutions on CUDA).
        ``noise``: ``random`` mode's N(0, 1) images (B, 1, R, R), one per conv (conv0 first).
        """
        w_iter = iter(ws.unbind(dim=1))
        if dtype is None:
            dtype = block_dtype(self.use_fp16, force_fp32, ws.device)
        if channels_last is None:
            channels_last = self.channels_last and dtype == torch.float16
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if fused_modconv is None:
            # Fusing is faster at inference; in training the scale-the-activations path is.
            fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)
        layer_kwargs = {"fused_modconv": fused_modconv, "noise_mode": noise_mode}
        noise0 = noise1 = None
        if noise is not None:  # the first block has no conv0
            noise0, noise1 = (None, *noise) if self.in_channels == 0 else noise

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
            x = self.conv1(x, next(w_iter), noise=noise1, **layer_kwargs)
        elif self.architecture == "resnet":
            x = x.to(dtype=dtype, memory_format=memory_format)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise=noise0, **layer_kwargs)
            x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), noise=noise1, **layer_kwargs)
            x = y.add_(x)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), noise=noise0, **layer_kwargs)
            x = self.conv1(x, next(w_iter), noise=noise1, **layer_kwargs)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """Blocks ``b4, b8, …, b{img_resolution}``; channels ``min(channel_base // R, channel_max)``.

    Consecutive blocks share one W+ row: a block's toRGB row is the next block's conv0 row, so
    ``num_ws = 2 log2(R) - 2`` (14 at 256 px).
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs,
    ) -> None:
        if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f"img_resolution must be a power of two ≥ 4, not {img_resolution}")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        fp16_from = fp16_resolution(img_resolution, num_fp16_res)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channel_count(res // 2, channel_base, channel_max) if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels,
                channel_count(res, channel_base, channel_max),
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=res >= fp16_from,
                **block_kwargs,
            )
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def noise_resolutions(self) -> list[int]:
        """The resolution of each conv's noise image, in the order ``forward(noise=)`` takes them
        (``b4.conv1``, ``b8.conv0``, ``b8.conv1``, …): ``2 log2(R) − 3`` entries."""
        return [res for res in self.block_resolutions for _ in range(1 if res == 4 else 2)]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        dtype: torch.dtype | None = None,
        channels_last: bool | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """ws: (B, num_ws, w_dim) → images (B, img_channels, R, R), nominally in [-1, 1].

        ``noise_mode``: ``const`` (the stored noise images, reproducible), ``random`` or ``none``.
        ``noise``: with ``random``, the N(0, 1) noise images to use instead of fresh draws, one
        (B, 1, r, r) tensor per conv at the resolutions of ``noise_resolutions()`` (a seeded
        caller's way to make random noise reproducible; plain tensors, so it compiles).
        ``dtype``: compute dtype of every block (e.g. ``torch.bfloat16``; default: float32, or
        float16 for the blocks the network marks, on CUDA); the image is accumulated in float32.
        ``channels_last``: run the convolutions in NHWC memory format (fastest with reduced precision).
        ``fused_modconv``: one grouped convolution per layer (``True``, fastest at inference) or
        scaling the activations around a shared convolution (``False``, fastest when gradients
        flow back through the network); default: fused in eval mode in float32.
        """
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(
                f"ws must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}"
            )
        if noise is not None and len(noise) != len(self.noise_resolutions()):
            raise ValueError(
                f"noise must hold {len(self.noise_resolutions())} images, got {len(noise)}"
            )
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            block_noise = None if noise is None else noise[w_idx : w_idx + block.num_conv]
            w_idx += block.num_conv
            x, img = block(
                x,
                img,
                block_ws,
                force_fp32=force_fp32,
                fused_modconv=fused_modconv,
                noise_mode=noise_mode,
                dtype=dtype,
                channels_last=channels_last,
                noise=block_noise,
            )
        return img
