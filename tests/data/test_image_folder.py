"""Bring-your-own folders: seeded split, split folders, mixed image modes, corrupt files."""

from __future__ import annotations

import pytest
import torch

from tests.data.builders import write_image
from viscoin.config import DataConfig
from viscoin.data import build_dataset
from viscoin.errors import UserError

MODES = [("a.jpg", "L"), ("b.png", "RGBA"), ("c.jpg", "CMYK"), ("d.png", "P"), ("e.bmp", "RGB")]


def folder(root, split="train", **options):
    cfg = DataConfig(name="folder", root=str(root), resolution=24, options=options)
    return build_dataset(cfg, split)


@pytest.fixture
def tree(tmp_path):
    for c, name in enumerate(["cat", "dog"]):
        for i in range(5):
            fname, mode = MODES[i]
            write_image(tmp_path / name / fname, (30, 20), mode=mode, seed=10 * c + i)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    return tmp_path


def test_seeded_split_per_class(tree):
    train, test = folder(tree), folder(tree, "test")
    assert train.classes == ["cat", "dog"]
    assert (len(train), len(test)) == (8, 2)  # one of five per class in test
    assert sorted(test.labels) == [0, 1]
    assert not set(train.files) & set(test.files)
    assert folder(tree, "test").files == test.files
    assert len(folder(tree, "test", test_fraction=0.6)) == 6
    # every mode comes out as a 3-channel image in range
    for i in range(len(train)):
        image, _ = train[i]
        assert image.shape == (3, 24, 24) and -1 <= float(image.min()) <= float(image.max()) <= 1


def test_split_folders_are_used(tmp_path):
    write_image(tmp_path / "train" / "a" / "1.png")
    write_image(tmp_path / "train" / "b" / "1.png")
    write_image(tmp_path / "test" / "b" / "2.webp")
    train, test = folder(tmp_path), folder(tmp_path, "test")
    assert train.classes == test.classes == ["a", "b"]
    assert (len(train), len(test)) == (2, 1) and test.labels == [1]


def test_corrupt_image_names_the_file(tree):
    broken = tree / "cat" / "z_broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 garbage")
    dataset = folder(tree, "test", test_fraction=0.99)
    index = dataset.files.index(broken)
    with pytest.raises(UserError, match="z_broken.jpg"):
        dataset[index]
    assert torch.is_tensor(dataset[(index + 1) % len(dataset)][0])


def test_empty_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no class subfolders"):
        folder(tmp_path)


def test_without_augmentation_reads_the_test_transform(tree):
    """What a validation part held out of the train split is read through (train classifier)."""
    train = folder(tree)
    plain = build_dataset(
        DataConfig(name="folder", root=str(tree), resolution=24), "train", augment=False
    )
    view = train.without_augmentation()
    assert (view.augment, train.augment) == (False, True) and view.files == train.files
    for i in range(len(train)):
        assert torch.equal(view[i][0], plain[i][0]) and view[i][1] == plain[i][1]
    torch.manual_seed(0)
    augmented = [train[i][0] for i in range(len(train))]
    assert any(not torch.equal(a, plain[i][0]) for i, a in enumerate(augmented))  # untouched


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_in_a_loader_worker_is_one_error_line(tmp_path, workers):
    from tests.conftest import run_cli

    root = tmp_path / "data"
    for c, name in enumerate(["cat", "dog"]):
        for i in range(4):
            write_image(root / name / f"{i}.png", (36, 36), seed=10 * c + i)
    (root / "dog" / "2.png").write_bytes(b"not an image at all")
    proc = run_cli(
        "train", "classifier", "--dataset", "folder", "--data-root", str(root),
        "--set", "data.resolution=32", "--set", f"data.num_workers={workers}",
        "--set", "data.options.test_fraction=0.25", "--set", "classifier.arch=resnet18",
        "--set", "classifier.epochs=1", "--set", "classifier.batch_size=6",
        "--set", "classifier.val_fraction=0", "--device", "cpu", "--quiet",
        "--runs-dir", str(tmp_path / "runs"), "--name", "f",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "2.png" in lines[0], lines


def test_a_class_folder_name_that_is_not_utf8_is_named(tmp_path):
    import os

    write_image(tmp_path / "cat" / "a.png", (30, 20))
    write_image(tmp_path / "cat" / "b.png", (30, 20))
    bad = os.fsdecode(b"d\xffg")
    try:
        (tmp_path / bad).mkdir()
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    write_image(tmp_path / bad / "a.png", (30, 20))
    with pytest.raises(UserError, match=r"class folder name 'd\\udcffg' .* not valid UTF-8"):
        folder(tmp_path)
