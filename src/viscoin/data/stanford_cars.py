"""Stanford Cars (196 car models, 8 144 train / 8 041 test images) read from the official devkit
``.mat`` annotations, with the test labels from ``cars_test_annos_withlabels.mat``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from viscoin.data.base import ImageFileDataset, require
from viscoin.data.registry import register_dataset
from viscoin.errors import UserError

LAYOUT = (
    "ROOT/{cars_train/*.jpg, cars_test/*.jpg, devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
    "cars_test_annos_withlabels.mat}"
)


@register_dataset("stanford_cars")
class StanfordCars(ImageFileDataset):
    """Stanford Cars: 196 classes (make, model, year); official train/test split.

    Options: ``crop_bbox`` (crop each image to its annotated car box before resizing).
    Also accepted: the Kaggle mirror nesting ``cars_train/cars_train/`` and
    ``car_devkit/devkit/``, and the test labels inside ``devkit/``. No attributes.
    """

    layout = LAYOUT

    def __init__(
        self, root: Path, split: str, resolution: int, augment: bool, *, crop_bbox: bool = False
    ) -> None:
        super().__init__(root, split, resolution, augment)
        paths = self.paths(root)
        self.classes = [str(name).strip() for name in _load_mat(paths["meta"])["class_names"]]
        annotations = _annotations(paths[f"{split}_annos"])
        images = paths[f"{split}_images"]
        files, labels, boxes = [], [], []
        for item in annotations:
            if "class" not in item:
                raise UserError(
                    f"stanford_cars: {paths[f'{split}_annos']} has no class labels. Use "
                    "cars_test_annos_withlabels.mat for the test split."
                )
            label = int(item["class"]) - 1  # 1-based in the .mat files
            if not 0 <= label < len(self.classes):
                raise UserError(
                    f"stanford_cars: class {item['class']} of {item['fname']} is outside "
                    f"1..{len(self.classes)} in {paths[f'{split}_annos']}"
                )
            files.append(images / str(item["fname"]))
            labels.append(label)
            # devkit boxes are 1-based inclusive pixel coordinates
            x1, y1 = float(item["bbox_x1"]) - 1, float(item["bbox_y1"]) - 1
            boxes.append((x1, y1, float(item["bbox_x2"]), float(item["bbox_y2"])))
        self.set_samples(files, labels, boxes if crop_bbox else None)

    @staticmethod
    def paths(root: Path) -> dict[str, Path]:
        """The files this dataset reads, accepting the official and the Kaggle-mirror nesting."""

        def first(*candidates: Path) -> Path:
            return next((p for p in candidates if p.exists()), candidates[0])

        devkit = first(root / "devkit", root / "car_devkit" / "devkit")
        train = root / "cars_train"
        test = root / "cars_test"
        return {
            "meta": devkit / "cars_meta.mat",
            "train_annos": devkit / "cars_train_annos.mat",
            "test_annos": first(
                root / "cars_test_annos_withlabels.mat", devkit / "cars_test_annos_withlabels.mat"
            ),
            "train_images": train / "cars_train" if (train / "cars_train").is_dir() else train,
            "test_images": test / "cars_test" if (test / "cars_test").is_dir() else test,
        }

    @classmethod
    def locate(cls, root: Path) -> Path:
        for key, path in cls.paths(root).items():
            hint = (
                "The test labels come with the torchvision/Kaggle copy of the dataset "
                "(cars_test_annos_withlabels.mat); the devkit's cars_test_annos.mat has none."
                if key == "test_annos"
                else ""
            )
            require(path, "stanford_cars", LAYOUT, hint)
        return root


def _load_mat(path: Path) -> dict[str, Any]:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path), simplify_cells=True)
    except Exception as exc:
        raise UserError(f"stanford_cars: cannot read {path} ({exc}); re-download it.") from None


def _annotations(path: Path) -> list[dict[str, Any]]:
    annotations = _load_mat(path).get("annotations")
    if annotations is None:
        raise UserError(f"stanford_cars: {path} has no 'annotations' struct array")
    # a struct array of one element comes back as a dict, not a list of dicts
    return [annotations] if isinstance(annotations, dict) else list(annotations)
