"""Concept amplification strips (METHOD.md §3): regenerate an image with chosen concept maps φ_k
multiplied by λ, Φ' fixed and constant noise, and show what changes.

By default Ω's input scale comes from the unmodified Φ(x) (intervention ``isolated``), so only the
chosen concepts change; ``literal`` recomputes it from the modified maps as the paper's code does,
which fades every other concept as λ grows (see :mod:`viscoin.models.translator`).

λ = 1 is the plain reconstruction, λ = 0 removes the concept. Each generated image is classified
again by f and by g, so the strip shows whether the prediction follows the concept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from viscoin.errors import UserError
from viscoin.interpret.common import evaluating, model_device
from viscoin.interpret.relevance import selection_mask
from viscoin.models.viscoin import Viscoin, check_intervention
from viscoin.utils.figures import image_array, new_figure, paper_style, save_figure, short_label

DEFAULT_MULTIPLIERS = (0.0, 1.0, 2.0, 4.0)
MODES = ("each", "together")


@dataclass
class Prediction:
    """Class index and softmax probability of f and of g for a set of images (tensors, same shape)."""

    f_class: torch.Tensor
    f_prob: torch.Tensor
    g_class: torch.Tensor
    g_prob: torch.Tensor


@dataclass
class ConceptStrip:
    """One image's amplification results.

    ``image`` (3, R, R) the input; ``rows``: the concepts amplified in each row (one concept per row
    in mode ``each``, all selected together in one row in mode ``together``); ``generated``
    (rows, M, 3, R, R) for the M ``multipliers``; ``predictions`` (rows, M) for the generated images
    and ``input_prediction`` (scalars) for the input; ``relevance`` (K,) r(x) of the input.
    """

    image: torch.Tensor
    index: int | None
    rows: list[list[int]]
    multipliers: list[float]
    generated: torch.Tensor
    predictions: Prediction
    input_prediction: Prediction
    relevance: torch.Tensor


@torch.no_grad()
def predict(model: Viscoin, images: torch.Tensor) -> Prediction:
    """Top class and probability of f and g for images (..., 3, R, R) → tensors of shape (...)."""
    lead = images.shape[:-3]
    out = model(images.reshape(-1, *images.shape[-3:]))
    f_prob, f_class = out.f_logits.float().softmax(1).max(1)
    g_prob, g_class = out.g_logits.float().softmax(1).max(1)
    return Prediction(*(t.reshape(lead).cpu() for t in (f_class, f_prob, g_class, g_prob)))


@torch.no_grad()
def concept_strips(
    model: Viscoin,
    images: torch.Tensor,
    selected: Sequence[Sequence[int]],
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    mode: str = "each",
    indices: Sequence[int] | None = None,
    intervention: str = "isolated",
) -> list[ConceptStrip]:
    """Amplify ``selected[b]`` (concept indices) in image b of ``images`` (B, 3, R, R) by each λ.

    ``mode``: ``each`` (one row per concept) or ``together`` (one row, all selected concepts scaled
    at once). ``indices``: dataset positions of the images, only used for titles.
    ``intervention``: ``isolated`` or ``literal`` (module docstring).
    """
    if mode not in MODES:
        raise UserError(f"unknown amplification mode '{mode}'. Use each or together.")
    check_intervention(intervention)
    if len(selected) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(selected)} concept selections")
    with evaluating(model):
        return _strips(
            model, images, selected, [float(m) for m in multipliers], mode, indices, intervention
        )


def _strips(
    model: Viscoin,
    images: torch.Tensor,
    selected: Sequence[Sequence[int]],
    multipliers: list[float],
    mode: str,
    indices: Sequence[int] | None,
    intervention: str,
) -> list[ConceptStrip]:
    device = model_device(model)
    images = images.to(device)
    out = model(images)
    relevance = model.relevance(out).cpu()
    inputs = predict(model, images)
    strips = []
    for b, concepts in enumerate(selected):
        concepts = [int(k) for k in concepts]
        rows = [[k] for k in concepts] if mode == "each" else ([concepts] if concepts else [])
        if rows:
            mask = selection_mask(rows, model.n_concepts)
            batch = images[b : b + 1].expand(len(rows), -1, -1, -1)
            generated = model.amplify(
                batch, mask.to(device), multipliers, intervention=intervention
            )
            predictions = predict(model, generated)
        else:  # nothing passed the selection rule for this image
            generated = images.new_zeros((0, len(multipliers), *images.shape[-3:]))
            none = torch.zeros(0, len(multipliers))
            predictions = Prediction(none.long(), none, none.long(), none)
        strips.append(
            ConceptStrip(
                image=images[b].cpu(),
                index=None if indices is None else int(indices[b]),
                rows=rows,
                multipliers=multipliers,
                generated=generated.cpu(),
                predictions=predictions,
                input_prediction=Prediction(
                    inputs.f_class[b], inputs.f_prob[b], inputs.g_class[b], inputs.g_prob[b]
                ),
                relevance=relevance[b],
            )
        )
    return strips


def _prediction_text(p: Prediction, index: tuple[int, ...], classes: Sequence[str]) -> str:
    f_name = short_label(classes[int(p.f_class[index])])
    g_name = short_label(classes[int(p.g_class[index])])
    return f"f: {f_name} {float(p.f_prob[index]):.2f}\ng: {g_name} {float(p.g_prob[index]):.2f}"


def _multiplier_title(lam: float) -> str:
    note = {0.0: " (removed)", 1.0: " (reconstr.)"}.get(lam, "")
    return f"λ = {lam:g}{note}"


def _row_label(strip: ConceptStrip, row: list[int]) -> str:
    if len(row) == 1:
        return f"concept {row[0]}\nr = {float(strip.relevance[row[0]]):.2f}"
    shown = ", ".join(str(k) for k in row[:6]) + (", …" if len(row) > 6 else "")
    return f"{len(row)} concepts\n{shown}"


def strip_figure(
    strip: ConceptStrip,
    classes: Sequence[str],
    label: str | None = None,
    selection: str | None = None,
) -> Figure:
    """Input | one column per λ, one row per amplified concept (or group), each panel captioned
    with the class and probability given by f and by g. ``label``: the true class, if known."""
    n_rows = max(1, len(strip.rows))
    n_cols = 1 + len(strip.multipliers) if strip.rows else 1
    with paper_style():
        fig = new_figure(max(1.45 * n_cols + 0.5, 3.2), 1.85 * n_rows + 0.55)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[0, 0].imshow(image_array(strip.image), interpolation="nearest")
        axes[0, 0].set_title("input")
        axes[0, 0].set_xlabel(
            _prediction_text(strip.input_prediction, (), classes), fontsize=7, linespacing=1.3
        )
        for r in range(1, n_rows):
            axes[r, 0].set_visible(False)
        for c in range(1, n_cols):
            axes[0, c].set_title(_multiplier_title(strip.multipliers[c - 1]))
        for r, row in enumerate(strip.rows):
            axes[r, 1].set_ylabel(_row_label(strip, row), fontsize=8)
            for c in range(len(strip.multipliers)):
                ax = axes[r, c + 1]
                ax.imshow(image_array(strip.generated[r, c]), interpolation="nearest")
                ax.set_xlabel(
                    _prediction_text(strip.predictions, (r, c), classes),
                    fontsize=7,
                    linespacing=1.3,
                )
        title = "image" if strip.index is None else f"test image {strip.index}"
        if label is not None:
            title += f" (true class: {short_label(label, 30)})"
        if selection:
            title += f" — {selection}"
        if not strip.rows:
            title += "\nno concept selected"
        fig.suptitle(title)
    return fig


def save_strips(
    strips: Sequence[ConceptStrip],
    classes: Sequence[str],
    out_dir: str | Path,
    labels: Sequence[str | None] | None = None,
    selection: str | None = None,
    prefix: str = "amplify",
    names: Sequence[str] | None = None,
) -> list[Path]:
    """One PNG per strip, ``out_dir/<prefix>-<index>.png`` (index: dataset position or order), or
    ``out_dir/names[i]`` when ``names`` is given."""
    out_dir = Path(out_dir)
    paths = []
    for i, strip in enumerate(strips):
        name = f"{prefix}-{strip.index if strip.index is not None else i}.png"
        if names is not None:
            name = names[i]
        label = labels[i] if labels is not None else None
        fig = strip_figure(strip, classes, label=label, selection=selection)
        paths.append(save_figure(fig, out_dir / name))
    return paths
