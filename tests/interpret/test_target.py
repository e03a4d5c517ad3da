"""Resolving what a command interprets: run directories, checkpoints inside runs, bundles."""

from pathlib import Path

import pytest

from viscoin.config import Config
from viscoin.errors import UserError
from viscoin.interpret.target import check_image_indices, check_split_classes, resolve_target


def make_run(root: Path, with_checkpoint: bool = True, with_config: bool = True) -> Path:
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    if with_config:
        cfg = Config()
        cfg.data.name, cfg.data.resolution = "shapes", 32
        cfg.save(run / "config.yaml")
    if with_checkpoint:
        (run / "checkpoints" / "viscoin.safetensors").write_bytes(b"stand-in model bytes")
    return run


def test_run_directory(tmp_path):
    run = make_run(tmp_path)
    target = resolve_target(run)
    assert target.model_file == run / "checkpoints" / "viscoin.safetensors"
    assert target.out_dir == run and target.cache_dir == run / "cache"
    assert target.cfg.data.name == "shapes" and target.cfg.data.resolution == 32
    assert target.name == "run"
    other = resolve_target(run, dataset="cub", data_root="/data/cub", out=tmp_path / "o")
    assert other.cfg.data.name == "cub" and other.cfg.data.root == "/data/cub"
    assert other.out_dir == tmp_path / "o"
    inside = resolve_target(run / "checkpoints" / "viscoin.safetensors")
    assert inside.run is not None and inside.run.path == run


def test_bundle(tmp_path, monkeypatch):
    bundle = tmp_path / "shapes-model.safetensors"
    bundle.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    target = resolve_target(bundle, dataset="shapes")
    assert target.run is None and target.out_dir == tmp_path / "viscoin-outputs" / "shapes-model"
    with pytest.raises(UserError, match="is a bundle: say which dataset.*--dataset"):
        resolve_target(bundle)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "run directory not found"),
        ("no-checkpoint", "has no checkpoints/viscoin.safetensors"),
        ("no-config", "has no config.yaml"),
        ("missing-bundle", "model file not found"),
        ("not-safetensors", "is not a .safetensors model file"),
    ],
)
def test_bad_targets(case, message, tmp_path):
    path = {
        "missing": lambda: tmp_path / "nope",
        "no-checkpoint": lambda: make_run(tmp_path, with_checkpoint=False),
        "no-config": lambda: make_run(tmp_path, with_config=False),
        "missing-bundle": lambda: tmp_path / "nope.safetensors",
        "not-safetensors": lambda: (
            (tmp_path / "model.pt").write_bytes(b"") or tmp_path / "model.pt"
        ),
    }[case]()
    with pytest.raises(UserError, match=message):
        resolve_target(path)


def test_image_indices_are_checked():
    assert check_image_indices([0, 4], 5) == [0, 4]
    with pytest.raises(UserError, match="image index 5 is out of range: the test split has 5"):
        check_image_indices([0, 5], 5)
    with pytest.raises(UserError, match="no image index"):
        check_image_indices([], 5)


def test_a_split_with_another_class_count_is_refused(tmp_path, tiny_model, tiny_dataset):
    """The check every interpretation command and the explorer make before reading a split."""
    target = resolve_target(make_run(tmp_path))
    check_split_classes(target, tiny_model, tiny_dataset)  # 3 classes each: nothing to say
    tiny_dataset_of_4 = type("Split", (), {"classes": [*tiny_dataset.classes, "extra"]})()
    with pytest.raises(UserError, match=r"predicts 3 classes but dataset 'shapes' has 4\."):
        check_split_classes(target, tiny_model, tiny_dataset_of_4)
    check_split_classes(target, tiny_model, object())  # a split that names no classes
