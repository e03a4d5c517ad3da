"""Attribute alignment, on data with known factors (the built-in shapes set, CUB with attributes).

For every attribute value (one-vs-rest; for a binary attribute only "present"), the ROC-AUC of each
single concept activation a_k(x) as a detector of that value; the best concept is reported. An
attribute's score is the mean over its values of the best AUC.
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


def attribute_alignment(
    activations: np.ndarray,
    attributes: np.ndarray,
    names: Sequence[str],
    class_defining: Sequence[bool] | None = None,
) -> dict[str, dict]:
    """``activations`` (N, K), ``attributes`` (N, A) integer-coded → per attribute:
    ``{"auc": mean over values of the best AUC, "min_auc", "best_auc" (the best single concept for
    any value), "values": {value: {"auc", "concept"}}, "class_defining"}``."""
    result = {}
    for a, name in enumerate(names):
        column = attributes[:, a]
        values = np.unique(column)
        if len(values) == 2 and set(values.tolist()) == {0, 1}:
            values = np.array([1])
        per_value = {}
        for v in values:
            aucs = roc_auc_per_column(activations, column == v)
            if np.all(np.isnan(aucs)):
                continue
            best = int(np.nanargmax(aucs))
            per_value[str(int(v))] = {"auc": float(aucs[best]), "concept": best}
        if not per_value:
            continue
        aucs = [d["auc"] for d in per_value.values()]
        result[name] = {
            "auc": float(np.mean(aucs)),
            "min_auc": float(np.min(aucs)),
            "best_auc": float(np.max(aucs)),
            "values": per_value,
            "class_defining": bool(class_defining[a]) if class_defining is not None else None,
        }
    return result
