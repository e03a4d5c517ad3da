"""Stanford Cars from the devkit .mat files (struct arrays written like the real ones)."""

from __future__ import annotations

import pytest

from tests.data import builders
from viscoin.config import DataConfig
from viscoin.data import build_dataset
from viscoin.errors import UserError


def cars(root, split="train", **options):
    cfg = DataConfig(name="stanford_cars", root=str(root), resolution=32, options=options)
    return build_dataset(cfg, split)


def test_splits_labels_and_class_names(cars_root):
    train, test = cars(cars_root), cars(cars_root, "test")
    assert (len(train), len(test)) == (6, 6)
    assert train.classes == builders.CAR_CLASSES
    assert train.labels == [0, 0, 1, 1, 2, 2]  # 1-based in the files
    assert train.files[0] == cars_root / "cars_train" / "00001.jpg"
    assert test.files[-1] == cars_root / "cars_test" / "00006.jpg"
    image, _ = test[3]
    assert image.shape == (3, 32, 32)


def test_crop_bbox_uses_one_based_inclusive_boxes(cars_root):
    cropped = cars(cars_root, crop_bbox=True)
    # x1=5 y1=4 x2=30 y2=25 (1-based, inclusive) → 26 × 22 pixels
    assert cropped.load_uint8(0).shape == (3, 22, 26)
    assert cars(cars_root).load_uint8(0).shape == (3, 36, 50)


def test_kaggle_mirror_nesting(tmp_path):
    root = builders.make_stanford_cars(tmp_path, per_class=1, kaggle_nesting=True)
    train = cars(root)
    assert len(train) == 3 and train.files[0].parent == root / "cars_train" / "cars_train"


def test_missing_test_labels_explain_where_they_come_from(tmp_path):
    root = builders.make_stanford_cars(tmp_path, per_class=1)
    (root / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(UserError, match="cars_test_annos_withlabels.mat.*test labels"):
        cars(root)
