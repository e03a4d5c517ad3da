"""StyleGAN2 layers: equalised-learning-rate dense and conv layers, the style-modulated synthesis
layer, toRGB and the discriminator's minibatch standard deviation.

Weights are stored as N(0, 1) and scaled at run time by ``lr_multiplier / sqrt(fan_in)``
("equalised learning rate"); parameter and buffer names are those of the official release, so its
state dicts load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from viscoin.models.stylegan2.ops import (
    activation_gain,
    bias_act,
    conv2d_resample,
    modulated_conv2d,
    setup_filter,
)

DEFAULT_FILTER = (1, 3, 3, 1)


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: ``act(x @ (W·g)ᵀ + b·lr_multiplier)``.

    ``g = lr_multiplier / sqrt(in_features)``; weights start at N(0, 1/lr_multiplier²) so the
    effective weights start at N(0, 1/in_features) and move ``lr_multiplier`` times slower.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) → (B, out_features)."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution with optional FIR up/downsampling, bias, activation and clamp.

    Used by the discriminator (fromrgb, conv0/conv1, skip) and the resnet generator's skips.
    ``trainable=False`` stores weight and bias as buffers (frozen layers), under the same names.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = activation_gain(activation)

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        weight = weight.to(memory_format=memory_format)
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias_value) if bias_value is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_value)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """(B, I, H, W) → (B, O, H*up/down, W*up/down); ``gain`` scales the output and the clamp."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),  # both are the same layer; this choice is slightly faster
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    """One 3×3 modulated convolution of the synthesis network, with noise, bias and lrelu.

    ``affine`` maps w (w_dim) to the per-input-channel styles (bias starts at 1, so styles start
    near 1). Noise is ``noise_strength`` times a fresh N(0, 1) image (``random``), the stored
    ``noise_const`` image (``const``) or nothing (``none``). A caller that must reproduce the
    random noise (training, seeded per step and image) passes the N(0, 1) draw itself as ``noise``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = activation_gain(activation)

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = nn.Parameter(weight.to(memory_format=memory_format))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1.0,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, I, R/up, R/up), w: (B, w_dim) → (B, O, R, R).

        ``noise``: the N(0, 1) image (B, 1, R, R) to use in ``random`` mode instead of a fresh draw.
        """
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, not {noise_mode!r}")
        if noise is not None and noise_mode != "random":
            raise ValueError(f"explicit noise needs noise_mode='random', not {noise_mode!r}")
        styles = self.affine(w)

        if self.use_noise and noise_mode == "random":
            if noise is None:
                noise = torch.randn(
                    [x.shape[0], 1, self.resolution, self.resolution], device=x.device
                )
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        else:
            noise = None

        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(
            x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp
        )


class ToRGBLayer(nn.Module):
    """1×1 modulated convolution to image channels, *without* demodulation, plus bias.

    The styles are scaled by ``1 / sqrt(in_channels)`` (the equalised-lr gain of a 1×1 kernel).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = nn.Parameter(weight.to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        """x: (B, I, R, R), w: (B, w_dim) → (B, img_channels, R, R)."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class MinibatchStdLayer(nn.Module):
    """Appends the per-group standard deviation of the features as extra channels.

    The batch is split into groups of ``group_size`` samples and the channels into
    ``num_channels`` parts; each part's std over its group, averaged over channels and pixels,
    becomes one constant feature map. This lets the discriminator see batch-level variety.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, C + num_channels, H, W); N must be a multiple of the group size."""
        n, c, h, w = x.shape
        group = min(self.group_size, n) if self.group_size is not None else n
        parts = self.num_channels
        y = x.reshape(group, -1, parts, c // parts, h, w)  # (G, n, F, c, H, W)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # std over the group: (n, F, c, H, W)
        y = y.mean(dim=[2, 3, 4]).reshape(-1, parts, 1, 1)  # (n, F, 1, 1)
        y = y.repeat(group, 1, h, w)  # (N, F, H, W)
        return torch.cat([x, y], dim=1)
