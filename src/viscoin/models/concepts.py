"""Ψ, the concept extractor: classifier feature maps → concept maps Φ(x) and support Φ'(x).

Φ(x) (B, K, 3, 3) ≥ 0 is the concept dictionary the head predicts through; Φ'(x) (B, 9K) ≥ 0 only
helps the translator reconstruct the image. Architecture from METHOD.md §1, for any number of input
maps of any channel counts and sizes (three ResNet stages in the paper): each map is brought to
the size of the smallest by a convolution whose stride is derived from the size ratio, so any
classifier and input resolution work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Size = int | tuple[int, int] | list[int]


def _pair(size: Size) -> tuple[int, int]:
    """A square size ``s`` or ``(h, w)`` → ``(h, w)``."""
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def _reducing_conv(in_channels: int, out_channels: int, in_size: Size, out_size: Size) -> nn.Conv2d:
    """Conv bringing an ``in_size`` map to ``out_size``, per axis: k5/s4 for ×4, k3/s2 for ×2,
    k3/s1 for ×1 (k = s + 1 for any ratio s ≥ 2)."""
    strides = tuple(
        max(1, i // max(o, 1)) for i, o in zip(_pair(in_size), _pair(out_size), strict=True)
    )
    kernels = tuple(s + 1 if s > 1 else 3 for s in strides)
    if strides[0] == strides[1]:  # square: int kernel and stride, as ever
        strides, kernels = strides[0], kernels[0]
        padding = (kernels - 1) // 2
    else:
        padding = tuple((k - 1) // 2 for k in kernels)
    return nn.Conv2d(in_channels, out_channels, kernels, stride=strides, padding=padding)


class ConceptExtractor(nn.Module):
    """Ψ: L feature maps (B, C_i, H_i, W_i) → ``(concept_maps Φ (B, K, 3, 3), support Φ' (B, 9K))``.

    ``in_channels``: C_i; ``in_sizes``: H_i = W_i, or (H_i, W_i). Each map goes through its own
    convolution to ``channels`` channels at the smallest size; the L branches are concatenated
    (L · channels) and mixed.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_sizes: Sequence[Size],
        n_concepts: int = 256,
        channels: int = 512,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_sizes) or not in_channels:
            raise ValueError(
                f"in_channels {list(in_channels)} and in_sizes {list(in_sizes)} need one entry per map"
            )
        self.in_channels = [int(c) for c in in_channels]
        self.in_sizes = [s if isinstance(s, int) else [int(v) for v in s] for s in in_sizes]
        self.n_concepts = n_concepts
        self.channels = channels
        pairs = [_pair(s) for s in self.in_sizes]
        out_size = (min(h for h, _ in pairs), min(w for _, w in pairs))
        self.inputs = nn.ModuleList(
            _reducing_conv(c, channels, s, out_size)
            for c, s in zip(self.in_channels, self.in_sizes, strict=True)
        )
        width = len(self.in_channels) * channels
        self.mix = nn.Conv2d(width, width, 3, padding=1)
        self.to_concepts = nn.Conv2d(width, n_concepts, 1)  # its weight is what L_orth acts on
        self.support = nn.Sequential(
            nn.Linear(9 * width, 9 * n_concepts),
            nn.ReLU(),
            nn.Linear(9 * n_concepts, 9 * n_concepts, bias=False),
            nn.ReLU(),
        )

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``maps``: the classifier's feature maps, in ``in_channels`` order → Φ (B, K, 3, 3),
        Φ' (B, 9K)."""
        size = (min(m.shape[-2] for m in maps), min(m.shape[-1] for m in maps))
        branches = []
        for conv, feature_map in zip(self.inputs, maps, strict=True):
            out = conv(feature_map)
            if out.shape[-2:] != size:  # sizes that are not exact multiples
                out = F.adaptive_avg_pool2d(out, size)
            branches.append(F.relu(out))
        mixed = F.relu(self.mix(torch.cat(branches, dim=1)))
        concept_maps = F.adaptive_avg_pool2d(F.relu(self.to_concepts(mixed)), 3)
        support = self.support(torch.flatten(F.adaptive_avg_pool2d(mixed, 3), 1))
        return concept_maps, support

    @property
    def concept_weight(self) -> torch.Tensor:
        """The 1×1 conv weight of branch Φ as a (K, L·C) matrix."""
        return self.to_concepts.weight.flatten(1)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "in_sizes": self.in_sizes,
            "n_concepts": self.n_concepts,
            "channels": self.channels,
        }
