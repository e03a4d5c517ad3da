"""Consistency (METHOD.md §4): does a concept change images the same way whatever the image?

For concept k: take the 3×3 map φ_k of the test image where a_k is highest, and for every evaluated
image x generate x⁺ with φ_k := λ·(that map) (λ = 4) and x⁻ with φ_k := 0, Φ' fixed. A binary
probe (logistic regression on the frozen classifier's pooled features of the generated images)
learns to tell x⁺ from x⁻ on half of the images; its accuracy on the other half is the concept's
consistency. A concept with a consistent visual effect scores near 1, an inert one near 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from viscoin.models.viscoin import Viscoin


def _features(model: Viscoin, images: torch.Tensor) -> torch.Tensor:
    _, maps = model.classifier.forward_features(images)
    return maps[-1].float().mean(dim=(2, 3))


def train_probe(
    x_train: torch.Tensor, y_train: torch.Tensor, steps: int = 200, weight_decay: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logistic regression (full-batch L-BFGS) on standardised features.

    Returns ``(weight, bias, mean, std)`` so that p = σ(((x − mean)/std)·w + b).
    """
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x = (x_train - mean) / std
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (
            F.binary_cross_entropy_with_logits(x @ w + b, y_train.float())
            + weight_decay * w.square().sum()
        )
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def probe_accuracy(probe: tuple[torch.Tensor, ...], x: torch.Tensor, y: torch.Tensor) -> float:
    w, b, mean, std = probe
    return (((((x - mean) / std) @ w + b) > 0).long() == y.long()).float().mean().item()


@torch.no_grad()
def concept_consistency(
    model: Viscoin,
    images: torch.Tensor,
    concepts: Sequence[int],
    multiplier: float = 4.0,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[int, float]:
    """Held-out probe accuracy per concept. ``images`` (N, 3, R, R), N ≥ 4, on the model's device."""
    model.eval()
    outs = [model(chunk) for chunk in images.split(batch_size)]
    concept_maps = torch.cat([o.concept_maps for o in outs])
    support = torch.cat([o.support for o in outs])
    activations = torch.cat([o.activations for o in outs])
    n = images.shape[0]
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    train_idx, test_idx = order[: n // 2], order[n // 2 :]
    result = {}
    for k in concepts:
        peak = concept_maps[activations[:, k].argmax(), k]  # (3, 3)
        feats = {}
        for sign, value in (("plus", multiplier * peak), ("minus", torch.zeros_like(peak))):
            chunks = []
            for start in range(0, n, batch_size):
                maps = concept_maps[start : start + batch_size].clone()
                maps[:, k] = value
                generated = model.decode(maps, support[start : start + batch_size])
                chunks.append(_features(model, generated).cpu())
            feats[sign] = torch.cat(chunks)
        x_train = torch.cat([feats["plus"][train_idx], feats["minus"][train_idx]])
        y_train = torch.cat([torch.ones(len(train_idx)), torch.zeros(len(train_idx))])
        x_test = torch.cat([feats["plus"][test_idx], feats["minus"][test_idx]])
        y_test = torch.cat([torch.ones(len(test_idx)), torch.zeros(len(test_idx))])
        result[int(k)] = probe_accuracy(train_probe(x_train, y_train), x_test, y_test)
    return result


def summarise_consistency(per_concept: dict[int, float]) -> dict[str, float]:
    values = np.array(list(per_concept.values()), dtype=float)
    return {
        "consistency_mean": float(values.mean()) if len(values) else float("nan"),
        "consistency_std": float(values.std()) if len(values) else float("nan"),
        "consistency_concepts": len(values),
    }
