"""Θ, the interpretable output head: g(x) = Linear(maxpool₃ₓ₃(Φ(x))).

Each concept map is reduced to one activation a_k(x) by a max-pool; the prediction is linear in
those activations, which is what makes relevance α_k = a_k · Θ_W[c, k] meaningful.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ConceptHead(nn.Module):
    """Θ: concept maps (B, K, 3, 3) → ``(logits (B, classes), activations a (B, K))``."""

    def __init__(self, n_concepts: int, num_classes: int, dropout: float = 0.01) -> None:
        super().__init__()
        self.n_concepts = n_concepts
        self.num_classes = num_classes
        self.dropout_p = dropout
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(n_concepts, num_classes)

    @staticmethod
    def activations(concept_maps: torch.Tensor) -> torch.Tensor:
        """a(x): max over each 3×3 concept map, (B, K, 3, 3) → (B, K).

        ``max`` routes the gradient through the index it found. (``amax``'s backward finds the
        maximum again by comparing values; compiled in bf16 after dropout, the recomputed values
        matched none, and the gradient was 0/0.)
        """
        return concept_maps.flatten(2).max(dim=-1).values

    def forward(
        self, concept_maps: torch.Tensor, dropout_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``dropout_mask`` (B, K, 3, 3), 0 or 1/(1 − p), replaces the dropout's own draw in
        training: the trainer draws it per image from (seed, step, image index), so one process
        and N processes drop the same values. Eval mode drops nothing, with or without it."""
        if dropout_mask is not None and self.training:
            dropped = concept_maps * dropout_mask.to(concept_maps.dtype)
        else:
            dropped = self.dropout(concept_maps)
        activations = self.activations(dropped)
        return self.linear(activations), activations

    def config(self) -> dict[str, Any]:
        return {
            "n_concepts": self.n_concepts,
            "num_classes": self.num_classes,
            "dropout": self.dropout_p,
        }
