"""Any folder of images sorted into one subfolder per class, for bringing your own data.

``ROOT/<class>/*.{jpg,jpeg,png,bmp,webp}``, or ``ROOT/train/<class>/...`` and
``ROOT/test/<class>/...`` when the split is given; otherwise a seeded split per class.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from viscoin.data.base import ImageFileDataset
from viscoin.data.registry import register_dataset
from viscoin.errors import UserError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUT = (
    "ROOT/<class>/*.{jpg,jpeg,png,bmp,webp}, or ROOT/train/<class>/... and ROOT/test/<class>/..."
)


@register_dataset("folder")
class ImageFolder(ImageFileDataset):
    """A folder per class; class names are the sorted folder names.

    With ``train/`` and ``test/`` subfolders, those are the splits (a class missing from one
    split still gets its label from the union of both). Otherwise each class's files (sorted by
    name) are shuffled with ``seed`` and ``test_fraction`` of them (at least one, when the class
    has two or more images) go to test. Options: ``test_fraction``, ``seed``. No attributes.
    """

    layout = LAYOUT

    def __init__(
        self,
        root: Path,
        split: str,
        resolution: int,
        augment: bool,
        *,
        test_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__(root, split, resolution, augment)
        if self.has_split_folders(root):
            self.classes = sorted(
                {p.name for s in ("train", "test") for p in _class_dirs(root / s)}
            )
            by_class = {p.name: _images(p) for p in _class_dirs(root / split)}
        else:
            if not 0.0 < test_fraction < 1.0:
                raise UserError(
                    f"folder: test_fraction must be between 0 and 1, got {test_fraction}"
                )
            self.classes = [p.name for p in _class_dirs(root)]
            by_class = {
                p.name: _split_files(_images(p), split, test_fraction, seed, p.name)
                for p in _class_dirs(root)
            }
        files, labels = [], []
        for label, name in enumerate(self.classes):
            for path in by_class.get(name, []):
                files.append(path)
                labels.append(label)
        self.set_samples(files, labels)

    @staticmethod
    def has_split_folders(root: Path) -> bool:
        return (root / "train").is_dir() and (root / "test").is_dir()

    @classmethod
    def locate(cls, root: Path) -> Path:
        top = root / "train" if cls.has_split_folders(root) else root
        if not _class_dirs(top):
            raise UserError(
                f"folder: no class subfolders in {top}. Expected layout: {LAYOUT}. "
                "Pass --data-root DIR (data.root) pointing at such a folder."
            )
        return root


def _class_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for path in dirs:
        try:  # class names go into model files and reports as UTF-8 text
            path.name.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"folder: class folder name {path.name!r} in {folder} is not valid UTF-8; rename "
                "that folder (class names are stored as text in model files)."
            ) from None
    return dirs


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )


def _split_files(
    files: list[Path], split: str, test_fraction: float, seed: int, class_name: str
) -> list[Path]:
    # One generator per class, keyed by its name, so adding a class reshuffles no other class.
    order = np.random.default_rng([seed, zlib.crc32(class_name.encode())]).permutation(len(files))
    n_test = max(1, round(len(files) * test_fraction)) if len(files) > 1 else 0
    chosen = order[:n_test] if split == "test" else order[n_test:]
    return [files[i] for i in sorted(chosen)]
