"""The registry contract: names, options, roots (default, $VISCOIN_DATA, kagglehub cache), loaders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.data import builders
from viscoin.config import DataConfig
from viscoin.data import (
    VisionDataset,
    available_datasets,
    build_dataset,
    build_loader,
    default_root,
    register_dataset,
)
from viscoin.data.registry import _REGISTRY
from viscoin.errors import UserError


def shapes_cfg(**options) -> DataConfig:
    return DataConfig(
        name="shapes",
        resolution=32,
        batch_size=8,
        num_workers=0,
        options={"n_train": 20, "n_test": 10, **options},
    )


def test_all_datasets_are_registered():
    assert set(available_datasets()) >= {
        "cub",
        "stanford_cars",
        "celeba_hq",
        "funnybirds",
        "folder",
        "shapes",
    }


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UserError, match=r"unknown dataset 'nope'. Available: .*cub.*shapes"):
        build_dataset(DataConfig(name="nope"), "train")


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(UserError, match=r"unknown option 'colour'.*n_train=5000.*noise=0.03"):
        build_dataset(shapes_cfg(colour=1), "train")


def test_option_types_are_checked_and_ints_accepted_for_floats():
    with pytest.raises(UserError, match="n_train.*must be a int"):
        build_dataset(shapes_cfg(n_train="many"), "train")
    with pytest.raises(UserError, match="must be a int"):
        build_dataset(shapes_cfg(n_train=True), "train")
    assert build_dataset(shapes_cfg(noise=0), "train").noise == 0.0


def test_split_and_resolution_are_checked():
    with pytest.raises(UserError, match="unknown split 'val'"):
        build_dataset(shapes_cfg(), "val")
    with pytest.raises(UserError, match="resolution"):
        build_dataset(DataConfig(name="shapes", resolution=4), "train")


def test_augment_defaults_to_train_split():
    assert build_dataset(shapes_cfg(), "train").augment is True
    assert build_dataset(shapes_cfg(), "test").augment is False
    assert build_dataset(shapes_cfg(), "train", augment=False).augment is False


def test_register_a_new_dataset_with_options():
    @register_dataset("tiny_test_dataset")
    class Tiny(VisionDataset):
        """Four black images."""

        needs_root = False

        def __init__(self, root, split, resolution, augment, *, count: int = 4) -> None:
            super().__init__(root, split, resolution, augment)
            self.classes = ["a", "b"]
            self.labels = [i % 2 for i in range(count)]

        def __getitem__(self, index):
            return torch.zeros(3, self.resolution, self.resolution), self.labels[index]

    try:
        assert Tiny.default_options == {"count": 4}
        dataset = build_dataset(
            DataConfig(name="tiny_test_dataset", resolution=16, options={"count": 6}), "test"
        )
        assert len(dataset) == 6 and dataset.num_classes == 2
        assert "tiny_test_dataset" in available_datasets()
    finally:
        _REGISTRY.pop("tiny_test_dataset")


def test_default_root_follows_viscoin_data(tmp_path, monkeypatch):
    monkeypatch.setenv("VISCOIN_DATA", str(tmp_path))
    assert default_root("cub") == tmp_path / "cub"
    builders.make_cub(tmp_path / "cub", per_class=2, attributes=False)
    dataset = build_dataset(DataConfig(name="cub", resolution=16), "train")
    assert dataset.root == tmp_path / "cub" and len(dataset) == 3


def test_default_root_without_viscoin_data(monkeypatch):
    monkeypatch.delenv("VISCOIN_DATA")
    assert default_root("folder") == Path.home() / ".cache" / "viscoin" / "data" / "folder"


def test_missing_dataset_says_where_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("VISCOIN_DATA", str(tmp_path))
    with pytest.raises(UserError) as info:
        build_dataset(DataConfig(name="cub"), "train")
    message = str(info.value)
    assert str(tmp_path / "cub") in message
    assert "viscoin data download cub" in message and "--data-root" in message
    assert "CUB_200_2011/{images.txt" in message


def test_missing_file_in_given_root_is_named(tmp_path):
    root = builders.make_cub(tmp_path / "cub", per_class=1, attributes=False)
    (root / "CUB_200_2011" / "train_test_split.txt").unlink()
    with pytest.raises(UserError, match=r"missing .*CUB_200_2011/train_test_split.txt"):
        build_dataset(DataConfig(name="cub", root=str(root)), "train")


def test_root_that_is_not_a_folder(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        build_dataset(DataConfig(name="cub", root=str(tmp_path / "nowhere")), "train")


def test_a_download_in_the_kagglehub_cache_is_found(tmp_path, monkeypatch):
    cache = tmp_path / "kagglehub"
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    versions = cache / "datasets" / "wenewone" / "cub2002011" / "versions"
    builders.make_cub(versions / "1", per_class=1, attributes=False)
    builders.make_cub(versions / "2", per_class=2, attributes=False)
    dataset = build_dataset(DataConfig(name="cub", resolution=16), "test")
    assert dataset.root == versions / "2" and len(dataset) == 3


def test_a_root_with_a_wrapper_folder_is_accepted(tmp_path):
    builders.make_stanford_cars(tmp_path / "download" / "stanford_cars", per_class=1)
    dataset = build_dataset(
        DataConfig(name="stanford_cars", root=str(tmp_path / "download"), resolution=16), "train"
    )
    assert dataset.root == tmp_path / "download" / "stanford_cars" and len(dataset) == 3


def test_build_loader_batches():
    loader = build_loader(shapes_cfg(), "train")
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (8,) and labels.dtype == torch.int64
    assert len(loader) == 2  # 20 images, batch 8, drop_last on train
    test_loader = build_loader(shapes_cfg(), "test", batch_size=4)
    assert len(test_loader) == 3 and not test_loader.drop_last


def test_build_loader_with_workers_keeps_them():
    cfg = shapes_cfg()
    cfg.num_workers = 1
    loader = build_loader(cfg, "test", batch_size=5)
    assert loader.persistent_workers
    batches = [labels for _, labels in loader]
    assert torch.cat(batches).tolist() == build_dataset(cfg, "test").labels
