"""Concept relevance (METHOD.md §3) and the rules that pick which concepts to show.

Per image, r_k(x) = α_k / max_l |α_l| with α_k = a_k(x) · Θ_W[ĉ, k] (computed by
:meth:`Viscoin.relevance`); over a dataset, r_{k,c} is the mean of r_k(x) over the images g predicts
as c. Amplification and heatmaps select concepts by a relevance threshold, top-k, or explicit indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from viscoin.errors import UserError
from viscoin.models.viscoin import Viscoin

DEFAULT_THRESHOLD = 0.2


@torch.no_grad()
def image_relevance(model: Viscoin, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """r(x) for a batch: images (B, 3, R, R) in [−1, 1] → ``(relevance (B, K), predicted ĉ (B,))``."""
    out = model(images)
    return model.relevance(out), out.g_logits.argmax(dim=1)


def class_concept_relevance(
    relevance: np.ndarray | torch.Tensor,
    predicted: np.ndarray | torch.Tensor,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """r_{k,c}: mean relevance of concept k over the images predicted as class c.

    ``relevance`` (N, K), ``predicted`` (N,) class indices → ``(matrix (C, K), counts (C,))``.
    Classes that no image is predicted as get a row of zeros (and count 0).
    """
    relevance = _numpy(relevance).astype(np.float64)
    predicted = _numpy(predicted).astype(np.int64)
    sums = np.zeros((n_classes, relevance.shape[1]))
    np.add.at(sums, predicted, relevance)
    counts = np.bincount(predicted, minlength=n_classes)[:n_classes]
    matrix = sums / np.maximum(counts, 1)[:, None]
    return matrix.astype(np.float32), counts


def check_concept_indices(indices: Sequence[int], n_concepts: int) -> list[int]:
    """Explicit concept indices, checked against K; a :class:`UserError` names a bad one."""
    indices = [int(i) for i in indices]
    if not indices:
        raise UserError("no concept index given. Pass e.g. --concepts 3,17.")
    for i in indices:
        if not 0 <= i < n_concepts:
            raise UserError(
                f"concept index {i} is out of range: this model has {n_concepts} concepts "
                f"(0..{n_concepts - 1})."
            )
    return list(dict.fromkeys(indices))  # drop repeats, keep the order given


def select_concepts(
    relevance: torch.Tensor,
    threshold: float | None = None,
    top_k: int | None = None,
    concepts: Sequence[int] | None = None,
) -> list[list[int]]:
    """Which concepts to show for each image, most relevant first.

    Exactly one rule (if none is given, ``threshold=0.2``):

    * ``threshold``: concepts with r_k(x) > threshold;
    * ``top_k``: the k concepts of highest r_k(x) (whatever their sign);
    * ``concepts``: the same explicit indices for every image (in the order given).

    ``relevance`` (B, K) → B lists of concept indices (possibly empty with a threshold).
    """
    given = sum(rule is not None for rule in (threshold, top_k, concepts))
    if given > 1:
        raise UserError("choose one concept selection: a threshold, a top-k, or explicit indices.")
    n_images, n_concepts = relevance.shape
    if concepts is not None:
        chosen = check_concept_indices(concepts, n_concepts)
        return [list(chosen) for _ in range(n_images)]
    order = relevance.argsort(dim=1, descending=True, stable=True)
    if top_k is not None:
        if top_k < 1:
            raise UserError(f"--top-k must be at least 1, got {top_k}.")
        return order[:, : min(top_k, n_concepts)].tolist()
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    return [[k for k in row if relevance[b, k] > threshold] for b, row in enumerate(order.tolist())]


def selection_mask(selected: Sequence[Sequence[int]], n_concepts: int) -> torch.Tensor:
    """Per-image concept lists → a (B, K) boolean mask (what :meth:`Viscoin.amplify` takes)."""
    mask = torch.zeros(len(selected), n_concepts, dtype=torch.bool)
    for b, row in enumerate(selected):
        mask[b, list(row)] = True
    return mask


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
