"""CUB-200-2011 (200 bird species, 5 994 train / 5 794 test images), the paper's main dataset,
read from the official archive layout, with its 312 binary per-image attributes when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from viscoin.data.base import ImageFileDataset, require
from viscoin.data.registry import register_dataset
from viscoin.errors import UserError

LAYOUT = (
    "ROOT/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, "
    "bounding_boxes.txt, images/<class>/<file>.jpg} (optional: ROOT/attributes.txt and "
    "CUB_200_2011/attributes/image_attribute_labels.txt for the 312 attributes); ROOT may also "
    "be the CUB_200_2011 folder itself"
)


@register_dataset("cub")
class CUB(ImageFileDataset):
    """CUB-200-2011: 200 bird species; official train/test split.

    Options: ``crop_bbox`` (crop each image to its annotated bird box before resizing).
    Attributes: the 312 binary ``has_<part>_<property>::<value>`` annotations (``is_present``),
    when ``attributes.txt`` and ``attributes/image_attribute_labels.txt`` are present. Which of
    them define a species is not annotated (``attribute_is_class_defining`` is None).
    """

    layout = LAYOUT

    def __init__(
        self, root: Path, split: str, resolution: int, augment: bool, *, crop_bbox: bool = False
    ) -> None:
        super().__init__(root, split, resolution, augment)
        base = self.base_folder(root)
        images = _read_table(base / "images.txt")
        labels = _read_table(base / "image_class_labels.txt")
        is_train = _read_table(base / "train_test_split.txt")
        self.classes = [
            _strip_number(name) for _, name in sorted(_read_table(base / "classes.txt").items())
        ]
        wanted = "1" if split == "train" else "0"
        self.image_ids = sorted((i for i, flag in is_train.items() if flag == wanted), key=int)
        boxes = None
        if crop_bbox:
            table = _read_table(require(base / "bounding_boxes.txt", "cub", LAYOUT))
            boxes = []
            for i in self.image_ids:
                x, y, w, h = (float(v) for v in table[i].split())
                boxes.append((x, y, x + w, y + h))
        self.set_samples(
            [base / "images" / images[i] for i in self.image_ids],
            [int(labels[i]) - 1 for i in self.image_ids],
            boxes,
        )
        self._attribute_files = self._attribute_files_of(base)
        if self._attribute_files is not None:
            names = _read_table(self._attribute_files[0])
            self.attribute_names = [names[k] for k in sorted(names, key=int)]
        self._attributes: torch.Tensor | None = None

    @staticmethod
    def base_folder(root: Path) -> Path:
        return root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root

    @classmethod
    def locate(cls, root: Path) -> Path:
        base = cls.base_folder(root)
        if not (base / "images.txt").is_file() and base == root:
            # name the file as it would be in the documented layout
            require(root / "CUB_200_2011" / "images.txt", "cub", LAYOUT)
        for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"):
            require(base / name, "cub", LAYOUT)
        require(base / "images", "cub", LAYOUT)
        return root

    @staticmethod
    def _attribute_files_of(base: Path) -> tuple[Path, Path] | None:
        # The archive puts attributes.txt beside CUB_200_2011/; some copies move it inside.
        names = [base.parent / "attributes.txt", base / "attributes.txt"]
        names.append(base / "attributes" / "attributes.txt")
        labels = base / "attributes" / "image_attribute_labels.txt"
        found = next((p for p in names if p.is_file()), None)
        return (found, labels) if found is not None and labels.is_file() else None

    def all_attributes(self) -> torch.Tensor:
        """``is_present`` of the 312 attributes for the split's images, LongTensor ``(N, 312)``.

        Parsed once (3.7 M lines in the real file), on first use.
        """
        if self._attribute_files is None:
            raise UserError(
                f"cub: attribute files not found under {self.root}. Expected attributes.txt beside "
                "CUB_200_2011/ and CUB_200_2011/attributes/image_attribute_labels.txt."
            )
        if self._attributes is None:
            self._attributes = _parse_image_attributes(
                self._attribute_files[1], self.image_ids, len(self.attribute_names or [])
            )
        return self._attributes


def _parse_image_attributes(path: Path, image_ids: list[str], count: int) -> torch.Tensor:
    """Lines ``image_id attribute_id is_present certainty_id time``; some lines in the real file
    carry an extra field, so only the first three columns are read (np.loadtxt: ~0.2 s for the
    3.7 M lines, where a Python loop takes seconds).
    """
    try:
        table = np.loadtxt(path, usecols=(0, 1, 2), dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise UserError(f"cub: cannot parse {path}: {exc}") from None
    ids = np.array([int(i) for i in image_ids], dtype=np.int64)
    row_of = np.full(max(int(table[:, 0].max(initial=0)), int(ids.max(initial=0))) + 1, -1)
    row_of[ids] = np.arange(len(ids))
    rows = row_of[table[:, 0]]
    keep = (rows >= 0) & (table[:, 1] >= 1) & (table[:, 1] <= count)
    values = np.zeros((len(image_ids), count), dtype=np.int64)
    values[rows[keep], table[keep, 1] - 1] = table[keep, 2]
    return torch.from_numpy(values)


def _read_table(path: Path) -> dict[str, str]:
    """``id value...`` lines → {id: rest of the line}."""
    require(path, "cub", LAYOUT)
    table = {}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            table[key] = value.strip()
    return table


def _strip_number(name: str) -> str:
    """``001.Black_footed_Albatross`` → ``Black_footed_Albatross``."""
    head, dot, tail = name.partition(".")
    return tail if dot and head.isdigit() else name
