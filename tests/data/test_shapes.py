"""The built-in synthetic birds: determinism, the class rule, attributes that match the pixels."""

from __future__ import annotations

import colorsys
import time

import numpy as np
import pytest
import torch

from viscoin.config import DataConfig
from viscoin.data import build_dataset, shapes
from viscoin.errors import UserError


def make(split="train", resolution=64, **options):
    options = {"n_train": 200, "n_test": 100, **options}
    cfg = DataConfig(name="shapes", resolution=resolution, options=options)
    return build_dataset(cfg, split, augment=False)


def test_images_are_identical_across_fresh_instances():
    first, second = make(), make()
    for index in (0, 7, 199):
        assert torch.equal(first[index][0], second[index][0])
    assert np.array_equal(first.render(3), make(n_train=10).render(3))  # n_train does not matter


def test_seed_and_split_change_the_images():
    train = make()
    assert not torch.equal(train[0][0], make(seed=1)[0][0])
    assert not torch.equal(train[0][0], make("test")[0][0])
    assert make("test").labels != train.labels[:100]


@pytest.mark.parametrize("resolution", [32, 48, 64, 96])
def test_shape_dtype_and_range(resolution):
    image, label = make(resolution=resolution)[5]
    assert image.shape == (3, resolution, resolution) and image.dtype == torch.float32
    assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    assert isinstance(label, int) and 0 <= label < 10


def test_attributes_and_labels_follow_the_documented_rule():
    dataset = make()
    values = dataset.all_attributes()
    assert values.shape == (200, 7) and values.dtype == torch.long
    assert dataset.attribute_names == [
        "body_colour",
        "wing_pattern",
        "head_crest",
        "tail_shape",
        "beak_colour",
        "background",
        "facing",
    ]
    assert dataset.attribute_is_class_defining == [True, True, True, False, False, False, False]
    for row, label in zip(values.tolist(), dataset.labels, strict=True):
        body, wing, crest = shapes.CLASS_TABLE[label]
        assert dataset.attribute_values["body_colour"][row[0]] == body
        assert dataset.attribute_values["wing_pattern"][row[1]] == wing
        assert dataset.attribute_values["head_crest"][row[2]] == crest
    assert torch.equal(dataset.attributes(4), values[4])
    assert dataset.num_classes == 10 and len(set(dataset.classes)) == 10


def test_classes_are_balanced_and_nuisances_independent_of_the_class():
    values = make(n_train=3000).all_attributes()
    labels = torch.tensor(make(n_train=3000).labels)
    counts = torch.bincount(labels, minlength=10)
    assert counts.min() > 230 and counts.max() < 370  # 300 expected per class
    for column, arity in ((3, 3), (4, 3), (5, 4), (6, 2)):
        for label in range(10):
            seen = torch.bincount(values[labels == label, column], minlength=arity).float()
            assert (seen / seen.sum()).min() > 0.5 / arity


def _pixels_near(image: np.ndarray, colour, tolerance: float) -> np.ndarray:
    return np.abs(image - np.asarray(colour)).max(axis=-1) < tolerance


def test_pixels_show_the_attributes(monkeypatch):
    # Paint the pattern, crest and beak in colours used nowhere else, to find them in the image.
    monkeypatch.setattr(shapes, "PATTERN_COLOUR", np.array((1.0, 0.0, 1.0), dtype=np.float32))
    monkeypatch.setattr(shapes, "CREST_COLOUR", np.array((0.0, 1.0, 1.0), dtype=np.float32))
    monkeypatch.setattr(shapes, "BEAK_COLOURS", dict.fromkeys(shapes.BEAK_COLOURS, (1.0, 0.0, 0.5)))
    dataset = make(noise=0.0, n_train=120)
    bodies = np.array(list(shapes.BODY_COLOURS.values()))
    for index, row in enumerate(dataset.all_attributes().tolist()):
        body, wing, crest, _, _, background, facing = row
        image = dataset.render(index)
        counts = [_pixels_near(image, colour, 0.08).sum() for colour in bodies]
        assert int(np.argmax(counts)) == body
        pattern = (image[..., 0] > 0.72) & (image[..., 1] < 0.15) & (image[..., 2] > 0.72)
        assert (pattern.sum() > 0) == (wing != 0), (index, wing)
        cyan = (image[..., 0] < 0.3) & (image[..., 1] > 0.7) & (image[..., 2] > 0.7)
        assert (cyan.sum() >= 3) == (crest == 1), (index, crest)
        hue = colorsys.rgb_to_hsv(*image[0, 0])[0]
        assert round(hue * 4) % 4 == background
        beak_x = np.nonzero(_pixels_near(image, (1.0, 0.0, 0.5), 0.1))[1].mean()
        body_x = np.nonzero(_pixels_near(image, bodies[body], 0.08))[1].mean()
        assert (beak_x > body_x) == (facing == 0)


def test_augmentation_is_a_small_translation():
    dataset = make(resolution=64)
    dataset.augment = True
    raw = torch.from_numpy(dataset.render(0)).permute(2, 0, 1) * 2 - 1
    torch.manual_seed(3)
    shifted, _ = dataset[0]
    assert shifted.shape == raw.shape
    assert any(
        torch.equal(shifted[:, 8:-8, 8:-8], raw[:, 8 - dy : 56 - dy, 8 - dx : 56 - dx])
        for dy in range(-4, 5)
        for dx in range(-4, 5)
    )


def test_options_are_checked():
    with pytest.raises(UserError, match="n_test must be at least 1"):
        make("test", n_test=0)
    with pytest.raises(UserError, match="noise"):
        make(noise=2.0)


def test_describe_states_the_class_rule():
    text = make().describe()
    assert "Class rule" in text and "0 red solid bare" in text and "nuisance" in text


def test_generation_speed():
    dataset = make(n_train=1000)
    start = time.perf_counter()
    for index in range(1000):
        dataset.render(index)
    elapsed = time.perf_counter() - start
    print(f"\nshapes: 1000 images at 64 px in {elapsed:.3f} s ({1000 / elapsed:.0f} images/s)")
