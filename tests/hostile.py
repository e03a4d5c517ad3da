"""Weights files a user might be handed: a pickle that runs code when unpickled, a truncated one.

The payload only creates a marker file, so a test can tell whether anything unpickled it.
"""

from __future__ import annotations

import pathlib
from pathlib import Path

import torch


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: what any code-running pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def hostile_weights(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file that looks like a state dict and creates ``marker`` when unpickled."""
    torch.save({"conv.weight": torch.zeros(1), "conv.bias": _Payload(marker)}, path)
    return path


def truncated_weights(path: Path) -> Path:
    """A real state dict cut in half, as an interrupted copy leaves it."""
    torch.save({"w": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path
