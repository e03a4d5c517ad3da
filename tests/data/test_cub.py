"""CUB-200-2011 from the official archive layout."""

from __future__ import annotations

import pytest
import torch

from tests.data import builders
from viscoin.config import DataConfig
from viscoin.data import build_dataset
from viscoin.errors import UserError


def cub(root, split="train", **options):
    return build_dataset(
        DataConfig(name="cub", root=str(root), resolution=32, options=options), split
    )


def test_splits_labels_and_classes(cub_root):
    train, test = cub(cub_root), cub(cub_root, "test")
    assert (len(train), len(test)) == (6, 6)  # 3 classes × 4 images, alternating
    assert train.classes == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert train.num_classes == 3
    assert train.labels == [0, 0, 1, 1, 2, 2]
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 0
    assert float(image.min()) >= -1 and float(image.max()) <= 1


def test_root_can_be_the_cub_folder_itself(cub_root):
    inner = cub(cub_root / "CUB_200_2011", "test")
    assert len(inner) == 6 and inner.attribute_names is not None


def test_crop_bbox_crops_to_the_float_box(cub_root):
    plain, cropped = cub(cub_root), cub(cub_root, crop_bbox=True)
    assert plain.load_uint8(0).shape == (3, 30, 44)
    # box x=4.0 y=3.5 w=20.0 h=15.25 → columns 4..24, rows 3..19 (end rounded up)
    assert cropped.load_uint8(0).shape == (3, 16, 20)
    assert cropped[0][0].shape == (3, 32, 32)


def test_attributes_are_read_with_the_six_field_lines(cub_root):
    train = cub(cub_root)
    assert len(train.attribute_names) == 312
    assert train.attribute_names[0] == "has_bill_shape::curved_(up_or_down)"
    assert train.attribute_is_class_defining is None
    values = train.all_attributes()
    assert values.shape == (6, 312) and values.dtype == torch.long
    image_ids = [int(i) for i in train.image_ids]
    expected = torch.tensor([[int((i + k) % 3 == 0) for k in range(1, 313)] for i in image_ids])
    assert torch.equal(values, expected)
    assert torch.equal(train.attributes(2), expected[2])
    # image 2 (train) has the line with an extra field at attribute 5: (2 + 5) % 3 != 0
    assert int(values[image_ids.index(2), 4]) == 0


def test_without_attribute_files(tmp_path):
    root = builders.make_cub(tmp_path, per_class=1, attributes=False)
    dataset = cub(root)
    assert dataset.attribute_names is None
    with pytest.raises(UserError, match="attribute files not found"):
        dataset.all_attributes()


def test_missing_image_is_named_when_loaded(tmp_path):
    root = builders.make_cub(tmp_path, per_class=1, attributes=False)
    dataset = cub(root, "test")
    dataset.files[0].unlink()
    with pytest.raises(UserError, match=f"not found: {dataset.files[0]}"):
        dataset[0]


def _edit(root, name, edit):
    path = root / "CUB_200_2011" / name
    path.write_bytes(edit(path.read_bytes()))


DAMAGED = [
    ("images.txt", lambda b: b"\n".join(x for x in b.split(b"\n") if not x.startswith(b"2 ")),
     r"image 2 \(train_test_split.txt line 2\) has no line in .*images\.txt"),
    ("image_class_labels.txt", lambda b: b.replace(b"4 2\n", b"4 two\n"),
     r"image_class_labels\.txt line 4: label 'two' must be a class number from 1 to 3"),
    ("image_class_labels.txt", lambda b: b.replace(b"4 2\n", b"4 9\n"),
     r"image_class_labels\.txt line 4: label '9' must be a class number from 1 to 3"),
    ("image_class_labels.txt", lambda b: b.replace(b"4 2\n", b""),
     r"image 4 \(train_test_split\.txt line 4\) has no line in .*image_class_labels\.txt"),
    ("images.txt", lambda b: b"", r"images\.txt is empty"),
    ("bounding_boxes.txt", lambda b: b.replace(b"4 4.0 3.5", b"4 4.0 x3.5"),
     r"bounding_boxes\.txt line 4: the box must be four numbers"),
    ("classes.txt", lambda b: b.replace(b"2 002", b"2 \xff\xfe002"),
     r"classes\.txt line 2 is not UTF-8 text"),
    ("train_test_split.txt", lambda b: b.replace(b"4 1\n", b"4 maybe\n"),
     r"train_test_split\.txt line 4: split flag 'maybe' must be 1 \(train\) or 0 \(test\)"),
    ("train_test_split.txt", lambda b: b.replace(b"4 1\n", b"four 1\n"),
     r"train_test_split\.txt line 4: the id 'four' must be a number"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "edit", "message"), DAMAGED)
def test_damaged_annotation_files_name_file_and_line(tmp_path, name, edit, message):
    root = builders.make_cub(tmp_path, per_class=2, attributes=False)
    _edit(root, name, edit)
    with pytest.raises(UserError, match=message) as info:
        cub(root, "train", crop_bbox=True)
    assert "\n" not in str(info.value)


def test_a_damaged_file_through_the_cli_is_one_line(tmp_path, cli):
    root = builders.make_cub(tmp_path / "cub", per_class=2, attributes=False)
    _edit(root, "train_test_split.txt", lambda b: b.replace(b"4 1\n", b"4 maybe\n"))
    proc = cli("data", "info", "cub", "--data-root", str(root))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "line 4" in proc.stderr
