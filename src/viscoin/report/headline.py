"""The atlas's headline numbers, each beside its null, and the number formatting of its tables.

``viscoin evaluate`` writes ``metrics.json`` with every metric next to what a model that knows
nothing would score (docs/metrics.md); :func:`headline_rows` picks the headline pairs out of it
(or, for a model without ``metrics.json``, computes the prediction nulls from the analysed split),
so the atlas shows one compact table of ``metric | value | null | what the null is``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from viscoin.interpret.analytics import ConceptAnalytics

SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
TAU_KEY = re.compile(r"^mean_ff_f@(.+)$")


@dataclass
class NullRow:
    """One headline metric: its value, its null (None when the run has none) and what that null is.

    ``keys``: where both numbers come from in ``metrics.json``; ``note``: a short qualifier (a
    confidence interval, a count) or ``""``.
    """

    metric: str
    value: float
    null: float | None
    null_is: str
    keys: str
    note: str = ""


def format_number(value: Any) -> str:
    """A number as a person reads it: integers whole, floats with 4 significant digits in fixed
    notation between 0.001 and 10⁵ (``0.1229``, ``1.000``, ``52.51``, ``1234``) and as
    ``4.51 × 10⁻²⁶`` outside; ``–`` for None, NaN and infinities; anything else as ``str``."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e5:
        decimals = max(0, 3 - math.floor(math.log10(magnitude)))
        return f"{value:.{decimals}f}"
    mantissa, exponent = f"{value:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa} × 10{str(int(exponent)).translate(SUPERSCRIPT)}"


def _number(values: Mapping[str, Any], key: str) -> float | None:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _section(metrics: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = metrics.get(key)
    return value if isinstance(value, Mapping) else {}


def _prediction_rows(metrics: Mapping[str, Any]) -> list[NullRow]:
    nulls = _section(metrics, "nulls")
    rows = []
    for key, name in (("acc_f", "accuracy of f"), ("acc_g", "accuracy of g")):
        value = _number(metrics, key)
        if value is not None:
            rows.append(
                NullRow(name, value, _number(nulls, "accuracy"), "always the most frequent class",
                        f"{key} · nulls.accuracy")
            )  # fmt: skip
    value = _number(metrics, "fidelity")
    if value is not None:
        rows.append(
            NullRow("fidelity (g agrees with f)", value, _number(nulls, "fidelity"),
                    "independent guesses with f's and g's class frequencies",
                    "fidelity · nulls.fidelity")
        )  # fmt: skip
    return rows


def _faithfulness_rows(ff: Mapping[str, Any]) -> list[NullRow]:
    taus = sorted((m.group(1) for m in map(TAU_KEY.match, ff) if m), key=float)
    rows = []
    for tau in taus:
        note = ""
        paired = ff.get(f"paired_f@{tau}", {})
        if {"diff_mean", "diff_ci_low", "diff_ci_high"} <= paired.keys():
            note = (
                f"paired Δ {format_number(paired['diff_mean'])}, 95% CI "
                f"{format_number(paired['diff_ci_low'])} to {format_number(paired['diff_ci_high'])}"
            )
        matched = _number(ff, f"mean_matched_f@{tau}")
        if matched is not None:
            note += ("; " if note else "") + (
                f"removing concepts of matched activation: {format_number(matched)}"
            )
        independent = _number(ff, f"mean_ff_fi@{tau}")
        if independent is not None:
            null = format_number(_number(ff, f"mean_null_fi@{tau}"))
            note += ("; " if note else "") + f"with f′: {format_number(independent)} vs {null}"
        rows.append(
            NullRow(f"faithfulness, τ = {tau}", float(ff[f"mean_ff_f@{tau}"]),
                    _number(ff, f"mean_null_f@{tau}"), "as many random active concepts removed",
                    f"faithfulness.mean_ff_f@{tau} · mean_null_f@{tau}", note)
        )  # fmt: skip
    return rows


def _consistency_rows(cons: Mapping[str, Any]) -> list[NullRow]:
    value = _number(cons, "consistency_mean")
    if value is None or not cons.get("consistency_concepts"):
        return []
    notes = [f"{int(cons['consistency_concepts'])} concepts"]
    direction = _number(cons, "direction_mean")
    shuffled = _number(cons, "null_mean")
    if direction is not None and shuffled is not None:
        notes.append(f"shuffled pair labels: {format_number(shuffled)}")
    unread = _number(cons, "unread_mean")
    if unread is not None:
        notes.append(f"a concept Ω does not read: {format_number(unread)}")
    if direction is not None:  # the null that a concept's mere visible effect does not beat
        return [
            NullRow("consistency (probe accuracy)", value, direction,
                    "Ω reading the concept through random weights of the same size",
                    "consistency.consistency_mean · direction_mean", "; ".join(notes))
        ]  # fmt: skip
    return [
        NullRow("consistency (probe accuracy)", value, shuffled,
                "the same probe with the pair labels shuffled",
                "consistency.consistency_mean · null_mean", "; ".join(notes))
    ]  # fmt: skip


def _alignment_rows(alignment: Mapping[str, Any]) -> list[NullRow]:
    attributes = {
        name: a for name, a in alignment.items()
        if isinstance(a, Mapping) and _number(a, "auc") is not None
    }  # fmt: skip
    if not attributes:
        return []
    has_kind = all("class_defining" in a for a in attributes.values())
    groups = (
        [("class-defining attributes", True), ("other attributes", False)]
        if has_kind
        else [("attributes", None)]
    )
    rows = []
    for label, kind in groups:
        members = [
            a for a in attributes.values() if kind is None or bool(a["class_defining"]) == kind
        ]
        if not members:
            continue
        nulls = [a["null_mean"] for a in members if _number(a, "null_mean") is not None]
        above = sum(
            1 for a in members if _number(a, "null_p99") is not None and a["auc"] > a["null_p99"]
        )
        with_null = sum(1 for a in members if _number(a, "null_p99") is not None)
        note = f"{above} of {with_null} above their null's 99th percentile" if with_null else ""
        untrained = [a["untrained_auc"] for a in members if _number(a, "untrained_auc") is not None]
        if untrained:
            note += ("; " if note else "") + (
                f"a freshly initialised Ψ on the same f: {format_number(float(np.mean(untrained)))}"
            )
        rows.append(
            NullRow(f"alignment AUC, {len(members)} {label}", float(np.mean([a["auc"] for a in members])),
                    float(np.mean(nulls)) if nulls else None,
                    "best-of-K AUC with the attribute permuted over images",
                    "attribute_alignment.<attribute>.auc · null_mean", note)
        )  # fmt: skip
    return rows


def _reconstruction_rows(shown: Mapping[str, Any]) -> list[NullRow]:
    value = _number(shown, "all_class_defining")
    if value is None:
        return []
    baselines = {
        name: _number(b, "all_class_defining")
        for name, b in shown.get("baselines", {}).items()
        if isinstance(b, Mapping) and _number(b, "all_class_defining") is not None
    }
    null, note = None, ""
    if baselines:
        best = max(baselines, key=lambda name: baselines[name])
        null = baselines[best]
        note = f"best baseline: {best.replace('_', ' ')}"
    return [
        NullRow("reconstructions show every class-defining attribute", value, null,
                "the most frequent value; the mean image read instead",
                "recon_attributes.all_class_defining · baselines", note)
    ]  # fmt: skip


def metrics_rows(metrics: Mapping[str, Any]) -> list[NullRow]:
    """The headline pairs of a ``metrics.json`` (docs/metrics.md), those the run has, in order:
    accuracies and fidelity, faithfulness per τ, consistency, attribute alignment, reconstructed
    attributes."""
    return [
        *_prediction_rows(metrics),
        *_faithfulness_rows(_section(metrics, "faithfulness")),
        *_consistency_rows(_section(metrics, "consistency")),
        *_alignment_rows(_section(metrics, "attribute_alignment")),
        *_reconstruction_rows(_section(metrics, "recon_attributes")),
    ]


def analytics_rows(analytics: ConceptAnalytics) -> list[NullRow]:
    """Accuracy of g and fidelity on the analysed images with the same nulls as ``viscoin evaluate``
    (most frequent class; Σ_c P(f = c)·P(g = c)): the headline when a model has no metrics.json."""
    if not analytics.n_images:
        return []
    labels, g, f = (np.asarray(a, dtype=np.int64) for a in
                    (analytics.labels, analytics.predicted, analytics.f_predicted))  # fmt: skip
    n_classes = int(max(labels.max(), g.max(), f.max(), analytics.n_classes - 1)) + 1

    def freq(values: np.ndarray) -> np.ndarray:
        return np.bincount(values, minlength=n_classes) / len(values)

    where = f"on the {analytics.n_images} analysed images"
    return [
        NullRow("accuracy of g", float((g == labels).mean()), float(freq(labels).max()),
                "always the most frequent class", "analytics", where),
        NullRow("fidelity (g agrees with f)", float((g == f).mean()),
                float((freq(f) * freq(g)).sum()),
                "independent guesses with f's and g's class frequencies", "analytics", where),
    ]  # fmt: skip


def headline_rows(
    metrics: Mapping[str, Any] | None, analytics: ConceptAnalytics
) -> tuple[list[NullRow], str]:
    """The headline table's rows and where they come from (``metrics.json`` or the analysed split)."""
    rows = metrics_rows(metrics) if isinstance(metrics, Mapping) else []
    if rows:
        return rows, "metrics.json"
    return analytics_rows(analytics), f"the {analytics.n_images} analysed images"
