"""Faithfulness (METHOD.md §4): does removing the relevant concepts change the prediction?

For an image x with predicted class ĉ = argmax g(x), remove (zero) every concept with relevance
r_k(x) > τ and regenerate x_rem; FF_x = p_ĉ(x̃) − p_ĉ(x_rem), probabilities from f (and from g, and
from an independently trained classifier f' when one is given) on the generated images.

The null, paired per image: remove as many concepts again, drawn at random among the concepts
*active* in x (a_k(x) > 0). Drawing among all K concepts mostly removes concepts that are zero
anyway and changes nothing, which makes any model look faithful. A second, stricter null is
matched on activation: each removed concept is replaced by one of the ``pool`` other concepts whose
a_k(x) is nearest to its own. The relevant concepts are the large ones, and removing a large
activation changes the image more than removing a small one whatever it means; against the uniform
null even an untrained ensemble looks faithful, against the matched one it should not. The summary
reports, against each null, the paired difference FF_x − null_x with a bootstrap confidence
interval of its mean and a two-sided sign test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest
from torch import nn

from viscoin.models.viscoin import Viscoin

ACTIVE = 1e-6  # a concept with a_k(x) above this counts as active in x


def _probabilities(
    model: Viscoin, images: torch.Tensor, classes: torch.Tensor, independent: nn.Module | None
) -> dict[str, torch.Tensor]:
    """p_ĉ under f, g (and f') for generated images (B, 3, R, R) → (B,) tensors by name."""
    out = model(images)
    rows = torch.arange(images.shape[0], device=images.device)
    probs = {
        "f": out.f_logits.float().softmax(1)[rows, classes],
        "g": out.g_logits.float().softmax(1)[rows, classes],
    }
    if independent is not None:
        probs["fi"] = independent(images).float().softmax(1)[rows, classes]
    return probs


@torch.no_grad()
def faithfulness_scores(
    model: Viscoin,
    batches: Iterable[torch.Tensor],
    thresholds: Sequence[float] = (0.1, 0.2, 0.4),
    seed: int = 0,
    device: torch.device | str = "cpu",
    intervention: str = "isolated",
    independent: nn.Module | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-image FF values.

    Keys ``ff_<p>@τ``, ``null_<p>@τ`` (random active concepts) and ``matched_<p>@τ`` (concepts
    matched on activation, :func:`matched_active_mask`) for p in ``f``, ``g`` (and ``fi``: the
    independent classifier ``independent``, a module mapping images in [−1, 1] to logits) → (N,)
    arrays;
    ``removed@τ`` (N,) the number of concepts removed, ``active`` (N,) the number active.
    ``intervention``: how the removal reaches Ω (:data:`viscoin.models.viscoin.INTERVENTIONS`).
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    scores: dict[str, list[torch.Tensor]] = {}

    def add(key: str, value: torch.Tensor) -> None:
        scores.setdefault(key, []).append(value.float().cpu())

    from tqdm import tqdm

    for images in tqdm(batches, desc="faithfulness", disable=not progress, dynamic_ncols=True):
        images = images.to(device)
        out = model(images)
        relevance = model.relevance(out)
        predicted = out.g_logits.argmax(1)
        active = out.activations > ACTIVE
        base = _probabilities(
            model, model.decode_intervention(out.concept_maps, out, intervention), predicted,
            independent,
        )  # fmt: skip
        add("active", active.sum(1))
        for tau in thresholds:
            remove = relevance > tau
            counts = remove.sum(1)
            null_remove = random_active_mask(active, counts, gen)
            matched_remove = matched_active_mask(out.activations, remove, gen)
            masks = (("ff", remove), ("null", null_remove), ("matched", matched_remove))
            for name, mask in masks:
                maps = out.concept_maps * (~mask)[:, :, None, None]
                probs = _probabilities(
                    model, model.decode_intervention(maps, out, intervention), predicted,
                    independent,
                )  # fmt: skip
                for p, value in probs.items():
                    add(f"{name}_{p}@{tau}", base[p] - value)
            add(f"removed@{tau}", counts)
    return {k: torch.cat(v).numpy() for k, v in scores.items()}


def random_active_mask(
    active: torch.Tensor, counts: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """For each row, ``counts[i]`` distinct concepts drawn uniformly among the active ones
    (``active`` (B, K) bool); when fewer are active, every active one and then random inactive
    ones. → (B, K) bool."""
    noise = torch.rand(active.shape, generator=gen).to(active.device)
    keys = noise - active.float()  # active concepts sort first, in random order
    ranks = keys.argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


def matched_active_mask(
    activations: torch.Tensor, remove: torch.Tensor, gen: torch.Generator, pool: int = 3
) -> torch.Tensor:
    """For each row, one stand-in per concept in ``remove`` (B, K) bool: drawn uniformly among the
    ``pool`` concepts outside ``remove`` (and not drawn yet) whose activation ``activations``
    (B, K) is nearest to the removed one's. Removed concepts are matched largest first; a row with
    fewer candidates than removed concepts gets every candidate. → (B, K) bool, disjoint from
    ``remove``, with the same count per row whenever K ≥ 2·count."""
    acts = activations.detach().float().cpu().numpy()
    removed = remove.detach().cpu().numpy()
    draws = torch.rand(acts.shape, generator=gen).numpy()  # one uniform per (row, concept)
    out = np.zeros(acts.shape, dtype=bool)
    for i in range(acts.shape[0]):
        free = ~removed[i]
        targets = np.flatnonzero(removed[i])
        for j, target in enumerate(targets[np.argsort(-acts[i, targets], kind="stable")]):
            candidates = np.flatnonzero(free)
            if not len(candidates):
                break
            nearest = candidates[
                np.argsort(np.abs(acts[i, candidates] - acts[i, target]), kind="stable")
            ]
            choice = nearest[int(draws[i, j] * min(pool, len(nearest)))]
            out[i, choice], free[choice] = True, False
    return torch.from_numpy(out).to(remove.device)


def paired_summary(
    treated: np.ndarray, null: np.ndarray, seed: int = 0, resamples: int = 2000
) -> dict[str, float]:
    """Paired comparison of per-image scores (N,) against their null (N,).

    ``diff_mean`` / ``diff_median`` of treated − null, ``diff_ci_low`` / ``diff_ci_high`` (95 %
    percentile bootstrap of the mean), ``sign_p`` (two-sided sign test over the non-zero
    differences; 1 when all are zero), ``wins`` (fraction of images where treated > null) and
    ``ratio`` (mean treated / mean null; None when the null's mean is ≤ 0).
    """
    diff = np.asarray(treated, float) - np.asarray(null, float)
    n = len(diff)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1) if n else np.array([np.nan])
    positive, negative = int((diff > 0).sum()), int((diff < 0).sum())
    sign_p = binomtest(positive, positive + negative).pvalue if positive + negative else 1.0
    mean_t, mean_n = float(np.mean(treated)), float(np.mean(null))
    ratio = mean_t / mean_n if mean_n > 0 else None  # undefined when the null moves nothing
    return {
        "diff_mean": float(diff.mean()),
        "diff_median": float(np.median(diff)),
        "diff_ci_low": float(np.quantile(means, 0.025)),
        "diff_ci_high": float(np.quantile(means, 0.975)),
        "sign_p": float(sign_p),
        "wins": positive / n if n else float("nan"),
        "ratio": ratio,
    }


def summarise_faithfulness(scores: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    """Medians (the paper's statistic) and means of every score, and for each ``ff_<p>@τ`` its
    paired comparison (:func:`paired_summary`) with ``null_<p>@τ`` as ``paired_<p>@τ`` and with
    ``matched_<p>@τ`` as ``paired_matched_<p>@τ``.

    The means matter: removing a few of many concepts leaves most images' prediction untouched,
    so a median is often exactly 0 while the mean is not.
    """
    summary: dict[str, Any] = {}
    for key, values in scores.items():
        if not key.startswith(("removed@", "active")):
            summary[f"median_{key}"] = float(np.median(values))
        summary[f"mean_{key}"] = float(np.mean(values))
    for key in scores:
        if key.startswith("ff_"):
            summary[f"paired_{key[3:]}"] = paired_summary(
                scores[key], scores["null_" + key[3:]], seed
            )
            if "matched_" + key[3:] in scores:
                summary[f"paired_matched_{key[3:]}"] = paired_summary(
                    scores[key], scores["matched_" + key[3:]], seed
                )
    return summary
