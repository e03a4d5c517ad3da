"""Concept strips: λ = 1 is the reconstruction, λ = 0 removes the concept, figures are written."""

import pytest
import torch
from PIL import Image

from viscoin.errors import UserError
from viscoin.interpret.amplify import concept_strips, predict, save_strips


def test_strip_columns_follow_the_multipliers(tiny_model, tiny_dataset):
    images = tiny_dataset.tensors[0][:2]
    strips = concept_strips(tiny_model, images, [[1, 4], [0]], multipliers=(0, 1, 2))
    assert [s.rows for s in strips] == [[[1], [4]], [[0]]]
    reconstruction = tiny_model.reconstruct(images)
    first = strips[0]
    assert first.generated.shape == (2, 3, 3, 32, 32)
    for row in range(2):  # λ = 1 leaves Φ unchanged: the plain reconstruction
        assert torch.allclose(first.generated[row, 1], reconstruction[0], atol=1e-5)
    out = tiny_model(images[:1])
    removed = out.concept_maps.clone()
    removed[:, 4] = 0
    expected = tiny_model.decode(removed, out.support)  # Φ' kept, constant noise
    assert torch.allclose(first.generated[1, 0], expected[0], atol=1e-5)
    doubled = out.concept_maps.clone()
    doubled[:, 1] *= 2
    assert torch.allclose(
        first.generated[0, 2], tiny_model.decode(doubled, out.support)[0], atol=1e-5
    )
    p = predict(tiny_model, first.generated)
    assert torch.equal(first.predictions.f_class, p.f_class)
    assert first.predictions.g_prob.shape == (2, 3) and (first.predictions.g_prob <= 1).all()


def test_together_mode_scales_all_selected_at_once(tiny_model, tiny_dataset):
    images = tiny_dataset.tensors[0][:2]
    strips = concept_strips(tiny_model, images, [[1, 4], []], multipliers=(0, 4), mode="together")
    assert strips[0].rows == [[1, 4]] and strips[1].rows == []
    assert strips[1].generated.shape == (0, 2, 3, 32, 32)
    out = tiny_model(images[:1])
    maps = out.concept_maps.clone()
    maps[:, [1, 4]] *= 4
    assert torch.allclose(
        strips[0].generated[0, 1], tiny_model.decode(maps, out.support)[0], atol=1e-5
    )
    with pytest.raises(UserError, match="mode"):
        concept_strips(tiny_model, images, [[1], [1]], mode="sideways")


def test_strip_figures_are_pngs(tiny_model, tiny_dataset, tmp_path):
    images = tiny_dataset.tensors[0][:2]
    strips = concept_strips(tiny_model, images, [[0, 1, 2], []], indices=[5, 9])
    paths = save_strips(
        strips, tiny_dataset.classes, tmp_path, labels=["circle", None], selection="relevance > 0.2"
    )
    assert [p.name for p in paths] == ["amplify-5.png", "amplify-9.png"]
    big, small = (Image.open(p) for p in paths)
    assert big.format == "PNG" and big.height > small.height and big.width > 400
