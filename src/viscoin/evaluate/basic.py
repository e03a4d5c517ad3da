"""Test-set accuracy of f and g, fidelity, and reconstruction errors of an ensemble.

Used by periodic evaluation during training and by ``viscoin evaluate``. All images are real test
images in [−1, 1]; reconstructions use constant noise.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from viscoin.models.viscoin import Viscoin, ViscoinOutput


def add_batch_sums(
    totals: dict[str, float],
    out: ViscoinOutput,
    reconstruction: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    lpips: nn.Module | None = None,
) -> None:
    """Add one batch's counts and per-image errors to ``totals`` (``acc_f``, ``acc_g``,
    ``fidelity``, ``mse``, ``l1``, and ``lpips`` when given); divide by the image count at the end."""
    f_pred, g_pred = out.f_logits.argmax(1), out.g_logits.argmax(1)
    totals["acc_f"] += (f_pred == labels).sum().item()
    totals["acc_g"] += (g_pred == labels).sum().item()
    totals["fidelity"] += (f_pred == g_pred).sum().item()
    diff = reconstruction - images
    totals["mse"] += diff.square().mean(dim=(1, 2, 3)).sum().item()
    totals["l1"] += diff.abs().mean(dim=(1, 2, 3)).sum().item()
    if lpips is not None:
        totals["lpips"] += lpips.model(reconstruction, images).sum().item()


@torch.no_grad()
def evaluate_ensemble(
    model: Viscoin,
    batches: Iterable,
    lpips: nn.Module | None = None,
    max_batches: int = 0,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """``acc_f``, ``acc_g``, ``fidelity`` (argmax g = argmax f), ``mse``, ``l1`` (per element,
    images in [−1, 1]) and ``lpips`` (when given), averaged over images."""
    was_training = model.training
    model.eval()
    totals = {"acc_f": 0.0, "acc_g": 0.0, "fidelity": 0.0, "mse": 0.0, "l1": 0.0, "lpips": 0.0}
    count = 0
    device = torch.device(device)
    for i, (images, labels) in enumerate(batches):
        if max_batches and i >= max_batches:
            break
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            out = model(images)
            recon = model.generator.synthesis(out.w_plus, noise_mode="const").float()
        n = images.shape[0]
        add_batch_sums(totals, out, recon, images, labels, lpips)
        count += n
    model.train(was_training)
    if lpips is None:
        totals.pop("lpips")
    return {k: v / max(count, 1) for k, v in totals.items()}
