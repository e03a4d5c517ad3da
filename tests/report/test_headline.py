"""The atlas's headline table: each metric beside its own null, read from metrics.json as
``viscoin evaluate`` writes it, or computed on the analysed split when a model has none."""

import numpy as np
import pytest

from viscoin.interpret.analytics import ConceptAnalytics
from viscoin.report.headline import analytics_rows, headline_rows, metrics_rows

# The structure of a real metrics.json (demo run, trimmed): every number differs from the others,
# so a value read from the wrong key cannot pass.
METRICS = {
    "acc_f": 0.991, "acc_g": 0.982, "fidelity": 0.973, "mse": 0.11,
    "nulls": {"accuracy": 0.108, "fidelity": 0.1003},
    "faithfulness": {
        "mean_ff_f@0.1": 0.7063, "mean_null_f@0.1": 0.4855, "mean_ff_fi@0.1": 0.6515,
        "mean_null_fi@0.1": 0.4482, "mean_ff_g@0.1": 0.6947, "mean_null_g@0.1": 0.4691,
        "mean_ff_f@0.4": 0.6649, "mean_null_f@0.4": 0.2421,
        "paired_f@0.1": {"diff_mean": 0.2208, "diff_ci_low": 0.1882, "diff_ci_high": 0.2562},
    },
    "consistency": {"consistency_concepts": 8, "consistency_mean": 0.9437, "null_mean": 0.5323,
                    "unread_mean": 0.5, "per_concept": {"12": {"accuracy": 0.925}}},
    "attribute_alignment": {
        "body_colour": {"auc": 0.92, "null_mean": 0.536, "null_p99": 0.548, "class_defining": True},
        "head_crest": {"auc": 0.97, "null_mean": 0.530, "null_p99": 0.551, "class_defining": True},
        "tail_shape": {"auc": 0.556, "null_mean": 0.533, "null_p99": 0.547, "class_defining": False},
        "background": {"auc": 0.542, "null_mean": 0.535, "null_p99": 0.550, "class_defining": False},
    },
    "recon_attributes": {
        "all_class_defining": 0.418,
        "baselines": {"majority": {"all_class_defining": 0.104},
                      "mean_image": {"all_class_defining": 0.008}},
    },
}  # fmt: skip


def test_each_metric_beside_its_null():
    rows = {row.metric: row for row in metrics_rows(METRICS)}
    pairs = {name: (row.value, row.null) for name, row in rows.items()}
    assert pairs == {
        "accuracy of f": (0.991, 0.108),
        "accuracy of g": (0.982, 0.108),
        "fidelity (g agrees with f)": (0.973, 0.1003),
        "faithfulness, τ = 0.1": (0.7063, 0.4855),
        "faithfulness, τ = 0.4": (0.6649, 0.2421),
        "consistency (probe accuracy)": (0.9437, 0.5323),
        "alignment AUC, 2 class-defining attributes": (pytest.approx(0.945), pytest.approx(0.533)),
        "alignment AUC, 2 other attributes": (pytest.approx(0.549), pytest.approx(0.534)),
        "reconstructions show every class-defining attribute": (0.418, 0.104),
    }
    assert list(rows)[:3] == ["accuracy of f", "accuracy of g", "fidelity (g agrees with f)"]
    assert rows["faithfulness, τ = 0.1"].note == (
        "paired Δ 0.2208, 95% CI 0.1882 to 0.2562; with f′: 0.6515 vs 0.4482"
    )
    assert rows["faithfulness, τ = 0.4"].note == ""
    assert "random active" in rows["faithfulness, τ = 0.1"].null_is
    assert rows["alignment AUC, 2 class-defining attributes"].note == (
        "2 of 2 above their null's 99th percentile"
    )
    assert (
        rows["alignment AUC, 2 other attributes"].note
        == "1 of 2 above their null's 99th percentile"
    )
    assert rows["reconstructions show every class-defining attribute"].note == (
        "best baseline: majority"
    )
    assert "Ω does not read: 0.5000" in rows["consistency (probe accuracy)"].note


def test_the_stricter_nulls_when_the_run_has_them():
    metrics = {
        **METRICS,
        "faithfulness": {**METRICS["faithfulness"], "mean_matched_f@0.1": 0.3291},
        "consistency": {**METRICS["consistency"], "direction_mean": 0.7012},
        "attribute_alignment": {
            name: {**a, "untrained_auc": 0.81 if a["class_defining"] else 0.53}
            for name, a in METRICS["attribute_alignment"].items()
        },
    }
    rows = {row.metric: row for row in metrics_rows(metrics)}
    consistency = rows["consistency (probe accuracy)"]
    assert (consistency.value, consistency.null) == (0.9437, 0.7012)
    assert "random weights" in consistency.null_is
    assert "shuffled pair labels: 0.5323" in consistency.note
    assert "matched activation: 0.3291" in rows["faithfulness, τ = 0.1"].note
    assert rows["alignment AUC, 2 class-defining attributes"].note.endswith(
        "a freshly initialised Ψ on the same f: 0.8100"
    )


def test_missing_parts_are_left_out():
    rows = metrics_rows({"acc_g": 0.5, "faithfulness": {"0.1": 0.2}, "consistency": [1, 2]})
    assert [(r.metric, r.value, r.null) for r in rows] == [("accuracy of g", 0.5, None)]
    assert metrics_rows({"name": "x", "nulls": 3}) == []


def _analytics(labels, g, f, n_classes=3):
    n = len(labels)
    return ConceptAnalytics(
        np.ones((n, 2), np.float32), np.ones((n, 2), np.float32), np.array(g), np.array(f),
        np.array(labels), np.arange(n), [f"c{c}" for c in range(n_classes)],
    )  # fmt: skip


def test_nulls_from_the_analysed_split():
    # labels: 3 of 4 are class 0; g right on 1 of 4; f and g agree on 3 of 4
    analytics = _analytics(labels=[0, 0, 0, 1], g=[0, 1, 2, 2], f=[0, 1, 2, 1])
    rows = analytics_rows(analytics)
    assert [(r.metric, r.value, r.null) for r in rows] == [
        ("accuracy of g", 0.25, 0.75),
        # P(f): (1/4, 2/4, 1/4), P(g): (1/4, 1/4, 2/4) → Σ = 1/16 + 2/16 + 2/16
        ("fidelity (g agrees with f)", 0.75, pytest.approx(5 / 16)),
    ]
    assert headline_rows(None, analytics)[1] == "the 4 analysed images"
    assert headline_rows({"mse": 0.1}, analytics)[0] == rows  # no headline pair in the file
    assert headline_rows(METRICS, analytics)[1] == "metrics.json"
    assert analytics_rows(_analytics([], [], [])) == []
