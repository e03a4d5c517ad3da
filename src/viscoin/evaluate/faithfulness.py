"""Faithfulness (METHOD.md §4): does removing the relevant concepts change the prediction?

For an image x with predicted class ĉ = argmax g(x), remove (zero) every concept with relevance
r_k(x) > τ and regenerate x_rem; FF_x = p_ĉ(x̃) − p_ĉ(x_rem), probabilities from f (and from g) on
the generated images. The random baseline removes as many concepts, chosen at random.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from viscoin.models.viscoin import Viscoin


def _probability(
    model: Viscoin, images: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """p_ĉ under f and under g for generated images (B, 3, R, R) → two (B,) tensors."""
    out = model(images)
    rows = torch.arange(images.shape[0], device=images.device)
    p_f = out.f_logits.float().softmax(1)[rows, classes]
    p_g = out.g_logits.float().softmax(1)[rows, classes]
    return p_f, p_g


@torch.no_grad()
def faithfulness_scores(
    model: Viscoin,
    batches: Iterable[torch.Tensor],
    thresholds: Sequence[float] = (0.1, 0.2, 0.4),
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, np.ndarray]:
    """Per-image FF values. Keys ``ff_f@τ``, ``ff_g@τ``, ``random_f@τ``, ``random_g@τ`` → (N,)
    arrays, and ``removed@τ`` (N,) with the number of concepts removed."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    scores: dict[str, list[torch.Tensor]] = {}
    for images in batches:
        images = images.to(device)
        out = model(images)
        relevance = model.relevance(out)
        predicted = out.g_logits.argmax(1)
        base_f, base_g = _probability(model, model.decode(out.concept_maps, out.support), predicted)
        for tau in thresholds:
            remove = relevance > tau
            counts = remove.sum(1)
            random_remove = _random_mask(counts, model.n_concepts, gen).to(images.device)
            for name, mask in (("ff", remove), ("random", random_remove)):
                maps = out.concept_maps * (~mask)[:, :, None, None]
                p_f, p_g = _probability(model, model.decode(maps, out.support), predicted)
                scores.setdefault(f"{name}_f@{tau}", []).append((base_f - p_f).cpu())
                scores.setdefault(f"{name}_g@{tau}", []).append((base_g - p_g).cpu())
            scores.setdefault(f"removed@{tau}", []).append(counts.cpu().float())
    return {k: torch.cat(v).numpy() for k, v in scores.items()}


def _random_mask(counts: torch.Tensor, n_concepts: int, gen: torch.Generator) -> torch.Tensor:
    """For each row, ``counts[i]`` distinct random concepts set to True. (B,) → (B, K) bool."""
    order = torch.rand(counts.shape[0], n_concepts, generator=gen).argsort(dim=1)
    ranks = order.argsort(dim=1)  # rank of each concept in a random order
    return ranks < counts.cpu()[:, None]


def summarise_faithfulness(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Medians over images (the paper's statistic), means, and the mean number of removed concepts.

    The means matter for the random baseline: removing a few random concepts of many leaves most
    images' prediction untouched, so its median is often exactly 0 while its mean is not.
    """
    summary = {}
    for key, values in scores.items():
        if not key.startswith("removed@"):
            summary[f"median_{key}"] = float(np.median(values))
        summary[f"mean_{key}"] = float(np.mean(values))
    return summary
