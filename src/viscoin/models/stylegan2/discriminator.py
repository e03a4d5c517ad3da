"""The StyleGAN2 discriminator: image (and class label) → one realness logit per image.

Residual blocks halve the resolution down to 4×4, where the epilogue appends the minibatch
standard deviation and ends in two dense layers. A conditional discriminator projects its output
on an embedding of the label (``cmap``). Used by ``viscoin train gan``; saved like the generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from viscoin.models.stylegan2.generator import build_from_checkpoint, jsonable
from viscoin.models.stylegan2.layers import (
    DEFAULT_FILTER,
    Conv2dLayer,
    FullyConnectedLayer,
    MinibatchStdLayer,
)
from viscoin.models.stylegan2.mapping import MappingNetwork
from viscoin.models.stylegan2.ops import downsample2d, setup_filter
from viscoin.models.stylegan2.synthesis import (
    ARCHITECTURES,
    block_dtype,
    channel_count,
    fp16_resolution,
)
from viscoin.utils.checkpoint import load_checkpoint, save_checkpoint

DISCRIMINATOR_KIND = "stylegan2.discriminator"


class DiscriminatorBlock(nn.Module):
    """One resolution: (x, img) at R → (x, img) at R/2. fromrgb (first block or "skip"),
    conv0 3×3, conv1 3×3 with FIR downsampling, and in "resnet" a 1×1 downsampling skip.
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))

        # Layers with a global index below `freeze_layers` are frozen (Freeze-D).
        self.num_layers = 0

        def trainable() -> bool:
            index = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return index >= freeze_layers

        common = {"conv_clamp": conv_clamp, "channels_last": self.channels_last}
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(
                img_channels,
                tmp_channels,
                kernel_size=1,
                activation=activation,
                trainable=trainable(),
                **common,
            )
        self.conv0 = Conv2dLayer(
            tmp_channels,
            tmp_channels,
            kernel_size=3,
            activation=activation,
            trainable=trainable(),
            **common,
        )
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            activation=activation,
            down=2,
            trainable=trainable(),
            resample_filter=resample_filter,
            **common,
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                down=2,
                trainable=trainable(),
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, in_channels, R, R) or None (first block); img: (B, C, R, R) or None.
        Returns x (B, out_channels, R/2, R/2) and, in "skip", the downsampled img.
        """
        device = (x if x is not None else img).device
        dtype = block_dtype(self.use_fp16, force_fp32, device)
        memory_format = (
            torch.channels_last
            if self.channels_last and dtype == torch.float16
            else torch.contiguous_format
        )
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None

        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """The 4×4 end: minibatch std, conv 3×3, dense, dense to 1 (or to ``cmap_dim`` and a
    projection on the label embedding). Always computed in float32.
    """

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == "skip":
            self.fromrgb = Conv2dLayer(
                img_channels, in_channels, kernel_size=1, activation=activation
            )
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
            if mbstd_num_channels > 0
            else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            kernel_size=3,
            activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(
            in_channels * resolution**2, in_channels, activation=activation
        )
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(
        self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None
    ) -> torch.Tensor:
        """x: (B, in_channels, 4, 4), cmap: (B, cmap_dim) or None → logits (B, 1)."""
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            # Projection discriminator: agreement between the features and the label embedding.
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: img (B, img_channels, R, R), c (B, c_dim) → logits (B, 1)."""

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: Mapping[str, Any] | None = None,
        mapping_kwargs: Mapping[str, Any] | None = None,
        epilogue_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        self._config = {
            "c_dim": c_dim,
            "img_resolution": img_resolution,
            "img_channels": img_channels,
            "architecture": architecture,
            "channel_base": channel_base,
            "channel_max": channel_max,
            "num_fp16_res": num_fp16_res,
            "conv_clamp": conv_clamp,
            "cmap_dim": cmap_dim,
            "block_kwargs": dict(block_kwargs or {}),
            "mapping_kwargs": dict(mapping_kwargs or {}),
            "epilogue_kwargs": dict(epilogue_kwargs or {}),
        }

        def channels(res: int) -> int:
            return channel_count(res, channel_base, channel_max)

        fp16_from = fp16_resolution(img_resolution, num_fp16_res)
        if cmap_dim is None:
            cmap_dim = channels(4)
        if c_dim == 0:
            cmap_dim = 0

        common = {
            "img_channels": img_channels,
            "architecture": architecture,
            "conv_clamp": conv_clamp,
        }
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels(res) if res < img_resolution else 0,
                channels(res),
                channels(res // 2),
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=res >= fp16_from,
                **(block_kwargs or {}),
                **common,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0,
                c_dim=c_dim,
                w_dim=cmap_dim,
                num_ws=None,
                w_avg_beta=None,
                **(mapping_kwargs or {}),
            )
        self.b4 = DiscriminatorEpilogue(
            channels(4), cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}), **common
        )

    def forward(
        self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = False
    ) -> torch.Tensor:
        """img: (B, img_channels, R, R) in [-1, 1], c: (B, c_dim) one-hot → logits (B, 1)."""
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def to_config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-able dict."""
        return jsonable(self._config)

    @property
    def config(self) -> dict[str, Any]:
        """Same as :meth:`to_config`."""
        return self.to_config()


def save_discriminator(
    D: Discriminator, path: str | Path, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``D`` atomically (kind ``stylegan2.discriminator``)."""
    return save_checkpoint(path, D.state_dict(), DISCRIMINATOR_KIND, D.to_config(), extra=extra)


def load_discriminator(path: str | Path, device: str | torch.device = "cpu") -> Discriminator:
    """Rebuild a discriminator saved by :func:`save_discriminator`; eval mode, frozen."""
    tensors, config, _ = load_checkpoint(path, kind=DISCRIMINATOR_KIND)
    D = build_from_checkpoint(Discriminator, config, tensors, path)
    return D.eval().requires_grad_(False).to(device)
