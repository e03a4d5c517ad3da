"""Which attributes a reconstruction shows, on datasets that can draw counterfactual images.

Reconstruction errors (MSE, L1, LPIPS) say how far x̃ is from x, not whether x̃ still shows the
bird's colour or pattern: on the shapes dataset the background dominates every pixel average, and
a blue striped bird redrawn as a red striped one costs little. Here the dataset draws image i again
with one attribute set to each of its values, everything else (pose, size, background, noise)
unchanged; the value the reconstruction *shows* is the one whose drawing is nearest to x̃ (mean
squared error over the image at the drawing's best shift of up to R/8 pixels, so that a bird
redrawn a little off its place still counts; the drawings differ only where the attribute is
painted, so this compares that region). Accuracy per attribute is the fraction of images whose shown value is the
true one. A reconstruction equal to the input scores 1.

Nulls: one over the number of values (``chance``) is not what an uninformative reconstruction
scores. ``baselines`` gives the accuracy of always answering each attribute's most frequent value
(``majority``) and of reading the mean of the evaluated images instead of each reconstruction
(``mean_image``: a blur that shows whatever most images share).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def can_draw_counterfactuals(dataset: Any) -> bool:
    """Whether ``dataset`` (or the dataset under a ``Subset``) draws counterfactual images."""
    base = getattr(dataset, "dataset", dataset)
    return bool(getattr(base, "renders_counterfactuals", False))


def shifted_errors(drawings: torch.Tensor, target: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Mean squared error of ``target`` to each drawing at its best integer shift.

    Args:
        drawings: ``(V, C, R, R)``; shifted by up to ``max_shift`` pixels each way (edges
            replicated).
        target: ``(C, R, R)``.

    Returns:
        ``(V,)``: for each drawing, the lowest error over the ``(2 max_shift + 1)²`` shifts.
    """
    size = target.shape[-1]
    if max_shift <= 0:
        return ((drawings - target) ** 2).mean(dim=(1, 2, 3))
    padded = F.pad(drawings, (max_shift,) * 4, mode="replicate")
    # ‖d_s − y‖² = ‖d_s‖² − 2⟨d_s, y⟩ + ‖y‖², every shift s at once
    # cross-correlation of each padded drawing with the target, through the FFT (no wrap-around
    # in the valid (2m+1)² corner: p + s < R + 2m for every pixel p and shift s)
    n, valid = padded.shape[-1], 2 * max_shift + 1
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(target, s=(n, n)).conj()
    cross = torch.fft.irfft2(spectrum, s=(n, n)).sum(1)[:, :valid, :valid]  # (V, 2m+1, 2m+1)
    energy = F.avg_pool2d(padded.pow(2).sum(1, keepdim=True), size, stride=1)[:, 0] * size**2
    total = energy - 2 * cross + target.pow(2).sum()
    return total.flatten(1).min(dim=1).values.clamp_min(0) / target.numel()


@torch.no_grad()
def attributes_shown(
    recon: torch.Tensor,
    indices: Sequence[int],
    dataset: Any,
    attributes: Sequence[str],
    max_shift: int | None = None,
) -> np.ndarray:
    """The value of each attribute that each reconstruction shows.

    Args:
        recon: reconstructions ``(B, 3, R', R')`` in [-1, 1] (resized to the dataset's resolution
            when R' differs).
        indices: the dataset index of each reconstructed image, length B.
        dataset: a dataset with ``render(index, **{attribute: value})`` → ``(R, R, 3)`` in [0, 1],
            ``attribute_names``, ``attribute_values`` and ``all_attributes()``.
        attributes: attribute names to read.
        max_shift: each drawing is compared at its best shift within this many pixels (default
            R/8): a reconstruction whose bird sits a few pixels off still shows its colours.

    Returns:
        int64 ``(B, len(attributes))``: the index of the shown value.
    """
    recon = recon.detach().float().cpu()
    size = dataset.resolution
    if recon.shape[-1] != size:
        recon = F.interpolate(recon, size=(size, size), mode="area")
    recon = recon.add(1.0).mul(0.5)  # [-1, 1] → [0, 1], as render() draws
    shift = size // 8 if max_shift is None else max_shift
    counts = [len(dataset.attribute_values[name]) for name in attributes]
    positions = [dataset.attribute_names.index(name) for name in attributes]
    truth = np.asarray(dataset.all_attributes())
    shown = np.empty((len(indices), len(attributes)), dtype=np.int64)
    for row, index in enumerate(indices):
        index = int(index)
        # the image itself stands for every attribute's true value: drawn once, not once each
        drawings = [dataset.render(index)]
        slots = []  # per attribute: the drawing of each of its values
        for name, count, position in zip(attributes, counts, positions, strict=True):
            slot = []
            for value in range(count):
                if value == truth[index, position]:
                    slot.append(0)
                else:
                    slot.append(len(drawings))
                    drawings.append(dataset.render(index, **{name: value}))
            slots.append(slot)
        stacked = torch.from_numpy(np.stack(drawings)).permute(0, 3, 1, 2)  # (D, 3, R, R)
        errors = shifted_errors(stacked, recon[row], shift)
        for col, slot in enumerate(slots):
            shown[row, col] = int(errors[slot].argmin())
    return shown


def summarise_recon_attributes(
    shown: np.ndarray,
    truth: np.ndarray,
    labels: Sequence[int],
    attributes: Sequence[str],
    class_names: Sequence[str],
    attribute_values: dict[str, list[str]],
    class_defining: Sequence[str],
    null_readings: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Accuracies of ``shown`` ``(N, A)`` against ``truth`` ``(N, A)`` (columns = ``attributes``).

    Returns, per attribute, the accuracy over all images; ``all_class_defining``: the fraction of
    images whose class-defining attributes are all shown right; ``chance`` per attribute;
    ``worst_class`` per attribute (and for ``all_class_defining``): the lowest per-class accuracy
    and the class it belongs to; ``per_class``: every accuracy per class; ``baselines``: the same
    accuracies for the majority answer and for each of ``null_readings`` (name → readings (N, A)
    of an uninformative image, e.g. ``mean_image``).
    """
    shown, truth = np.asarray(shown), np.asarray(truth)
    labels = np.asarray(labels)
    defining = [attributes.index(a) for a in class_defining if a in attributes]

    def accuracies(readings: np.ndarray) -> dict[str, np.ndarray]:
        right = readings == truth  # (N, A)
        columns = {name: right[:, j] for j, name in enumerate(attributes)}
        if defining:
            columns["all_class_defining"] = right[:, defining].all(axis=1)
        return columns

    columns = accuracies(shown)
    result: dict[str, Any] = {name: float(col.mean()) for name, col in columns.items()}
    result["images"] = len(labels)
    result["chance"] = {name: 1.0 / len(attribute_values[name]) for name in attributes}
    majority = np.array([np.bincount(truth[:, j]).argmax() for j in range(truth.shape[1])])
    readings = {"majority": np.broadcast_to(majority, truth.shape), **(null_readings or {})}
    result["baselines"] = {
        name: {k: float(v.mean()) for k, v in accuracies(np.asarray(r)).items()}
        for name, r in readings.items()
    }
    per_class: dict[str, dict[str, float]] = {}
    for c, cname in enumerate(class_names):
        mask = labels == c
        if mask.any():
            per_class[cname] = {name: float(col[mask].mean()) for name, col in columns.items()}
    worst = {}
    for name in columns if per_class else ():
        cname = min(per_class, key=lambda k: per_class[k][name])
        worst[name] = {"accuracy": per_class[cname][name], "class": cname}
    result["worst_class"] = worst
    result["per_class"] = per_class
    return result
