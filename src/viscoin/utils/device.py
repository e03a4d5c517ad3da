"""Device selection and seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from viscoin.errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` are checked."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {spec} was asked for but no CUDA GPU is available. Use --device cpu."
            )
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
        return device
    raise UserError(f"unknown device '{spec}'. Use auto, cpu, cuda or cuda:N.")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
