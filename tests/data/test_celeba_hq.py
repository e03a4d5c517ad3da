"""CelebA-HQ from the CelebAMask-HQ release layout: target attribute, splits, 40 attributes."""

from __future__ import annotations

import pytest
import torch

from tests.data import builders
from viscoin.config import DataConfig
from viscoin.data import build_dataset
from viscoin.errors import UserError


def celeba(root, split="train", **options):
    cfg = DataConfig(name="celeba_hq", root=str(root), resolution=32, options=options)
    return build_dataset(cfg, split)


def test_seeded_split_is_disjoint_complete_and_repeatable(celeba_root):
    train, test = celeba(celeba_root), celeba(celeba_root, "test")
    assert (len(train), len(test)) == (18, 2)  # test_fraction 0.1 of 20
    names = {p.name for p in train.files} | {p.name for p in test.files}
    assert len(names) == 20 and not {p.name for p in train.files} & {p.name for p in test.files}
    assert celeba(celeba_root, "test").files == test.files
    assert celeba(celeba_root, "test", seed=1).files != test.files
    assert len(celeba(celeba_root, "test", test_fraction=0.5)) == 10


def test_label_is_the_target_attribute(celeba_root):
    smiling = builders.CELEBA_ATTRIBUTES.index("Smiling")
    train = celeba(celeba_root)
    assert train.classes == ["not Smiling", "Smiling"]
    for path, label in zip(train.files, train.labels, strict=True):
        assert label == int(builders.celeba_value(int(path.stem), smiling) == 1)
    young = celeba(celeba_root, target="Young")
    assert young.classes == ["not Young", "Young"]


def test_all_forty_attributes_are_exposed(celeba_root):
    test = celeba(celeba_root, "test")
    assert test.attribute_names == builders.CELEBA_ATTRIBUTES
    values = test.all_attributes()
    assert values.shape == (2, 40) and set(values.unique().tolist()) <= {0, 1}
    expected = [int(builders.celeba_value(int(test.files[0].stem), k) == 1) for k in range(40)]
    assert values[0].tolist() == expected
    assert test.attribute_is_class_defining.count(True) == 1
    assert test.attribute_is_class_defining[builders.CELEBA_ATTRIBUTES.index("Smiling")]
    image, label = test[1]
    assert image.shape == (3, 32, 32) and label in (0, 1)


def test_unknown_target_lists_the_attributes(celeba_root):
    with pytest.raises(UserError, match="unknown target attribute 'Happy'.*Smiling"):
        celeba(celeba_root, target="Happy")


def test_celeba_partition_files_define_the_split(tmp_path):
    root = builders.make_celeba_hq(tmp_path, count=6)
    mapping = ["idx orig_idx orig_file"] + [
        f"{i} {100 + i} {100 + i + 1:06d}.jpg" for i in range(6)
    ]
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    partition = [f"{100 + i + 1:06d}.jpg {[0, 1, 2][i % 3]}" for i in range(6)]
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    test = celeba(root, "test")
    assert [p.name for p in test.files] == ["2.jpg", "5.jpg"]
    assert len(celeba(root)) == 4


def test_kagglehub_layout_with_wrapper_folder(tmp_path):
    builders.make_celeba_hq(tmp_path / "CelebAMask-HQ", count=4)
    assert len(celeba(tmp_path, test_fraction=0.25)) == 3
    assert torch.is_tensor(celeba(tmp_path, "test", test_fraction=0.25)[0][0])
