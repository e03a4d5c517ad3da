"""Concept heatmaps: where in the image a concept lives (METHOD.md §3), Grad-CAM style, per concept.

For concept k, a_k(x) (the max-pooled concept map) is differentiated with respect to each of the
three classifier stage maps A that feed Ψ. Per stage, channel weights are the spatially averaged
gradients and the map is ReLU(Σ_c w_c A_c), upsampled to the image; the three stage maps are each
scaled to [0, 1] and averaged, and the result is scaled to [0, 1] again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from viscoin.interpret.common import evaluating, model_device
from viscoin.models.head import ConceptHead
from viscoin.models.viscoin import Viscoin
from viscoin.utils.figures import image_array, new_figure, paper_style, save_figure
from viscoin.utils.io import save_npz

DEFAULT_CMAP = "jet"
DEFAULT_ALPHA = 0.45


def concept_index_table(
    concepts: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor, batch: int
) -> torch.Tensor:
    """Concepts shared by the batch (J,) or per image (B, J) → a (B, J) long tensor."""
    table = torch.as_tensor(concepts, dtype=torch.long)
    if table.ndim == 1:
        table = table[None].expand(batch, -1)
    if table.ndim != 2 or table.shape[0] != batch:
        raise ValueError(
            f"need (J,) or ({batch}, J) concept indices, got shape {tuple(table.shape)}"
        )
    return table


def _scale_to_unit(maps: torch.Tensor) -> torch.Tensor:
    """Divide each (H, W) map of (B, 1, H, W) by its maximum; an all-zero map stays zero."""
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps))


def concept_heatmaps(
    model: Viscoin,
    images: torch.Tensor,
    concepts: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor,
) -> torch.Tensor:
    """Heatmaps of ``concepts`` for images (B, 3, R, R) in [−1, 1] → (B, J, R, R) in [0, 1].

    ``concepts``: J indices for every image, or a (B, J) table (e.g. each image's top-k concepts).
    A concept whose activation cannot change with the stage maps (e.g. a dead concept, ReLU off
    everywhere) gets a map of zeros.
    """
    device = model_device(model)
    images = images.to(device)
    table = concept_index_table(concepts, images.shape[0]).to(device)
    size = images.shape[-2:]
    with evaluating(model):
        with torch.no_grad():
            _, stage_maps = model.classifier.forward_features(images)
        # Only Ψ is differentiated: the gradient w.r.t. its inputs needs no backward pass through f.
        stage_maps = [m.detach().float().requires_grad_(True) for m in stage_maps]
        with torch.enable_grad():
            concept_maps, _support = model.core.extractor(stage_maps)
            activations = ConceptHead.activations(concept_maps)  # a(x), (B, K)
            heatmaps = []
            for j in range(table.shape[1]):
                # images are independent in eval mode, so one backward of the sum gives every
                # image's own gradient
                target = activations.gather(1, table[:, j : j + 1]).sum()
                grads = torch.autograd.grad(
                    target, stage_maps, retain_graph=j < table.shape[1] - 1, allow_unused=True
                )
                heatmaps.append(_grad_cam(stage_maps, grads, size))
    return (
        torch.stack(heatmaps, dim=1).detach()
        if heatmaps
        else images.new_zeros(images.shape[0], 0, *size)
    )


def _grad_cam(
    stage_maps: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    size: torch.Size | tuple[int, int],
) -> torch.Tensor:
    """Σ over stages of the unit-scaled ReLU(Σ_c w_c A_c), scaled to [0, 1] → (B, R, R)."""
    per_stage = []
    for features, grad in zip(stage_maps, grads, strict=True):
        if grad is None:
            grad = torch.zeros_like(features)
        weights = grad.mean(dim=(-2, -1), keepdim=True)  # (B, C, 1, 1)
        cam = F.relu((weights * features).sum(dim=1, keepdim=True))  # (B, 1, h, w)
        cam = F.interpolate(cam, size=tuple(size), mode="bilinear", align_corners=False)
        # the stages differ in scale by orders of magnitude: scale each before averaging
        per_stage.append(_scale_to_unit(cam))
    return _scale_to_unit(torch.stack(per_stage).mean(dim=0))[:, 0]


def overlay_heatmap(
    image: torch.Tensor,
    heatmap: torch.Tensor | np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    cmap: str = DEFAULT_CMAP,
) -> np.ndarray:
    """Blend a colour-mapped heatmap (R, R) in [0, 1] over an image (3, R, R) in [−1, 1]
    → uint8 (R, R, 3)."""
    heat = np.asarray(torch.as_tensor(heatmap).detach().float().cpu().clamp(0, 1))
    coloured = matplotlib.colormaps[cmap](heat)[..., :3] * 255.0
    blended = (1 - alpha) * image_array(image).astype(np.float64) + alpha * coloured
    return blended.round().clip(0, 255).astype(np.uint8)


def heatmap_figure(
    image: torch.Tensor,
    heatmaps: torch.Tensor,
    concepts: Sequence[int],
    relevance: torch.Tensor | None = None,
    title: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    cmap: str = DEFAULT_CMAP,
) -> Figure:
    """Input | one overlay per concept; ``heatmaps`` (J, R, R), ``relevance`` (K,) r(x) if known."""
    n_cols = 1 + len(concepts)
    with paper_style():
        fig = new_figure(1.5 * n_cols + 0.6, 2.0)
        axes = fig.subplots(1, n_cols, squeeze=False)[0]
        for ax in axes:
            ax.set_axis_off()
        axes[0].imshow(image_array(image), interpolation="nearest")
        axes[0].set_title("input")
        for ax, k, heat in zip(axes[1:], concepts, heatmaps, strict=True):
            ax.imshow(overlay_heatmap(image, heat, alpha, cmap), interpolation="bilinear")
            label = f"concept {int(k)}"
            if relevance is not None:
                label += f"\nr = {float(relevance[int(k)]):.2f}"
            ax.set_title(label)
        mappable = matplotlib.cm.ScalarMappable(
            norm=matplotlib.colors.Normalize(0, 1), cmap=matplotlib.colormaps[cmap]
        )
        fig.colorbar(mappable, ax=list(axes), shrink=0.8, label="concept heat", pad=0.02)
        if title:
            fig.suptitle(title)
    return fig


def save_heatmap_figures(
    images: torch.Tensor,
    heatmaps: torch.Tensor,
    concepts: torch.Tensor,
    out_dir: str | Path,
    indices: Sequence[int],
    relevance: torch.Tensor | None = None,
    titles: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    npz_name: str = "heatmaps.npz",
) -> list[Path]:
    """One PNG per image (``out_dir/heatmaps-<index>.png``, or ``out_dir/names[b]``) and the raw
    maps in ``out_dir/<npz_name>`` (``heatmaps`` (B, J, R, R), ``concepts`` (B, J), ``indices``
    (B,))."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for b, index in enumerate(indices):
        fig = heatmap_figure(
            images[b],
            heatmaps[b],
            [int(k) for k in concepts[b]],
            None if relevance is None else relevance[b],
            titles[b] if titles is not None else f"test image {index}",
        )
        name = names[b] if names is not None else f"heatmaps-{index}.png"
        paths.append(save_figure(fig, out_dir / name))
    arrays = {
        "heatmaps": heatmaps.cpu().numpy(),
        "concepts": concepts.cpu().numpy(),
        "indices": np.asarray(indices),
    }
    save_npz(out_dir / npz_name, arrays)
    return paths
