"""Ω, the concept translator: (Φ, Φ') → w⁺ ∈ R^{num_ws × w_dim}, the input of StyleGAN2's synthesis.

One small MLP per W⁺ row, built from StyleGAN's equalised-learning-rate fully-connected layer
(lr multiplier 0.01, leaky-ReLU 0.2 with gain √2 after every layer, the last one included, as in
the paper; ``linear_output`` leaves the last layer linear). Rows ``coarse``..``mid`` read the
flattened concept maps Φ, the others read the support Φ'. The output is an offset added to w̄, the
pretrained mapping network's ``w_avg`` (a frozen buffer, saved with the model).

Inputs are scaled per image by their root mean square (the paper). With ``input_norm="batch"``
the support Φ' is standardised per feature instead (BatchNorm without affine parameters: batch
statistics in training, running ones in eval mode, saved with the model). In training Φ' tends to
grow a large part shared by every image, and the per-image scaling then shrinks its image-to-image
variation to almost nothing: the rows that read Φ' stop depending on the image. The concept maps
keep the per-image scaling: they carry the sparsity penalty, which a scale-free reader would let
shrink them to nothing.

Interventions (amplifying or removing concepts) pass the unmodified Φ(x) as ``reference``: the
per-image RMS is then taken from it, so multiplying φ_k by λ changes only concept k's share of Ω's
input. Recomputing the RMS from the modified maps (the paper's literal reading, ``reference=None``)
rescales every other concept too — with λ = 4 on a strong concept the others fall to about a
third — and the image changes globally whichever concept was touched.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

INPUT_NORMS = ("second_moment", "batch")


def default_mid(num_ws: int) -> int:
    """Last W⁺ row fed by Φ: 10 at 256 px (num_ws = 14), num_ws − 4 in general."""
    return max(0, num_ws - 4)


class RowwiseEqualizedLinear(nn.Module):
    """``rows`` independent equalised-lr linear layers applied at once.

    Input (B, rows, in) → output (B, rows, out). Parameters are stored divided by the lr multiplier
    and rescaled at run time, as StyleGAN does, so Adam's effective step is multiplied by it.
    """

    def __init__(
        self,
        rows: int,
        in_features: int,
        out_features: int,
        lr_multiplier: float = 0.01,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(rows, out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(rows, out_features))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (
            torch.einsum("bri,roi->bro", x, self.weight * self.weight_gain)
            + self.bias * self.bias_gain
        )
        if self.activation:
            out = F.leaky_relu(out, 0.2) * math.sqrt(2)
        return out


def normalize_2nd_moment(
    x: torch.Tensor, eps: float = 1e-8, reference: torch.Tensor | None = None
) -> torch.Tensor:
    """x / sqrt(mean(r²) + eps) over the last dimension, with r = ``reference`` (same shape as x)
    when given, else r = x."""
    r = x if reference is None else reference
    return x * (r.square().mean(dim=-1, keepdim=True) + eps).rsqrt()


class ConceptTranslator(nn.Module):
    """Ω: ``(concept_maps (B, K, 3, 3), support (B, 9K))`` → w⁺ (B, num_ws, w_dim)."""

    def __init__(
        self,
        n_concepts: int,
        num_ws: int,
        w_dim: int,
        coarse: int = 2,
        mid: int | None = None,
        layers: int = 1,
        lr_multiplier: float = 0.01,
        w_avg: torch.Tensor | None = None,
        linear_output: bool = False,
        input_norm: str = "second_moment",
    ) -> None:
        super().__init__()
        mid = default_mid(num_ws) if mid is None else mid
        if not 0 <= coarse <= mid < num_ws:
            raise ValueError(f"need 0 <= coarse ({coarse}) <= mid ({mid}) < num_ws ({num_ws})")
        self.n_concepts, self.num_ws, self.w_dim = n_concepts, num_ws, w_dim
        self.coarse, self.mid, self.layers, self.lr_multiplier = coarse, mid, layers, lr_multiplier
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, not {input_norm!r}")
        self.linear_output, self.input_norm = linear_output, input_norm
        in_features = 9 * n_concepts
        if input_norm == "batch":
            # Φ' standardised per feature (batch statistics in training, running ones in eval)
            self.support_norm = nn.BatchNorm1d(in_features, affine=False)
        dims = [in_features] + [w_dim] * layers
        self.net = nn.ModuleList(
            RowwiseEqualizedLinear(
                num_ws,
                dims[i],
                dims[i + 1],
                lr_multiplier,
                activation=not (linear_output and i == layers - 1),
            )
            for i in range(layers)
        )
        rows = torch.arange(num_ws)
        self.register_buffer("reads_concepts", (rows >= coarse) & (rows <= mid), persistent=False)
        self.register_buffer(
            "w_avg", torch.zeros(w_dim) if w_avg is None else w_avg.detach().clone().float()
        )

    def forward(
        self,
        concept_maps: torch.Tensor,
        support: torch.Tensor,
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Φ (B, K, 3, 3), Φ' (B, 9K) → w⁺ (B, num_ws, w_dim).

        ``reference`` (B, K, 3, 3): the unmodified Φ(x) when ``concept_maps`` is an intervention on
        it; the concept input's per-image scale is then taken from the reference (module docstring).
        """
        ref = None if reference is None else reference.flatten(1)
        concepts = normalize_2nd_moment(concept_maps.flatten(1), reference=ref)
        if self.input_norm == "batch":
            support = self.support_norm(support.float())
        else:
            support = normalize_2nd_moment(support)
        x = torch.where(self.reads_concepts[None, :, None], concepts[:, None], support[:, None])
        for layer in self.net:
            x = layer(x)
        return x + self.w_avg

    def config(self) -> dict[str, Any]:
        return {
            "n_concepts": self.n_concepts,
            "num_ws": self.num_ws,
            "w_dim": self.w_dim,
            "coarse": self.coarse,
            "mid": self.mid,
            "layers": self.layers,
            "lr_multiplier": self.lr_multiplier,
            "linear_output": self.linear_output,
            "input_norm": self.input_norm,
        }
