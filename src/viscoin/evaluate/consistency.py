"""Consistency (METHOD.md §4): does a concept change images the same way whatever the image?

For concept k: take the 3×3 map φ_k of the test image where a_k is highest, and for every evaluated
image x generate x⁺ with φ_k := λ·(that map) and x⁻ with φ_k := 0, Φ' fixed. A binary probe
(logistic regression on the frozen classifier's pooled features of the generated images) learns to
tell x⁺ from x⁻ on half of the images; its accuracy on the other half is the concept's consistency.
The paper sets φ_k "very high" (λ = 4); the default here is λ = 1, the concept at its strongest in
the test images. Above that x⁺ leaves the range the generator was trained on, and on the shapes
demo the probe then tells almost any direction's x⁺ from x⁻ (BENCHMARKS.md, "Consistency and its
nulls").

Three nulls go with it. *Shuffled labels*: the same probe, trained and tested with the x⁺/x⁻ labels
swapped at random per pair, scores what chance gives on this many images (≈ 0.5 with its spread).
*A concept Ω does not read*: the same intervention with Ω's weights for concept k set to zero. Under
the ``isolated`` intervention its images are identical and the probe scores 0.5; under ``literal``
the intervention still rescales every other concept, and the probe separates "big global change"
from "none" — a high score there means the probe is not measuring concept k at all. *A random
direction*: the same intervention, with Ω reading concept k through random weights of the same
size (per W⁺ row, the Frobenius norm of its nine columns). In StyleGAN's W space any fixed direction
changes every image in the same recognisable way, so a concept of an untrained Ω — which is a random
direction — is consistent too; what a trained concept can claim is to be *more* consistent than an
arbitrary direction of its strength, the ``excess_direction``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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


def pair_accuracy(
    plus: torch.Tensor, minus: torch.Tensor, train_idx: torch.Tensor, test_idx: torch.Tensor,
    flip: torch.Tensor | None = None,
) -> float:  # fmt: skip
    """Held-out accuracy of a probe telling ``plus`` (N, D) from ``minus`` (N, D) features, trained
    on the pairs ``train_idx`` and tested on ``test_idx``. ``flip`` (N,) bool swaps the labels of
    a pair (the shuffled-label null)."""
    flip = torch.zeros(plus.shape[0], dtype=torch.bool) if flip is None else flip

    def split(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([plus[idx], minus[idx]])
        y = torch.cat([(~flip[idx]).float(), flip[idx].float()])
        return x, y

    x_train, y_train = split(train_idx)
    x_test, y_test = split(test_idx)
    return probe_accuracy(train_probe(x_train, y_train), x_test, y_test)


@contextmanager
def concept_unread(model: Viscoin, concept: int) -> Iterator[None]:
    """Within the block, Ω does not read concept ``concept``: the first layer's weights on its nine
    inputs, in the rows that read Φ, are zero (restored afterwards)."""
    translator = model.core.translator
    weight = translator.net[0].weight  # (rows, out, 9K)
    rows = translator.reads_concepts.nonzero().flatten()
    cols = slice(9 * concept, 9 * concept + 9)
    saved = weight.data[rows, :, cols].clone()
    weight.data[rows, :, cols] = 0
    try:
        yield
    finally:
        weight.data[rows, :, cols] = saved


@contextmanager
def concept_redirected(model: Viscoin, concept: int, gen: torch.Generator) -> Iterator[None]:
    """Within the block, Ω reads concept ``concept`` through random weights: in each row that reads
    Φ, its nine first-layer columns are replaced by Gaussian noise scaled to their Frobenius norm
    (restored afterwards)."""
    translator = model.core.translator
    weight = translator.net[0].weight  # (rows, out, 9K)
    rows = translator.reads_concepts.nonzero().flatten()
    cols = slice(9 * concept, 9 * concept + 9)
    saved = weight.data[rows, :, cols].clone()
    noise = torch.randn(saved.shape, generator=gen, dtype=torch.float64)
    norms = saved.double().flatten(1).norm(dim=1).cpu()
    noise *= (norms / noise.flatten(1).norm(dim=1).clamp_min(1e-30))[:, None, None]
    weight.data[rows, :, cols] = noise.to(weight.dtype).to(weight.device)
    try:
        yield
    finally:
        weight.data[rows, :, cols] = saved


@torch.no_grad()
def _intervened_features(
    model: Viscoin, outs: list, k: int, value: torch.Tensor, intervention: str
) -> torch.Tensor:
    """Classifier features of every image regenerated with φ_k := ``value`` (3, 3). → (N, D)."""
    chunks = []
    for out in outs:
        maps = out.concept_maps.clone()
        maps[:, k] = value
        chunks.append(_features(model, model.decode_intervention(maps, out, intervention)).cpu())
    return torch.cat(chunks)


@torch.no_grad()
def concept_consistency(
    model: Viscoin,
    images: torch.Tensor,
    concepts: Sequence[int],
    multiplier: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    intervention: str = "isolated",
    shuffles: int = 5,
    unread_concepts: Sequence[int] = (),
    directions: int = 0,
    progress: bool = False,
) -> dict[int, dict[str, float]]:
    """Per concept: ``accuracy`` (held-out probe accuracy), ``null`` (mean over ``shuffles``
    shuffled-label probes), ``null_max`` (their highest), ``excess`` (accuracy − null); with
    ``directions`` > 0, ``direction`` (mean over that many random directions of the concept's
    strength, :func:`concept_redirected`), ``direction_max`` and ``excess_direction`` (accuracy −
    direction); and for the concepts in ``unread_concepts``, ``unread`` (the probe with Ω not
    reading the concept). ``images`` (N, 3, R, R), N ≥ 4, on the model's device; the direction
    null needs a real :class:`Viscoin` (it rewrites Ω's weights for the duration)."""
    model.eval()
    outs = [model(chunk) for chunk in images.split(batch_size)]
    concept_maps = torch.cat([o.concept_maps for o in outs])
    activations = torch.cat([o.activations for o in outs])
    n = images.shape[0]
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    train_idx, test_idx = order[: n // 2], order[n // 2 :]
    flips = [torch.rand(n, generator=gen) < 0.5 for _ in range(shuffles)]
    direction_gen = torch.Generator().manual_seed(seed + 1)
    result: dict[int, dict[str, float]] = {}
    from tqdm import tqdm

    for k in tqdm(concepts, desc="consistency", disable=not progress, dynamic_ncols=True):
        k = int(k)
        peak = concept_maps[activations[:, k].argmax(), k]  # (3, 3)
        values = (multiplier * peak, torch.zeros_like(peak))

        def features(k: int = k, values: tuple = values) -> tuple[torch.Tensor, torch.Tensor]:
            return tuple(_intervened_features(model, outs, k, v, intervention) for v in values)

        plus, minus = features()
        accuracy = pair_accuracy(plus, minus, train_idx, test_idx)
        nulls = [pair_accuracy(plus, minus, train_idx, test_idx, flip) for flip in flips]
        entry = {"accuracy": accuracy}
        if nulls:
            entry.update(
                null=float(np.mean(nulls)), null_max=float(np.max(nulls)),
                excess=accuracy - float(np.mean(nulls)),
            )  # fmt: skip
        if directions > 0:
            # φ_k = 0 reads the same through any weights: only x⁺ is regenerated
            scores = []
            for _ in range(directions):
                with concept_redirected(model, k, direction_gen):
                    redirected = _intervened_features(model, outs, k, values[0], intervention)
                scores.append(pair_accuracy(redirected, minus, train_idx, test_idx))
            entry.update(
                direction=float(np.mean(scores)), direction_max=float(np.max(scores)),
                excess_direction=accuracy - float(np.mean(scores)),
            )  # fmt: skip
        if k in unread_concepts:
            with concept_unread(model, k):
                entry["unread"] = pair_accuracy(*features(), train_idx, test_idx)
        result[k] = entry
    return result


def summarise_consistency(per_concept: dict[int, dict[str, float]]) -> dict[str, Any]:
    """Mean and std of each per-concept value over the concepts (``consistency_mean`` /
    ``consistency_std`` for the accuracy, ``null_mean``, ``excess_mean``, ``unread_mean``, ...)."""
    summary: dict[str, Any] = {"consistency_concepts": len(per_concept)}
    names = {name for entry in per_concept.values() for name in entry}
    for name in sorted(names):
        values = np.array([e[name] for e in per_concept.values() if name in e], dtype=float)
        label = "consistency" if name == "accuracy" else name
        summary[f"{label}_mean"] = float(values.mean()) if len(values) else float("nan")
        summary[f"{label}_std"] = float(values.std()) if len(values) else float("nan")
    return summary
