"""What is installed and available offline, for ``viscoin info`` and for clear error messages."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path

import torch

import viscoin

OPTIONAL = {
    "lpips": "metrics (LPIPS loss and metric)",
    "torchmetrics": "metrics (FID)",
    "torch_fidelity": "metrics (FID Inception weights)",
    "kagglehub": "data (dataset downloads)",
    "tensorboard": "TensorBoard logging",
}


def torch_hub_dir() -> Path:
    """Where torch/torchvision cache downloaded weights (``$TORCH_HOME/hub``)."""
    return Path(torch.hub.get_dir())


def cached_torchvision_weights() -> list[str]:
    """File names of the torchvision checkpoints already in the local cache."""
    folder = torch_hub_dir() / "checkpoints"
    return sorted(p.name for p in folder.glob("*.pth")) if folder.is_dir() else []


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict[str, dict[str, str]]:
    """Sections of ``name -> value`` lines."""
    devices = {"cpu": f"{os.cpu_count()} cores"}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices[f"cuda:{i}"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    else:
        devices["cuda"] = "not available"
    optional = {}
    for module, purpose in OPTIONAL.items():
        found = importlib.util.find_spec(module) is not None
        optional[module] = f"{'installed' if found else 'missing'} — {purpose}"
    cached = cached_torchvision_weights()
    weights = {
        "torch hub cache": str(torch_hub_dir()),
        "torchvision weights": ", ".join(cached)
        if cached
        else "none cached (ImageNet init needs network)",
        "LPIPS VGG backbone": "cached"
        if any(n.startswith("vgg16") for n in cached)
        else "not cached",
        "FID Inception": "cached" if _inception_cached() else "not cached",
    }
    return {
        "versions": {
            "viscoin": viscoin.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": _version("torchvision"),
        },
        "devices": devices,
        "optional parts": optional,
        "pretrained weights offline": weights,
    }


def _inception_cached() -> bool:
    folder = torch_hub_dir() / "checkpoints"
    return folder.is_dir() and any("inception" in p.name.lower() for p in folder.iterdir())
