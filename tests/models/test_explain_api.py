"""The checked Python API: ``viscoin.load`` → ``model.explain / amplify / heatmaps`` on whatever a
user holds (paths, PIL images, uint8 or [−1, 1] tensors), with one clear error for the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import viscoin
from tests.train.viscoin_fixtures import CLASSES, make_parts
from viscoin.data.transforms import build_transform, load_image, to_signed_float
from viscoin.models.classifier import load_classifier
from viscoin.models.stylegan2 import load_generator
from viscoin.models.viscoin import Explanation, build_core, save_viscoin

RES, K = 32, 6


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    f_path, g_path = make_parts(folder)
    torch.manual_seed(1)
    core = build_core(
        load_classifier(f_path), load_generator(g_path), RES, n_concepts=K, channels=8
    )
    save_viscoin(folder / "viscoin.safetensors", core, f_path, g_path)
    return viscoin.load(folder / "viscoin.safetensors")  # device "auto": the CPU here


def _pixels(seed: int, size: tuple[int, int] = (RES, RES)) -> np.ndarray:
    """A smooth random RGB image (H, W, 3) uint8: structure at every scale the crop could cut."""
    low = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(seed))
    image = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _same(a: Explanation, b: Explanation) -> None:
    for name in ("images", "f_logits", "g_logits", "relevance", "reconstructions"):
        torch.testing.assert_close(a[name], b[name], msg=name)
    assert torch.equal(a.top_concepts, b.top_concepts) and a.g_names == b.g_names


def test_load_picks_the_cpu_and_names_the_public_api(model):
    assert next(model.parameters()).device.type == "cpu" and not model.training
    for name in viscoin.__all__:
        assert getattr(viscoin, name) is not None, name
    assert viscoin.Explanation is Explanation and viscoin.Viscoin is type(model)


def test_explanation_fields_have_the_documented_shapes(model):
    images = torch.rand(2, 3, RES, RES) * 2 - 1
    out = model.explain(images, top_k=4)
    C = len(CLASSES)
    assert out.images.shape == (2, 3, RES, RES) and len(out) == 2
    for name, shape in (("f_logits", (2, C)), ("g_logits", (2, C)), ("f_probs", (2, C)),
                        ("g_probs", (2, C)), ("activations", (2, K)), ("relevance", (2, K)),
                        ("concept_maps", (2, K, 3, 3)), ("top_concepts", (2, 4)),
                        ("top_relevance", (2, 4)), ("reconstructions", (2, 3, RES, RES))):  # fmt: skip
        assert tuple(out[name].shape) == shape, name
    torch.testing.assert_close(out.g_probs.sum(1), torch.ones(2))
    assert out.g_classes.tolist() == out.g_logits.argmax(1).tolist()
    assert out.g_names == [CLASSES[c] for c in out.g_classes.tolist()]
    # the top concepts are the most relevant, in decreasing order, and their relevance is r's
    assert torch.equal(out.top_relevance, out.relevance.gather(1, out.top_concepts))
    assert torch.equal(out.top_relevance[:, 0], out.relevance.amax(1))
    assert (out.top_relevance[:, :-1] >= out.top_relevance[:, 1:]).all()
    with pytest.raises(KeyError, match="an Explanation has"):
        out["logits"]


def test_paths_pil_uint8_and_single_images_explain_like_the_float_batch(model, tmp_path):
    big = _pixels(0, (48, 40))  # not the model's size: resized and center-cropped
    same = _pixels(1)
    Image.fromarray(big).save(tmp_path / "a.png")
    Image.fromarray(same).save(tmp_path / "b.png")
    expected_a = to_signed_float(
        build_transform(RES, augment=False)(load_image(tmp_path / "a.png"))
    )
    expected_b = to_signed_float(torch.from_numpy(same).permute(2, 0, 1))
    reference = model.explain(torch.stack([expected_a, expected_b]))

    _same(model.explain([tmp_path / "a.png", str(tmp_path / "b.png")]), reference)
    _same(model.explain([Image.fromarray(big), Image.fromarray(same)]), reference)
    uint8 = torch.from_numpy(same).permute(2, 0, 1)
    single = model.explain(expected_b)  # (3, H, W) → a batch of one
    assert single.images.shape == (1, 3, RES, RES)
    _same(model.explain(uint8), single)
    _same(model.explain(uint8[None]), single)
    torch.testing.assert_close(single.relevance[0], reference.relevance[1])


def test_out_of_range_and_malformed_inputs_are_refused(model, tmp_path):
    good = torch.rand(1, 3, RES, RES) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    imagenet = ((good + 1) / 2 - mean) / std
    with pytest.raises(viscoin.UserError, match=r"must be in \[-1, 1\].*normalised"):
        model.explain(imagenet)
    with pytest.raises(viscoin.UserError, match=r"\[0, 255\]"):
        model.explain((good + 1) * 127.5)
    for bad, message in (
        (good[:, :, :16], "takes 32×32 images"),
        (good[:, :1], "3 channels"),
        (good[0].permute(1, 2, 0), "channels-last"),
        (good.long(), "dtype torch.int64"),
        (good[:0], "empty batch"),
        (good * float("nan"), "NaN"),
        ([], "no image given"),
        (np.zeros((RES, RES, 3)), "ndarray is not an image"),
        (tmp_path / "missing.png", "image file not found"),
    ):
        with pytest.raises(viscoin.UserError, match=message):
            model.explain(bad)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(
        viscoin.UserError,
        match=r"cannot decode .*notes.png as an image: the file is corrupt or not an image \(PNG",
    ):
        model.explain([good, tmp_path / "notes.png"])
    with pytest.raises(viscoin.UserError, match="top_k must be an integer from 1 to 6"):
        model.explain(good, top_k=7)


def test_amplify_and_heatmaps_check_their_inputs(model):
    image = torch.rand(3, RES, RES) * 2 - 1
    strips = model.amplify(image, concepts=[0, 2], multipliers=[0, 1])
    assert strips.shape == (1, 2, 3, RES, RES)
    torch.testing.assert_close(strips[:, 1], model.reconstruct(image), atol=1e-5, rtol=0)
    with pytest.raises(viscoin.UserError, match="concept index 6 is out of range"):
        model.amplify(image, concepts=[1, 6])
    with pytest.raises(viscoin.UserError, match="concept mask must be"):
        model.amplify(image, concepts=torch.ones(2, K, dtype=torch.bool))
    with pytest.raises(viscoin.UserError, match="finite"):
        model.amplify(image, concepts=[0], multipliers=[float("inf")])
    with pytest.raises(viscoin.UserError, match=r"\[0, 255\]"):
        model.amplify((image + 1) * 127.5, concepts=[0])
    out = model.explain(torch.stack([image, -image]), top_k=2)
    heat = model.heatmaps(out.images, out.top_concepts)
    assert heat.shape == (2, 2, RES, RES) and heat.min() >= 0 and heat.max() <= 1
    with pytest.raises(viscoin.UserError, match="concept index -1 is out of range"):
        model.heatmaps(image, [-1])
