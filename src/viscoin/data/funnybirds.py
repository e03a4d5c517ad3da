"""FunnyBirds (Hesse et al., ICCV 2023): 50 synthetic bird classes, each one combination of part
variants (beak, eye, foot, tail, wing), read from the layout the authors' render script writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from viscoin.data.base import ImageFileDataset, require
from viscoin.data.registry import register_dataset
from viscoin.errors import UserError

LAYOUT = (
    "ROOT/{train/<class_idx>/<image_idx:06d>.png, test/<class_idx>/<image_idx:06d>.png} "
    "(optional, for part attributes: classes.json, parts.json, dataset_train.json, "
    "dataset_test.json); ROOT may also be the folder that contains FunnyBirds/"
)


@register_dataset("funnybirds")
class FunnyBirds(ImageFileDataset):
    """FunnyBirds: class = a combination of one variant of each of five parts.

    Layout (as written by the authors' ``render/create_dataset.py``): images ``train/<c>/<i>.png``
    and ``test/<c>/<i>.png`` (256 px, RGBA: alpha dropped), with ``<c>`` the class index and
    ``<i>`` the image's index in ``dataset_<split>.json``. ``classes.json`` lists
    ``{"class_idx": c, "parts": {part: variant_index}}`` and ``parts.json`` the variants of each
    part (``{"beak": [{"model": "beak01.glb", "color": "yellow"}, ...], ...}``). The part-map and
    intervention folders are not read.

    Attributes (with classes.json and parts.json): one binary attribute per part variant,
    ``part=model/colour``, 1 when the image's class uses that variant — and, with
    ``dataset_<split>.json``, when the part was not removed from that image (the render script
    drops random parts from some training images). All of them define the class.
    """

    layout = LAYOUT

    def __init__(self, root: Path, split: str, resolution: int, augment: bool) -> None:
        super().__init__(root, split, resolution, augment)
        folder = root / split
        class_dirs = [p for p in folder.iterdir() if p.is_dir()]
        if not class_dirs:
            self.set_samples([], [])  # raises: empty split
        numbered = all(p.name.isdigit() for p in class_dirs)
        class_dirs.sort(key=lambda p: int(p.name) if numbered else p.name)
        classes_json, parts_json = (
            _load_json(root / "classes.json"),
            _load_json(root / "parts.json"),
        )
        if numbered:
            count = len(classes_json) if classes_json else int(class_dirs[-1].name) + 1
            label_of = {p.name: int(p.name) for p in class_dirs}
        else:
            count = len(class_dirs)
            label_of = {p.name: i for i, p in enumerate(class_dirs)}
        self.classes = [str(c) for c in range(count)] if numbered else [p.name for p in class_dirs]
        files, labels = [], []
        for class_dir in class_dirs:
            for path in sorted(class_dir.glob("*.png")):
                files.append(path)
                labels.append(label_of[class_dir.name])
        self.set_samples(files, labels)
        if classes_json and parts_json and numbered:
            self._set_part_attributes(
                classes_json, parts_json, _load_json(root / f"dataset_{split}.json")
            )

    @classmethod
    def locate(cls, root: Path) -> Path:
        require(root / "train", "funnybirds", LAYOUT)
        require(root / "test", "funnybirds", LAYOUT)
        return root

    def _set_part_attributes(
        self, classes_json: list[dict[str, Any]], parts_json: dict[str, list], samples: Any
    ) -> None:
        variants = [
            (
                part,
                v,
                f"{part}={str(spec.get('model', v)).removesuffix('.glb')}"
                + (f"/{spec['color']}" if "color" in spec else ""),
            )
            for part, specs in parts_json.items()
            for v, spec in enumerate(specs)
        ]
        self.classes = [
            "-".join(f"{part}{entry['parts'][part]}" for part in parts_json)
            for entry in sorted(classes_json, key=lambda e: e["class_idx"])
        ]
        class_parts = {entry["class_idx"]: entry["parts"] for entry in classes_json}
        values = torch.zeros(len(self.files), len(variants), dtype=torch.long)
        for row, (path, label) in enumerate(zip(self.files, self.labels, strict=True)):
            removed = _removed_parts(samples, path, parts_json)
            chosen = class_parts.get(label, {})
            for column, (part, variant, _) in enumerate(variants):
                values[row, column] = int(chosen.get(part) == variant and part not in removed)
        self.attribute_names = [name for _, _, name in variants]
        self.attribute_is_class_defining = [True] * len(variants)
        self._attributes = values

    def all_attributes(self) -> torch.Tensor:
        """Part-variant presence of the split's images, LongTensor ``(N, 26)`` for the real data."""
        if self.attribute_names is None:
            return super().all_attributes()
        return self._attributes


def _removed_parts(samples: Any, path: Path, parts: dict[str, list]) -> set[str]:
    """Parts the render script replaced by 'placeholder' in this image (none if unknown)."""
    if not isinstance(samples, list) or not path.stem.isdigit():
        return set()
    index = int(path.stem)
    if index >= len(samples):
        return set()
    sample = samples[index]
    return {part for part in parts if sample.get(f"{part}_model") == "placeholder"}


def _load_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"funnybirds: {path} is not valid JSON ({exc})") from None
