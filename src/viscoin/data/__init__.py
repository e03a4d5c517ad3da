"""Datasets: one module per dataset, a name → class registry, and the loaders built from a config.

``build_dataset(cfg.data, "train")`` yields ``(image, label)`` with image float32 ``(3, R, R)`` in
[-1, 1]. Registered: cub, stanford_cars, celeba_hq, funnybirds, folder, shapes.
"""

from __future__ import annotations

# Importing the dataset modules registers them.
from viscoin.data import celeba_hq, cub, funnybirds, image_folder, shapes, stanford_cars  # noqa: F401
from viscoin.data.base import ImageFileDataset, VisionDataset
from viscoin.data.registry import (
    available_datasets,
    build_dataset,
    build_loader,
    dataset_class,
    default_root,
    register_dataset,
    resolve_root,
)

__all__ = [
    "ImageFileDataset",
    "VisionDataset",
    "available_datasets",
    "build_dataset",
    "build_loader",
    "dataset_class",
    "default_root",
    "register_dataset",
    "resolve_root",
]
