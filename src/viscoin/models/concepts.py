"""Ψ, the concept extractor: classifier stage maps → concept maps Φ(x) and support Φ'(x).

Φ(x) (B, K, 3, 3) ≥ 0 is the concept dictionary the head predicts through; Φ'(x) (B, 9K) ≥ 0 only
helps the translator reconstruct the image. Architecture from METHOD.md §1; the strides of the
input convolutions are derived from the map sizes, so any ResNet and input resolution work.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _reducing_conv(in_channels: int, out_channels: int, in_size: int, out_size: int) -> nn.Conv2d:
    """Conv bringing an ``in_size`` map to ``out_size``: k5/s4 for ×4, k3/s2 for ×2, k3/s1 for ×1."""
    stride = max(1, in_size // max(out_size, 1))
    kernel = stride + 1 if stride > 1 else 3
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2)


class ConceptExtractor(nn.Module):
    """Ψ: three stage maps → ``(concept_maps Φ (B, K, 3, 3), support Φ' (B, 9K))``."""

    def __init__(
        self,
        in_channels: tuple[int, int, int] | list[int],
        in_sizes: tuple[int, int, int] | list[int],
        n_concepts: int = 256,
        channels: int = 512,
    ) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        self.in_sizes = [int(s) for s in in_sizes]
        self.n_concepts = n_concepts
        self.channels = channels
        out_size = self.in_sizes[-1]
        self.inputs = nn.ModuleList(
            _reducing_conv(c, channels, s, out_size)
            for c, s in zip(self.in_channels, self.in_sizes, strict=True)
        )
        self.mix = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1)
        self.to_concepts = nn.Conv2d(
            3 * channels, n_concepts, 1
        )  # its weight is what L_orth acts on
        self.support = nn.Sequential(
            nn.Linear(27 * channels, 9 * n_concepts),
            nn.ReLU(),
            nn.Linear(9 * n_concepts, 9 * n_concepts, bias=False),
            nn.ReLU(),
        )

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``maps``: the classifier's stage 2-4 outputs → Φ (B, K, 3, 3), Φ' (B, 9K)."""
        size = maps[-1].shape[-2:]
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
        """The 1×1 conv weight of branch Φ as a (K, 3C) matrix."""
        return self.to_concepts.weight.flatten(1)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "in_sizes": self.in_sizes,
            "n_concepts": self.n_concepts,
            "channels": self.channels,
        }
