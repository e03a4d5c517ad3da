"""Paper-style figures of the concept analytics and of training curves.

Each ``*_figure`` function builds a :class:`~matplotlib.figure.Figure` from plain arrays (so it can
be saved as a PNG with :func:`viscoin.utils.figures.save_figure` or embedded in the HTML report);
:func:`save_analytics_figures` writes the whole set for ``viscoin concepts``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from viscoin.interpret.analytics import ConceptAnalytics
from viscoin.utils.figures import new_figure, paper_style, save_figure, short_label

WIDE = 6.8  # inches: the width of a two-column paper figure
DEAD_COLOUR = "#c0392b"
BAR_COLOUR = "#2c6fbb"
MAX_CLASS_TICKS = 40  # more class names than this are unreadable on an axis

# metric → split → (steps, values)
Curves = Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]


def _concept_axis(ax, n_concepts: int) -> None:
    ax.set_xlim(-0.5, n_concepts - 0.5)
    ax.set_xlabel("concept k")
    if n_concepts <= 32:
        ax.set_xticks(range(n_concepts))


def concept_activation_figure(mean_activation: np.ndarray, dead: np.ndarray) -> Figure:
    """Bar per concept of its mean activation a_k over the images; dead concepts marked below."""
    k = len(mean_activation)
    with paper_style():
        fig = new_figure(WIDE, 2.6)
        ax = fig.subplots()
        colours = np.where(dead, DEAD_COLOUR, BAR_COLOUR)
        ax.bar(np.arange(k), mean_activation, width=0.85, color=colours, linewidth=0)
        if dead.any():
            ax.plot(
                np.flatnonzero(dead),
                np.zeros(int(dead.sum())),
                linestyle="none",
                marker="x",
                color=DEAD_COLOUR,
                markersize=4,
                label=f"dead ({int(dead.sum())} of {k})",
            )
            ax.legend(loc="upper right", frameon=False)
        _concept_axis(ax, k)
        ax.set_ylabel("mean activation $a_k$")
        ax.set_title(f"Mean activation per concept ({k - int(dead.sum())} of {k} alive)")
        ax.grid(axis="x", visible=False)
    return fig


def activation_profile_figure(profile: np.ndarray, max_examples: int = 20) -> Figure:
    """Each image's activations sorted in decreasing order (N, K): mean, 10–90 % band, examples.

    A steep profile means each image is explained by few concepts.
    """
    n, k = profile.shape
    ranks = np.arange(1, k + 1)
    with paper_style():
        fig = new_figure(WIDE, 2.6)
        ax = fig.subplots()
        if n:
            for row in profile[np.linspace(0, n - 1, min(n, max_examples)).astype(int)]:
                ax.plot(ranks, row, color="0.6", linewidth=0.5, alpha=0.5)
            low, high = np.percentile(profile, [10, 90], axis=0)
            ax.fill_between(
                ranks, low, high, color=BAR_COLOUR, alpha=0.2, label="10–90 % of images"
            )
            ax.plot(ranks, profile.mean(axis=0), color=BAR_COLOUR, linewidth=1.6, label="mean")
            ax.legend(loc="upper right", frameon=False)
        ax.set_xlim(1, max(k, 2))
        ax.set_xlabel("rank of the concept within the image")
        ax.set_ylabel("activation $a_k(x)$")
        ax.set_title(f"Concept activation profile per image ({n} images)")
    return fig


def concept_entropy_figure(entropy: np.ndarray, max_entropy: float, dead: np.ndarray) -> Figure:
    """Entropy of each concept's class distribution: low = specific to few classes."""
    k = len(entropy)
    shown = ~np.isnan(entropy) & ~dead
    with paper_style():
        fig = new_figure(WIDE, 2.6)
        ax = fig.subplots()
        ax.bar(np.flatnonzero(shown), entropy[shown], width=0.85, color=BAR_COLOUR, linewidth=0)
        # a dot on each bar, so that concepts of a single class (entropy 0) are visible too
        ax.plot(np.flatnonzero(shown), entropy[shown], "o", color=BAR_COLOUR, markersize=2.5)
        if max_entropy > 0:
            ax.axhline(max_entropy, color="0.3", linestyle="--", linewidth=1)
            ax.annotate(
                "uniform over classes (log C)",
                (1.0, max_entropy),
                xycoords=("axes fraction", "data"),
                xytext=(0, 3),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize=7,
                color="0.3",
            )
            ax.set_ylim(0, max_entropy * 1.12)
        _concept_axis(ax, k)
        ax.set_ylabel("class entropy (nats)")
        ax.set_title(f"Class entropy per concept ({int(shown.sum())} concepts support some class)")
        ax.grid(axis="x", visible=False)
    return fig


def _class_ticks(ax, classes: Sequence[str], axis: str) -> None:
    label = "predicted class"
    if len(classes) <= MAX_CLASS_TICKS:
        names = [short_label(c, 24) for c in classes]
        if axis == "y":
            ax.set_yticks(range(len(classes)), names)
        else:
            ax.set_xticks(range(len(classes)), names, rotation=60, ha="right")
    else:
        label += f" (C = {len(classes)})"
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(label)


def class_concept_figure(class_concept: np.ndarray, classes: Sequence[str]) -> Figure:
    """Heatmap of r_{k,c} (C, K): mean relevance of concept k over images predicted as c."""
    c, k = class_concept.shape
    bound = float(np.abs(class_concept).max()) or 1.0
    height = min(8.0, 1.4 + 0.16 * c) if c <= MAX_CLASS_TICKS else 5.0
    with paper_style():
        fig = new_figure(WIDE, height)
        ax = fig.subplots()
        ax.grid(False)
        image = ax.imshow(
            class_concept,
            aspect="auto",
            cmap="RdBu_r",
            norm=TwoSlopeNorm(0.0, -bound, bound),
            interpolation="nearest",
        )
        _concept_axis(ax, k)
        _class_ticks(ax, classes, "y")
        fig.colorbar(image, ax=ax, label="mean relevance $r_{k,c}$", pad=0.01)
        ax.set_title("Class → concept importance")
    return fig


def concept_class_figure(
    concept_class: np.ndarray, classes: Sequence[str], concepts: Sequence[int] | None = None
) -> Figure:
    """Heatmap of each concept's distribution over classes (K, C), rows summing to 1 (or 0).

    ``concepts``: which rows to show and in what order (default: all, in index order).
    """
    rows = list(range(concept_class.shape[0])) if concepts is None else list(concepts)
    matrix = concept_class[rows] if rows else np.zeros((1, concept_class.shape[1]))
    c = concept_class.shape[1]
    height = min(7.0, max(2.8, 1.6 + 0.12 * len(rows)))
    with paper_style():
        fig = new_figure(
            min(WIDE, max(3.6, 2.2 + 0.22 * c)) if c <= MAX_CLASS_TICKS else WIDE, height
        )
        ax = fig.subplots()
        ax.grid(False)
        image = ax.imshow(
            matrix, aspect="auto", cmap="magma_r", norm=Normalize(0, 1), interpolation="nearest"
        )
        _class_ticks(ax, classes, "x")
        ax.set_ylabel("concept k")
        if len(rows) <= 40:
            ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        fig.colorbar(image, ax=ax, label="share of importance", pad=0.02)
        ax.set_title("Concept → class importance")
    return fig


def analytics_figures(analytics: ConceptAnalytics) -> dict[str, Figure]:
    """The five analytics figures, by file stem."""
    return {
        "concept-activation": concept_activation_figure(analytics.mean_activation, analytics.dead),
        "activation-profile": activation_profile_figure(analytics.activation_profile),
        "concept-entropy": concept_entropy_figure(
            analytics.class_entropy, analytics.max_entropy, analytics.dead
        ),
        "class-concept": class_concept_figure(analytics.class_concept, analytics.classes),
        "concept-class": concept_class_figure(
            analytics.concept_class, analytics.classes, analytics.ordered_concepts()
        ),
    }


def save_analytics_figures(analytics: ConceptAnalytics, out_dir: str | Path) -> dict[str, Path]:
    """Write the analytics figures as ``out_dir/<stem>.png``."""
    return {
        name: save_figure(fig, Path(out_dir) / f"{name}.png")
        for name, fig in analytics_figures(analytics).items()
    }


def _smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average, debiased as in TensorBoard."""
    out, last, norm = np.empty_like(values, dtype=np.float64), 0.0, 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = last / norm
    return out


SPLIT_STYLES = {
    "train": {"color": "#2c6fbb"},
    "val": {"color": "#27ae60", "marker": "^"},
    "test": {"color": "#e67e22", "marker": "o"},
}


def _flat_limits(ax, values: list[float]) -> None:
    """Give a constant curve a visible band instead of a range of 1e-14 around it."""
    low, high = min(values), max(values)
    if high - low <= 1e-9 * max(abs(high), 1e-12):
        pad = abs(high) * 0.1 or 1.0
        ax.set_ylim(low - pad, high + pad)


def training_curves_figure(curves: Curves, title: str, smooth: bool = True) -> Figure:
    """One panel per metric, one line per split (train, test, ...), x = step.

    With ``smooth``, long noisy curves (> 200 points) are drawn faint with an exponential moving
    average on top. Panels spanning more than two decades of positive values use a log scale.
    """
    names = list(curves)
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    with paper_style():
        fig = new_figure(min(WIDE, 2.4 * cols + 0.4), 2.0 * rows + 0.4)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat[len(names) :]:
            ax.set_visible(False)
        for ax, name in zip(axes.flat, names, strict=False):
            splits = curves[name]
            everything: list[float] = []
            for i, (split, (steps, values)) in enumerate(splits.items()):
                style = dict(SPLIT_STYLES.get(split, {"color": f"C{i + 2}", "marker": "s"}))
                marker = style.pop("marker", None) if len(values) <= 30 else None
                if smooth and len(values) > 200:
                    weight = min(0.95, 1 - 40 / len(values))
                    ax.plot(steps, values, linewidth=0.6, alpha=0.3, **style)
                    ax.plot(steps, _smooth(values, weight), linewidth=1.3, label=split, **style)
                else:
                    ax.plot(
                        steps,
                        values,
                        linewidth=1.3,
                        marker=marker,
                        markersize=3,
                        label=split,
                        **style,
                    )
                everything += values.tolist()
            if min(everything) > 0 and max(everything) / min(everything) > 100:
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", useOffset=False)
                _flat_limits(ax, everything)
            if len(splits) > 1:
                ax.legend(frameon=False)
                ax.set_title(name)
            else:
                ax.set_title(f"{name} ({next(iter(splits))})")
            ax.set_xlabel("step")
        fig.suptitle(title)
    return fig
