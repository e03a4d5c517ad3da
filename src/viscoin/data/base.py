"""What every dataset looks like to the rest of the package, and the shared file-backed dataset.

A dataset yields ``(image, label)``: image float32 ``(3, R, R)`` in [-1, 1], label an int. It
carries its class names and, when the dataset has them, ground-truth attributes (the
attribute-alignment metric reads those). Datasets are built through :mod:`viscoin.data.registry`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from viscoin.data.download import download_hint
from viscoin.data.transforms import build_transform, crop_box, load_image, to_signed_float
from viscoin.errors import UserError

SPLITS = ("train", "test")
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, end exclusive


class VisionDataset(Dataset):
    """Base of all datasets.

    Subclasses set ``classes``, ``labels`` and, when known, ``attribute_names`` (then override
    :meth:`all_attributes`), ``attribute_values`` and ``attribute_is_class_defining``.

    Class attributes read by the registry:
        name: registry name (set by ``register_dataset``).
        layout: one line saying which files the dataset expects under its root.
        needs_root: False for datasets that are generated, not read from disk.
        default_options: accepted ``data.options`` keys with their defaults, filled by the
            registry from the constructor's keyword-only parameters.
        renders_counterfactuals: True for datasets whose ``render(index, **{attribute: value})``
            draws image ``index`` with attributes changed (read by
            :mod:`viscoin.evaluate.recon_attributes`).
    """

    name: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    needs_root: ClassVar[bool] = True
    default_options: ClassVar[dict[str, Any]] = {}
    renders_counterfactuals: ClassVar[bool] = False

    def __init__(self, root: Path | None, split: str, resolution: int, augment: bool) -> None:
        if split not in SPLITS:
            raise UserError(f"unknown split '{split}'. Use one of: {', '.join(SPLITS)}")
        self.root = root
        self.split = split
        self.resolution = resolution
        self.augment = augment
        self.classes: list[str] = []
        self.labels: list[int] = []
        self.attribute_names: list[str] | None = None
        # For categorical attributes, the name of each value (index = attribute value).
        self.attribute_values: dict[str, list[str]] | None = None
        self.attribute_is_class_defining: list[bool] | None = None

    @classmethod
    def locate(cls, root: Path) -> Path:
        """The dataset folder under ``root`` (``root`` itself or a known subfolder).

        Raises a :class:`UserError` naming the first expected file that is missing.
        """
        return root

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def without_augmentation(self) -> VisionDataset:
        """The same images and labels read with the test transform (a shallow copy).

        What a validation part held out of the training split is read through.
        """
        view = copy.copy(self)
        view.augment = False
        return view

    def all_attributes(self) -> torch.Tensor:
        """Ground-truth attributes of every image of the split, LongTensor ``(N, A)``."""
        raise UserError(f"the '{self.name}' dataset has no attribute annotations")

    def attributes(self, index: int) -> torch.Tensor:
        """Attributes of one image, LongTensor ``(A,)``."""
        return self.all_attributes()[index]

    @classmethod
    def describe(cls) -> str:
        """A few lines about the dataset: classes, options, attributes and how they relate."""
        text = inspect.cleandoc(cls.__doc__ or cls.name)
        return f"{text}\n\nExpected files: {cls.layout}" if cls.layout else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, "
            f"classes={self.num_classes}, resolution={self.resolution}, augment={self.augment})"
        )


class ImageFileDataset(VisionDataset):
    """A dataset of image files with one label (and optionally one crop box) per file."""

    def __init__(self, root: Path | None, split: str, resolution: int, augment: bool) -> None:
        super().__init__(root, split, resolution, augment)
        self.files: list[Path] = []
        self.boxes: list[Box] | None = None
        self.transform = build_transform(resolution, augment)

    def set_samples(
        self, files: Sequence[Path], labels: Sequence[int], boxes: Sequence[Box] | None = None
    ) -> None:
        """Fill the sample list; an empty split is a user error (wrong folder)."""
        if not files:
            raise UserError(
                f"the {self.split} split of the '{self.name}' dataset under {self.root} is empty. "
                f"Expected layout: {self.layout}"
            )
        self.files = list(files)
        self.labels = [int(label) for label in labels]
        self.boxes = list(boxes) if boxes is not None else None

    def without_augmentation(self) -> ImageFileDataset:
        view = super().without_augmentation()
        view.transform = build_transform(self.resolution, augment=False)
        return view

    def load_uint8(self, index: int) -> torch.Tensor:
        """The decoded (and box-cropped) image before resizing: uint8 ``(3, H, W)``."""
        image = load_image(self.files[index])
        if self.boxes is not None:
            image = crop_box(image, *self.boxes[index])
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_signed_float(self.transform(self.load_uint8(index))), self.labels[index]


def require(path: Path, dataset: str, layout: str, hint: str = "") -> Path:
    """``path`` if it exists, else a :class:`UserError` naming it and the expected layout."""
    if not path.exists():
        raise UserError(
            f"{dataset}: missing {path}. Expected layout: {layout}. {hint or download_hint(dataset)}"
        )
    return path
