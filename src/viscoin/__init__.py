"""viscoin: VisCoIN (Vision Concept-based Interpretable Networks) in plain PyTorch.

Learns a dictionary of concepts a trained classifier uses, predicts through them, and shows each
concept by regenerating the image with a pretrained StyleGAN2 with that concept turned up or down.
"""

from __future__ import annotations

__version__ = "0.1.0"

from viscoin.errors import UserError

__all__ = ["UserError", "__version__"]
