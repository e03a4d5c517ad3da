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
    # Φ' kept, constant noise, Ω's input scale from the unmodified maps
    expected = tiny_model.decode(removed, out.support, reference=out.concept_maps)
    assert torch.allclose(first.generated[1, 0], expected[0], atol=1e-5)
    doubled = out.concept_maps.clone()
    doubled[:, 1] *= 2
    assert torch.allclose(
        first.generated[0, 2],
        tiny_model.decode(doubled, out.support, reference=out.concept_maps)[0],
        atol=1e-5,
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
        strips[0].generated[0, 1],
        tiny_model.decode(maps, out.support, reference=out.concept_maps)[0],
        atol=1e-5,
    )
    literal = concept_strips(
        tiny_model, images, [[1, 4], []], multipliers=(0, 4), mode="together",
        intervention="literal",
    )  # fmt: skip
    assert torch.allclose(
        literal[0].generated[0, 1], tiny_model.decode(maps, out.support)[0], atol=1e-5
    )
    assert not torch.allclose(literal[0].generated[0, 1], strips[0].generated[0, 1], atol=1e-3)
    with pytest.raises(UserError, match="mode"):
        concept_strips(tiny_model, images, [[1], [1]], mode="sideways")
    with pytest.raises(UserError, match="intervention"):
        concept_strips(tiny_model, images, [[1], [1]], intervention="global")


def test_strip_figures_are_pngs(tiny_model, tiny_dataset, tmp_path):
    images = tiny_dataset.tensors[0][:2]
    strips = concept_strips(tiny_model, images, [[0, 1, 2], []], indices=[5, 9])
    paths = save_strips(
        strips, tiny_dataset.classes, tmp_path, labels=["circle", None], selection="relevance > 0.2"
    )
    assert [p.name for p in paths] == ["amplify-5.png", "amplify-9.png"]
    big, small = (Image.open(p) for p in paths)
    assert big.format == "PNG" and big.height > small.height and big.width > 400


def test_an_isolated_intervention_changes_only_the_chosen_concept(tiny_model, tiny_dataset):
    """With Ω blind to concept k, changing φ_k leaves the image exactly as it was when Ω's input
    scale comes from the unmodified maps, and changes it when the scale is recomputed (the
    literal variant: every other concept is rescaled)."""
    from viscoin.evaluate.consistency import concept_unread

    images = tiny_dataset.tensors[0][:4]
    out = tiny_model(images)
    maps = out.concept_maps.clone()
    maps[:, 2] *= 4
    reconstruction = tiny_model.decode(out.concept_maps, out.support)
    with concept_unread(tiny_model, 2):
        isolated = tiny_model.decode_intervention(maps, out, "isolated")
        literal = tiny_model.decode_intervention(maps, out, "literal")
        blind = tiny_model.decode(out.concept_maps, out.support)
    assert torch.allclose(isolated, blind, atol=1e-6)
    assert (literal - blind).abs().max() > 1e-2
    # the weights are restored after the block
    assert torch.equal(tiny_model.decode(out.concept_maps, out.support), reconstruction)


def test_consistency_of_a_concept_omega_ignores(tiny_model, tiny_dataset):
    """The probe on a concept Ω does not read scores exactly ½ under the isolated intervention;
    under the literal one the global rescaling alone lets it separate the pairs."""
    from viscoin.evaluate.consistency import concept_consistency

    images = torch.cat([tiny_dataset.tensors[0], -tiny_dataset.tensors[0]])  # 24 images
    isolated = concept_consistency(tiny_model, images, [2], shuffles=0, unread_concepts=[2])
    literal = concept_consistency(
        tiny_model, images, [2], shuffles=0, unread_concepts=[2], intervention="literal"
    )
    assert isolated[2]["unread"] == 0.5
    assert literal[2]["unread"] > 0.75
