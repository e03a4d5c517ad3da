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
        images = _Table(base / "images.txt")
        labels = _Table(base / "image_class_labels.txt")
        is_train = _Table(base / "train_test_split.txt")
        classes = _Table(base / "classes.txt")
        self.classes = [_strip_number(classes[k]) for k in sorted(classes, key=classes.number)]
        wanted = "1" if split == "train" else "0"
        for i, flag in is_train.items():
            if flag not in ("0", "1"):
                raise is_train.error(i, f"split flag {flag!r} must be 1 (train) or 0 (test)")
        self.image_ids = sorted(
            (i for i, flag in is_train.items() if flag == wanted), key=is_train.number
        )
        boxes = None
        if crop_bbox:
            require(base / "bounding_boxes.txt", "cub", LAYOUT)
            table = _Table(base / "bounding_boxes.txt")
            boxes = []
            for i in self.image_ids:
                try:
                    x, y, w, h = (float(v) for v in table.lookup(i, is_train).split())
                except ValueError:
                    raise table.error(i, "the box must be four numbers: x y width height") from None
                boxes.append((x, y, x + w, y + h))
        files, targets = [], []
        for i in self.image_ids:
            files.append(base / "images" / images.lookup(i, is_train))
            label = labels.lookup(i, is_train)
            if not (label.isdigit() and 1 <= int(label) <= len(self.classes)):
                raise labels.error(
                    i, f"label {label!r} must be a class number from 1 to {len(self.classes)}"
                )
            targets.append(int(label) - 1)
        self.set_samples(files, targets, boxes)
        self._attribute_files = self._attribute_files_of(base)
        if self._attribute_files is not None:
            names = _Table(self._attribute_files[0])
            self.attribute_names = [names[k] for k in sorted(names, key=names.number)]
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


class _Table(dict):
    """An ``id value...`` file as {id: rest of the line}, remembering each id's line number, so
    that every problem found in it names the file and the line."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        require(path, "cub", LAYOUT)
        self.path, self.line_of = path, {}
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise UserError(
                f"cub: {path} line {line} is not UTF-8 text; the file is damaged: restore it "
                "from the CUB_200_2011 archive."
            ) from None
        for n, line in enumerate(text.splitlines(), 1):
            key, _, value = line.strip().partition(" ")
            if key:
                self[key], self.line_of[key] = value.strip(), n
        if not self:
            raise UserError(f"cub: {path} is empty; restore it from the CUB_200_2011 archive.")

    def error(self, key: str, problem: str) -> UserError:
        return UserError(
            f"cub: {self.path} line {self.line_of[key]}: {problem}. Fix that line or restore the "
            "file from the CUB_200_2011 archive."
        )

    def number(self, key: str) -> int:
        """``key`` as an integer id (the sort order of the official files)."""
        if not key.isdigit():
            raise self.error(key, f"the id {key!r} must be a number")
        return int(key)

    def lookup(self, key: str, source: _Table) -> str:
        """The value of image ``key``, which ``source`` lists; a missing line is named."""
        if key not in self:
            raise UserError(
                f"cub: image {key} ({source.path.name} line {source.line_of[key]}) has no line in "
                f"{self.path}. Restore the file from the CUB_200_2011 archive."
            )
        return self[key]


def _strip_number(name: str) -> str:
    """``001.Black_footed_Albatross`` → ``Black_footed_Albatross``."""
    head, dot, tail = name.partition(".")
    return tail if dot and head.isdigit() else name
