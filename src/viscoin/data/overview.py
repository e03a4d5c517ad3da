"""What ``viscoin data info`` and ``viscoin data preview`` show: a summary of a dataset's splits,
classes and attributes, and a grid image of some of its samples.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.utils import make_grid

from viscoin.config import DataConfig
from viscoin.data.base import VisionDataset
from viscoin.data.registry import build_dataset, dataset_class, validate_options
from viscoin.data.transforms import to_uint8
from viscoin.errors import UserError


def _first(names: list[str], count: int) -> str:
    more = f", ... ({len(names) - count} more)" if len(names) > count else ""
    return ", ".join(names[:count]) + more


def dataset_overview(cfg: DataConfig) -> dict[str, str]:
    """Rows ``label -> text`` describing both splits of ``cfg``'s dataset (no augmentation)."""
    train = build_dataset(cfg, "train", augment=False)
    test = build_dataset(cfg, "test", augment=False)
    options = validate_options(dataset_class(cfg.name), cfg.options)
    rows = {
        "dataset": cfg.name,
        "root": str(train.root) if train.root is not None else "(generated, nothing on disk)",
        "options": ", ".join(f"{k}={v!r}" for k, v in options.items()) or "none",
        "train images": str(len(train)),
        "test images": str(len(test)),
        "classes": f"{train.num_classes}: {_first(train.classes, 6)}",
        "image": f"float32 (3, {cfg.resolution}, {cfg.resolution}) in [-1, 1]",
    }
    names = train.attribute_names
    if names is None:
        rows["attributes"] = "none"
    else:
        rows["attributes"] = f"{len(names)}: {_first(names, 8)}"
        defining = train.attribute_is_class_defining
        if defining is None:
            rows["class-defining"] = "not annotated"
        else:
            chosen = [n for n, d in zip(names, defining, strict=True) if d]
            rows["class-defining"] = f"{len(chosen)}: {_first(chosen, 8)}" if chosen else "none"
    return rows


def preview_grid(dataset: VisionDataset, n: int = 16) -> torch.Tensor:
    """``n`` samples spread evenly over the dataset, as one uint8 grid image ``(3, H, W)``."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    count = min(n, len(dataset))
    indices = torch.linspace(0, len(dataset) - 1, count).round().long().unique().tolist()
    images = torch.stack([dataset[i][0] for i in indices])
    grid = make_grid(images, nrow=math.ceil(math.sqrt(len(indices))), padding=2, pad_value=1.0)
    return to_uint8(grid)


def save_preview(cfg: DataConfig, split: str, n: int, out: str | Path) -> Path:
    """Write :func:`preview_grid` of ``split`` (no augmentation) to the image file ``out``."""
    from PIL import Image

    from viscoin.utils.io import atomic_path

    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UserError(f"--out {out}: give a .png, .jpg or .webp file name")
    grid = preview_grid(build_dataset(cfg, split, augment=False), n)
    with atomic_path(out) as tmp:
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(tmp, format=_format(out))
    return out


def _format(path: Path) -> str:
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}[path.suffix.lower()]
