"""Reading attributes off reconstructions: exact inputs, counterfactuals, shifted birds, summaries."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from viscoin.data.shapes import ATTRIBUTES, Shapes
from viscoin.errors import UserError
from viscoin.evaluate.recon_attributes import (
    attributes_shown,
    can_draw_counterfactuals,
    shifted_errors,
    summarise_recon_attributes,
)

NAMES = list(ATTRIBUTES)


@pytest.fixture(scope="module")
def shapes():
    return Shapes(None, "test", 64, augment=False, n_test=40)


def signed(image: np.ndarray) -> torch.Tensor:
    """A rendered (R, R, 3) image in [0, 1] as the model's (3, R, R) in [−1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1) * 2 - 1


def test_counterfactual_changes_only_the_attribute(shapes):
    attrs = shapes.all_attributes()[0]
    own = shapes.render(0, body_colour=int(attrs[0]))
    assert np.array_equal(own, shapes.render(0))  # its own value: the same image
    other = shapes.render(0, body_colour=(int(attrs[0]) + 1) % 4)
    changed = np.abs(other - own).max(axis=2) > 1e-6
    assert 0.02 < changed.mean() < 0.5  # the bird's body, not the background
    with pytest.raises(UserError, match="unknown attribute 'colour'"):
        shapes.render(0, colour=1)
    with pytest.raises(UserError, match="head_crest must be a value index"):
        shapes.render(0, head_crest=2)
    assert can_draw_counterfactuals(shapes)
    assert not can_draw_counterfactuals(torch.utils.data.TensorDataset(torch.zeros(1)))


def test_exact_and_counterfactual_images_are_read_right(shapes):
    indices = list(range(12))
    truth = shapes.all_attributes()[indices].numpy()
    exact = torch.stack([shapes[i][0] for i in indices])
    assert np.array_equal(attributes_shown(exact, indices, shapes, NAMES), truth)
    # each image redrawn with another value of one attribute: that attribute reads the new value
    for column, name in enumerate(("body_colour", "wing_pattern", "head_crest")):
        values = (truth[:, column] + 1) % len(ATTRIBUTES[name])
        images = torch.stack(
            [
                signed(shapes.render(i, **{name: int(v)}))
                for i, v in zip(indices, values, strict=True)
            ]
        )
        assert np.array_equal(attributes_shown(images, indices, shapes, [name])[:, 0], values)


def test_a_shifted_smoothed_bird_still_shows_its_colour_and_crest(shapes):
    indices = list(range(20))
    truth = shapes.all_attributes()[indices].numpy()
    images = torch.stack([shapes[i][0] for i in indices])
    moved = torch.roll(images, shifts=(3, -2), dims=(2, 3))
    moved = F.avg_pool2d(F.pad(moved, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    columns = [NAMES.index("body_colour"), NAMES.index("head_crest")]
    shown = attributes_shown(moved, indices, shapes, ["body_colour", "head_crest"])
    assert np.array_equal(shown, truth[:, columns])
    # without the shift search the same images are misread
    unshifted = attributes_shown(moved, indices, shapes, ["body_colour", "head_crest"], max_shift=0)
    assert not np.array_equal(unshifted, truth[:, columns])
    # reconstructions at another resolution are compared at the dataset's
    big = F.interpolate(images, scale_factor=2, mode="nearest")
    assert np.array_equal(attributes_shown(big, indices, shapes, ["body_colour"]), truth[:, :1])


def test_shifted_errors_match_a_brute_force_search():
    gen = torch.Generator().manual_seed(0)
    drawings, target = torch.rand(5, 3, 16, 16, generator=gen), torch.rand(3, 16, 16, generator=gen)
    padded = F.pad(drawings, (3, 3, 3, 3), mode="replicate")
    brute = torch.stack(
        [
            ((padded[:, :, a : a + 16, b : b + 16] - target) ** 2).mean(dim=(1, 2, 3))
            for a in range(7)
            for b in range(7)
        ],
        dim=1,
    ).amin(dim=1)
    assert torch.allclose(shifted_errors(drawings, target, 3), brute, atol=1e-5)
    assert torch.allclose(
        shifted_errors(drawings, target, 0), ((drawings - target) ** 2).mean(dim=(1, 2, 3))
    )


def test_summary_counts_by_hand():
    # two attributes (a: 2 values, b: 3 values; a class-defining), three images, two classes
    truth = np.array([[0, 0], [1, 2], [1, 1]])
    shown = np.array([[0, 1], [0, 2], [1, 1]])
    summary = summarise_recon_attributes(
        shown, truth, [0, 1, 1], ["a", "b"], ["x", "y"], {"a": ["p", "q"], "b": list("uvw")}, ["a"]
    )
    assert summary["a"] == pytest.approx(2 / 3) and summary["b"] == pytest.approx(2 / 3)
    assert summary["all_class_defining"] == pytest.approx(2 / 3)
    assert summary["chance"] == {"a": 0.5, "b": pytest.approx(1 / 3)}
    assert summary["per_class"]["x"] == {"a": 1.0, "b": 0.0, "all_class_defining": 1.0}
    assert summary["per_class"]["y"]["a"] == 0.5
    assert summary["worst_class"]["a"] == {"accuracy": 0.5, "class": "y"}
    assert summary["worst_class"]["b"] == {"accuracy": 0.0, "class": "x"}
    assert summary["images"] == 3


def test_baselines_by_hand():
    truth = np.array([[0, 0], [1, 2], [1, 1], [1, 2]])
    shown = truth.copy()
    blur = np.array([[1, 2]] * 4)  # an uninformative image read as the same values every time
    summary = summarise_recon_attributes(
        shown, truth, [0, 1, 1, 0], ["a", "b"], ["x", "y"], {"a": ["p", "q"], "b": list("uvw")},
        ["a", "b"], null_readings={"mean_image": blur},
    )  # fmt: skip
    majority = summary["baselines"]["majority"]  # a → 1 (3 of 4), b → 2 (2 of 4)
    assert majority == {"a": 0.75, "b": 0.5, "all_class_defining": 0.5}
    assert summary["baselines"]["mean_image"] == majority  # the blur reads as the majority here
    assert summary["all_class_defining"] == 1.0
