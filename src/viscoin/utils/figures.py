"""Figure utilities shared by the interpretation and report code: one paper-like style, images as
arrays, and figures written to PNG (atomically) or to bytes — never shown on screen.

Figures are built with :class:`matplotlib.figure.Figure` directly, so no pyplot state or GUI backend
is involved and figures are freed as soon as they go out of scope.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from viscoin.utils.io import atomic_write

PAPER_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "figure.dpi": 100,
}


@contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib settings for figures meant for a paper: small serif-free fonts, light grid."""
    with matplotlib.rc_context(PAPER_STYLE):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches, not attached to any GUI."""
    return Figure(figsize=(width, height), layout="constrained")


def figure_png(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write the figure as a PNG file (atomically); returns the path."""
    path = Path(path)
    data = figure_png(fig)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path


def image_array(image: torch.Tensor) -> np.ndarray:
    """An image (3, H, W) in [−1, 1] → uint8 array (H, W, 3) for display."""
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).permute(1, 2, 0).numpy()


def data_uri(png: bytes) -> str:
    """PNG bytes → a ``data:image/png;base64,…`` URI (for self-contained pages)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 (H, W, 3) array → PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def short_label(text: str, width: int = 18) -> str:
    """A class name cut to ``width`` characters (CUB names are long), with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"
