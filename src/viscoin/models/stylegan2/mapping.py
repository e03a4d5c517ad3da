"""StyleGAN2 mapping network: latent z (and class label c) → intermediate latents w.

The generator broadcasts w to ``num_ws`` rows (W+); the discriminator reuses this network with
no z to embed its class label. ``w_avg`` tracks the mean w for truncation (and is VisCoIN's w̄).
"""

from __future__ import annotations

import torch
from torch import nn

from viscoin.models.stylegan2.layers import FullyConnectedLayer
from viscoin.models.stylegan2.ops import normalize_2nd_moment


class MappingNetwork(nn.Module):
    """``num_layers`` equalised-lr dense layers (lrelu, lr multiplier 0.01) on normalised [z, embed(c)]."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx],
                features[idx + 1],
                activation=activation,
                lr_multiplier=lr_multiplier,
            )
            setattr(self, f"fc{idx}", layer)

        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """z: (B, z_dim), c: (B, c_dim) one-hot → ws (B, num_ws, w_dim), or (B, w_dim) if num_ws is None.

        Truncation moves w towards ``w_avg``: ``w_avg + psi (w - w_avg)``, on the first
        ``truncation_cutoff`` rows only if a cutoff is given. ``update_emas`` (training) moves
        ``w_avg`` towards this batch's mean w with decay ``w_avg_beta``.
        """
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x
