"""Attribute alignment, on data with known factors (the built-in shapes set, CUB with attributes).

For every attribute value (one-vs-rest; for a binary attribute only "present"), the ROC-AUC of each
single concept activation a_k(x) as a detector of that value; the best concept is reported. An
attribute's score is the mean over its values of the best AUC.

The best of K AUCs on the same images is above 0.5 even for concepts that know nothing (≈ 0.53
with K = 32 on 1 000 images, more with fewer images or more concepts). Its null is the same
best-of-K statistic with the attribute column permuted over the images: ``null_mean``,
``null_p99`` (99th percentile) and ``p_value`` (the fraction of permutations at least as high).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata


def roc_auc_per_column(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC-AUC of each column of ``scores`` (N, K) for the binary labels ``positive`` (N,).

    Mann-Whitney form with average ranks for ties: AUC = (R₊ − n₊(n₊+1)/2) / (n₊ n₋). NaN if one
    class is empty.
    """
    positive = positive.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[1], np.nan)
    ranks = rankdata(scores, axis=0)
    rank_sum = ranks[positive].sum(axis=0)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def best_auc_from_ranks(ranks: np.ndarray, positive: np.ndarray) -> float:
    """max_k AUC_k from the per-column ranks (N, K) of the scores (``rankdata(scores, axis=0)``):
    the ranks do not depend on the labels, so a permutation test reuses them."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    rank_sum = ranks[positive].sum(axis=0)
    return float(((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).max())


def attribute_alignment(
    activations: np.ndarray,
    attributes: np.ndarray,
    names: Sequence[str],
    class_defining: Sequence[bool] | None = None,
    permutations: int = 200,
    seed: int = 0,
) -> dict[str, dict]:
    """``activations`` (N, K), ``attributes`` (N, A) integer-coded → per attribute:
    ``{"auc": mean over values of the best AUC, "min_auc", "best_auc" (the best single concept for
    any value), "values": {value: {"auc", "concept", "null_mean", "null_p99", "p_value"}},
    "null_mean", "null_p99", "p_value" (of "auc"), "class_defining"}``; the nulls permute the
    attribute column ``permutations`` times (seeded; 0: no null)."""
    ranks = rankdata(activations, axis=0)
    rng = np.random.default_rng(seed)
    result = {}
    for a, name in enumerate(names):
        column = attributes[:, a]
        values = np.unique(column)
        if len(values) == 2 and set(values.tolist()) == {0, 1}:
            values = np.array([1])
        values = [v for v in values if 0 < (column == v).sum() < len(column)]
        if not values:
            continue
        per_value = {}
        shuffled = [rng.permutation(column) for _ in range(permutations)]
        null = np.array([[best_auc_from_ranks(ranks, c == v) for c in shuffled] for v in values])
        for i, v in enumerate(values):
            aucs = roc_auc_per_column(activations, column == v)
            best = int(np.nanargmax(aucs))
            per_value[str(int(v))] = {"auc": float(aucs[best]), "concept": best}
            if permutations:
                per_value[str(int(v))].update(_null_stats(float(aucs[best]), null[i]))
        aucs = [d["auc"] for d in per_value.values()]
        result[name] = {
            "auc": float(np.mean(aucs)),
            "min_auc": float(np.min(aucs)),
            "best_auc": float(np.max(aucs)),
            "values": per_value,
            "class_defining": bool(class_defining[a]) if class_defining is not None else None,
        }
        if permutations:
            result[name].update(_null_stats(float(np.mean(aucs)), null.mean(axis=0)))
    return result


def _null_stats(observed: float, null: np.ndarray) -> dict[str, float]:
    return {
        "null_mean": float(null.mean()),
        "null_p99": float(np.quantile(null, 0.99)),
        "p_value": float((1 + (null >= observed).sum()) / (1 + len(null))),
    }
