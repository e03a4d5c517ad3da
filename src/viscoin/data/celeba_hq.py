"""CelebA-HQ (30 000 faces) as a binary classification of one of its 40 attributes, read from the
CelebAMask-HQ release layout; all 40 attributes are exposed for the alignment metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from viscoin.data.base import ImageFileDataset, require
from viscoin.data.registry import register_dataset
from viscoin.errors import UserError

ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
IMAGE_FOLDER = "CelebA-HQ-img"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
PARTITION_FILE = "list_eval_partition.txt"
LAYOUT = (
    f"ROOT/{{{IMAGE_FOLDER}/<idx>.jpg, {ATTRIBUTE_FILE}}} (the CelebAMask-HQ release; optional "
    f"{MAPPING_FILE} + CelebA's {PARTITION_FILE} for the CelebA split); ROOT may also be the "
    "folder that contains CelebAMask-HQ/"
)


@register_dataset("celeba_hq")
class CelebAHQ(ImageFileDataset):
    """CelebA-HQ: label = whether the face has the ``target`` attribute (2 classes).

    The default target is "Smiling": close to balanced (about half of the faces), visible in one
    region (the mouth), and the attribute counterfactual-explanation work on CelebA-HQ most often
    uses, so concept visualisations are easy to check by eye. Any of the 40 names works, e.g.
    ``--set data.options.target=Young``.

    Split: with ``CelebA-HQ-to-CelebA-mapping.txt`` and CelebA's ``list_eval_partition.txt`` in
    ROOT, CelebA's own partition (train+val → train, test → test); otherwise a seeded random
    split with ``test_fraction`` of the images in test (options ``test_fraction``, ``seed``).
    Attributes: the 40 binary CelebA attributes (1 present, 0 absent); only ``target`` defines
    the class.
    """

    layout = LAYOUT

    def __init__(
        self,
        root: Path,
        split: str,
        resolution: int,
        augment: bool,
        *,
        target: str = "Smiling",
        test_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__(root, split, resolution, augment)
        names, files, values = _read_attributes(root / ATTRIBUTE_FILE)
        if target not in names:
            raise UserError(
                f"celeba_hq: unknown target attribute '{target}'. Attributes: {', '.join(names)}"
            )
        rows = self._split_rows(root, files, split, test_fraction, seed)
        column = names.index(target)
        self.target = target
        self.classes = [f"not {target}", target]
        self.attribute_names = names
        self.attribute_is_class_defining = [name == target for name in names]
        self._attributes = torch.from_numpy(values[rows])
        self.set_samples(
            [root / IMAGE_FOLDER / files[r] for r in rows],
            values[rows, column].tolist(),
        )

    @classmethod
    def locate(cls, root: Path) -> Path:
        if not (root / ATTRIBUTE_FILE).is_file() and (root / "CelebAMask-HQ").is_dir():
            root = root / "CelebAMask-HQ"
        require(root / ATTRIBUTE_FILE, "celeba_hq", LAYOUT)
        require(root / IMAGE_FOLDER, "celeba_hq", LAYOUT)
        return root

    @staticmethod
    def _split_rows(
        root: Path, files: list[str], split: str, test_fraction: float, seed: int
    ) -> np.ndarray:
        partition = _celeba_partition(root, files)
        if partition is not None:
            is_test = partition == 2
        else:
            if not 0.0 < test_fraction < 1.0:
                raise UserError(
                    f"celeba_hq: test_fraction must be between 0 and 1, got {test_fraction}"
                )
            order = np.random.default_rng(seed).permutation(len(files))
            is_test = np.zeros(len(files), dtype=bool)
            is_test[order[: round(len(files) * test_fraction)]] = True
        return np.flatnonzero(is_test if split == "test" else ~is_test)

    def all_attributes(self) -> torch.Tensor:
        """The 40 binary attributes of the split's images, LongTensor ``(N, 40)``."""
        return self._attributes


def _read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Line 1: image count; line 2: the 40 names; then ``file v1 ... v40`` with 1 / -1.

    Returns names, file names and a ``(N, 40)`` int64 array of 0/1.
    """
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise UserError(f"celeba_hq: {path} is too short to be the attribute file")
    names = lines[1].split()
    files, rows = [], []
    for number, line in enumerate(lines[2:], 3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise UserError(
                f"celeba_hq: line {number} of {path} has {len(fields) - 1} values, "
                f"expected {len(names)}"
            )
        files.append(fields[0])
        rows.append([v == "1" for v in fields[1:]])
    return names, files, np.array(rows, dtype=np.int64).reshape(len(files), len(names))


def _celeba_partition(root: Path, files: list[str]) -> np.ndarray | None:
    """CelebA's partition (0 train, 1 val, 2 test) of each CelebA-HQ file, when both files exist."""
    mapping_path, partition_path = root / MAPPING_FILE, root / PARTITION_FILE
    if not (mapping_path.is_file() and partition_path.is_file()):
        return None
    partition_of = {}
    for line in partition_path.read_text().splitlines():
        fields = line.replace(",", " ").split()
        if len(fields) == 2 and fields[1].isdigit():
            partition_of[fields[0]] = int(fields[1])
    original_of = {}
    for line in mapping_path.read_text().splitlines()[1:]:  # header: idx orig_idx orig_file
        fields = line.split()
        if len(fields) >= 3:
            original_of[f"{fields[0]}.jpg"] = fields[2]
    try:
        return np.array([partition_of[original_of[name]] for name in files])
    except KeyError as exc:
        raise UserError(
            f"celeba_hq: {exc.args[0]} is missing from {mapping_path} or {partition_path}; "
            "remove both files to use a seeded random split instead."
        ) from None
