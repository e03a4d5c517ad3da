"""Training curves from a run's ``metrics.jsonl`` (``viscoin logs RUN``).

Works for any run (classifier, GAN, VisCoIN) and any key set: every numeric value of every record is
a point of the curve (metric, split); nulls, strings and non-finite values are skipped. Metrics are
grouped by name into losses, quality metrics and learning rate, one PNG per group.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from viscoin.errors import UserError
from viscoin.report.plots import Curves, training_curves_figure
from viscoin.utils.figures import save_figure
from viscoin.utils.runs import RunDir, open_run, read_metrics

NOT_METRICS = {"step", "split", "time", "epoch", "iteration", "kimg"}
GROUPS = {
    "losses": "Losses",
    "metrics": "Quality metrics",
    "learning-rate": "Learning rate",
}
_METRIC_NAME = re.compile(
    r"acc|fidelity|fid|^fd|kid|^ff|faithful|consisten|auc|precision|recall|f1|iou", re.IGNORECASE
)
_LR_NAME = re.compile(r"^(lr|learning_rate)(_.*)?$", re.IGNORECASE)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def metric_curves(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, tuple]]:
    """``metric → split → (steps, values)`` arrays, in the order metrics first appear.

    A record without ``step`` takes its position in the file; without ``split``, ``train``.
    """
    points: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            continue
        step = _number(record.get("step"))
        step = float(position) if step is None else step
        split = str(record.get("split") or "train")
        for key, raw in record.items():
            value = _number(raw)
            if key in NOT_METRICS or value is None:
                continue
            steps, values = points.setdefault(str(key), {}).setdefault(split, ([], []))
            steps.append(step)
            values.append(value)
    return {
        name: {split: (np.asarray(s), np.asarray(v)) for split, (s, v) in splits.items()}
        for name, splits in points.items()
    }


def metric_group(name: str) -> str:
    """``learning-rate`` for lr keys, ``metrics`` for accuracy/fidelity/FID-like keys, else ``losses``."""
    if _LR_NAME.match(name):
        return "learning-rate"
    if _METRIC_NAME.search(name):
        return "metrics"
    return "losses"


def grouped_curves(curves: Curves) -> dict[str, dict[str, Any]]:
    """Split ``curves`` by :func:`metric_group`, in the order of :data:`GROUPS`; empty groups dropped."""
    groups: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    for name, splits in curves.items():
        groups[metric_group(name)][name] = splits
    return {group: members for group, members in groups.items() if members}


def last_record(records: Iterable[Mapping[str, Any]], split: str = "test") -> dict[str, Any]:
    """The numeric values of the last record of ``split`` (with its ``step``); {} if none."""
    last: dict[str, Any] = {}
    for record in records:
        if isinstance(record, Mapping) and record.get("split") == split:
            last = record
    values = {k: _number(v) for k, v in last.items() if k not in NOT_METRICS}
    result: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    if last and "step" in last:
        result = {"step": last["step"], **result}
    return result


def save_training_curves(records: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """One PNG per metric group, ``out_dir/curves-<group>.png``; [] when nothing is numeric."""
    paths = []
    for group, members in grouped_curves(metric_curves(records)).items():
        fig = training_curves_figure(members, GROUPS[group], smooth=group == "losses")
        paths.append(save_figure(fig, Path(out_dir) / f"curves-{group}.png"))
    return paths


def run_records(run: RunDir) -> list[dict[str, Any]]:
    """The records of ``run``'s metrics.jsonl; a :class:`UserError` if it has none."""
    if not run.metrics.is_file():
        raise UserError(
            f"{run.metrics} not found: this run has not logged anything yet "
            "(training writes it as it goes)."
        )
    return read_metrics(run.metrics)


def plot_run_logs(run_dir: str | Path) -> list[Path]:
    """``viscoin logs RUN``: training curves of a run directory into ``RUN/figures/``."""
    run = open_run(run_dir)
    records = run_records(run)
    paths = save_training_curves(records, run.figures)
    if not paths:
        raise UserError(f"{run.metrics} holds no numeric values to plot ({len(records)} records).")
    return paths
