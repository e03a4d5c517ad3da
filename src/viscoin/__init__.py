"""viscoin: VisCoIN (Vision Concept-based Interpretable Networks) in plain PyTorch.

Learns a dictionary of concepts a trained classifier uses, predicts through them, and shows each
concept by regenerating the image with a pretrained StyleGAN2 with that concept turned up or down.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from viscoin.errors import UserError

if TYPE_CHECKING:
    from viscoin.models.viscoin import Viscoin

__all__ = ["UserError", "__version__", "load"]


def load(path: str, device: str = "cpu") -> Viscoin:
    """Load a VisCoIN ensemble saved by training or ``viscoin export`` (eval mode, frozen).

    ``model.explain(images)`` then gives logits, concept activations, relevance and reconstructions.
    """
    from viscoin.models.viscoin import load_viscoin

    return load_viscoin(path, device)
