"""Analytics figures and training curves are written as readable PNGs."""

import json

import numpy as np
import pytest
from PIL import Image

from viscoin.errors import UserError
from viscoin.interpret.analytics import compute_concept_analytics
from viscoin.report.logs import (
    grouped_curves,
    last_record,
    metric_curves,
    metric_group,
    plot_run_logs,
    save_training_curves,
)
from viscoin.report.plots import save_analytics_figures

VISCOIN_RECORDS = [
    {"step": 50, "split": "train", "time": 1.0, "total": 2.0, "mse": 0.5, "l1": 0.6,
     "ce_rec": 0.1, "orth": 0.01, "w_reg": 1e-4, "of": 0.0, "sparsity": 0.0, "lr": 1e-3},
    {"step": 100, "split": "train", "time": 2.0, "total": 1.5, "mse": 0.4, "l1": 0.5,
     "ce_rec": None, "orth": 0.01, "w_reg": 2e-4, "of": 0.3, "sparsity": 0.1, "lr": 1e-3},
    {"step": 100, "split": "test", "time": 3.0, "acc_f": 0.5, "acc_g": 0.4, "fidelity": 0.7,
     "mse": 0.45, "l1": 0.55, "lpips": "n/a"},
    {"step": 150, "split": "train", "time": 4.0, "total": float("nan"), "mse": 0.3, "lr": 8e-4,
     "note": "resumed", "flag": True},
    {"step": 200, "split": "test", "time": 5.0, "acc_f": 0.6, "acc_g": 0.55, "fidelity": 0.8,
     "mse": 0.35, "l1": 0.45},
]  # fmt: skip


def test_curves_skip_non_numeric_values_and_group_by_name():
    curves = metric_curves(VISCOIN_RECORDS)
    assert "note" not in curves and "flag" not in curves and "time" not in curves
    assert "lpips" not in curves  # its only value is a string
    steps, values = curves["total"]["train"]
    assert steps.tolist() == [50, 100] and values.tolist() == [2.0, 1.5]  # NaN dropped
    assert curves["mse"]["test"][1].tolist() == [0.45, 0.35]
    assert curves["ce_rec"]["train"][0].tolist() == [50]
    groups = grouped_curves(curves)
    assert list(groups) == ["losses", "metrics", "learning-rate"]
    assert set(groups["metrics"]) == {"acc_f", "acc_g", "fidelity"}
    assert [metric_group(k) for k in ("loss_G", "r1", "accuracy", "fid50k", "lr")] == [
        "losses", "losses", "metrics", "metrics", "learning-rate"
    ]  # fmt: skip
    assert last_record(VISCOIN_RECORDS) == {
        "step": 200, "acc_f": 0.6, "acc_g": 0.55, "fidelity": 0.8, "mse": 0.35, "l1": 0.45
    }  # fmt: skip


@pytest.mark.parametrize(
    "records",
    [
        VISCOIN_RECORDS,
        [{"step": i, "split": s, "epoch": i, "loss": 1 / (i + 1), "accuracy": i / 10, "lr": 0.1}
         for i in range(4) for s in ("train", "test")],
        [{"step": i, "split": "train", "loss_G": np.sin(i) + 2, "loss_D": 1.0, "r1": 10 ** (-i / 20)}
         for i in range(120)],
        [{"foo": 1}, {"foo": 2, "split": "val"}],
    ],
    ids=["viscoin", "classifier", "gan", "no-step"],
)  # fmt: skip
def test_training_curves_any_key_set(records, tmp_path):
    paths = save_training_curves(records, tmp_path)
    assert paths and all(Image.open(p).format == "PNG" for p in paths)
    assert all(p.name.startswith("curves-") for p in paths)


def test_plot_run_logs_errors(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        plot_run_logs(tmp_path / "missing")
    with pytest.raises(UserError, match="metrics.jsonl not found"):
        plot_run_logs(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "split": "train"}) + "\n")
    with pytest.raises(UserError, match="no numeric values"):
        plot_run_logs(tmp_path)


def test_analytics_figures(tiny_model, loader, tmp_path):
    analytics = compute_concept_analytics(tiny_model, loader)
    paths = save_analytics_figures(analytics, tmp_path)
    assert set(paths) == {
        "concept-activation", "activation-profile", "concept-entropy", "class-concept",
        "concept-class",
    }  # fmt: skip
    for path in paths.values():
        image = Image.open(path)
        assert image.format == "PNG" and image.width >= 300
