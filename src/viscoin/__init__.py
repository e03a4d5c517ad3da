"""viscoin: VisCoIN (Vision Concept-based Interpretable Networks) in plain PyTorch.

Learns a dictionary of concepts a trained classifier uses, predicts through them, and shows each
concept by regenerating the image with a pretrained StyleGAN2 with that concept turned up or down.

The public API::

    model = viscoin.load("runs/demo/viscoin")           # a run directory or a .safetensors file
    explanation = model.explain(["bird.jpg", pil_image])  # a viscoin.Explanation
"""

from __future__ import annotations

__version__ = "0.1.0"

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from viscoin.errors import UserError

if TYPE_CHECKING:
    import torch

    from viscoin.models.inputs import ImageInput
    from viscoin.models.viscoin import Explanation, Viscoin, ViscoinOutput

__all__ = [
    "Explanation",
    "ImageInput",
    "UserError",
    "Viscoin",
    "ViscoinOutput",
    "__version__",
    "from_pretrained",
    "load",
    "push_to_hub",
    "save_pretrained",
]

# Imported on first use, so that ``import viscoin`` (and the CLI's --help) stays light.
_LAZY = {
    "Explanation": "viscoin.models.viscoin",
    "Viscoin": "viscoin.models.viscoin",
    "ViscoinOutput": "viscoin.models.viscoin",
    "ImageInput": "viscoin.models.inputs",
    "from_pretrained": "viscoin.hub",
    "save_pretrained": "viscoin.hub",
    "push_to_hub": "viscoin.hub",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'viscoin' has no attribute {name!r}")


def load(path: str | os.PathLike, device: str | torch.device = "auto") -> Viscoin:
    """Load a VisCoIN ensemble saved by training or ``viscoin export`` (eval mode, frozen).

    ``path``: the model file (``RUN/checkpoints/viscoin.safetensors`` or an exported bundle) or a
    run directory holding one. ``device``: ``auto`` (CUDA when available, else CPU), ``cpu``,
    ``cuda``, ``cuda:N`` or a :class:`torch.device`.

    ``model.explain(images)`` then gives an :class:`Explanation`: the predictions of f and g,
    concept activations, relevance, each image's most relevant concepts and reconstructions.
    """
    from viscoin.models.viscoin import load_viscoin
    from viscoin.utils.device import resolve_device

    if isinstance(device, str):
        device = resolve_device(device)
    model_file = Path(path)
    if model_file.is_dir():
        model_file = model_file / "checkpoints" / "viscoin.safetensors"
        if not model_file.is_file():
            raise UserError(
                f"{path} has no checkpoints/viscoin.safetensors. Give a VisCoIN run directory "
                "(made by 'viscoin train viscoin') or an exported .safetensors file."
            )
    return load_viscoin(model_file, device)
