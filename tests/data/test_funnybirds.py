"""FunnyBirds in the layout the authors' render script writes (RGBA PNGs, json part tables)."""

from __future__ import annotations

import shutil

from tests.data import builders
from viscoin.config import DataConfig
from viscoin.data import build_dataset


def birds(root, split="train"):
    return build_dataset(DataConfig(name="funnybirds", root=str(root), resolution=32), split)


def test_splits_labels_and_class_names(funnybirds_root):
    train, test = birds(funnybirds_root), birds(funnybirds_root, "test")
    assert (len(train), len(test)) == (6, 3)
    assert train.labels == [0, 0, 1, 1, 2, 2]
    assert train.classes[0] == "beak0-eye1-foot2-tail3-wing4"
    image, label = test[2]
    assert image.shape == (3, 32, 32) and label == 2  # RGBA came out RGB


def test_part_attributes_follow_the_class_and_removed_parts(funnybirds_root):
    train = birds(funnybirds_root)
    assert len(train.attribute_names) == 4 + 3 + 4 + 9 + 6
    assert "tail=tail01/green" in train.attribute_names
    assert all(train.attribute_is_class_defining)
    values = train.all_attributes()
    assert values.shape == (6, 26)
    assert values[0].sum() == 5  # one variant of each of the five parts
    assert values[1].sum() == 4  # image 000001 had its wing removed
    wing = train.attribute_names.index("wing=wing01/blue")  # class 0's wing (variant 4)
    assert values[0, wing] == 1 and values[1, wing] == 0


def test_without_json_files_class_folders_only(tmp_path, funnybirds_root):
    root = tmp_path / "fb"
    shutil.copytree(funnybirds_root / "train", root / "train")
    shutil.copytree(funnybirds_root / "test", root / "test")
    train = birds(root)
    assert train.classes == ["0", "1", "2"] and train.attribute_names is None


def test_folder_that_contains_funnybirds(tmp_path):
    builders.make_funnybirds(tmp_path / "FunnyBirds", {"train": 1, "test": 1})
    assert len(birds(tmp_path, "test")) == 3
