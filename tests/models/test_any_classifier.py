"""f as any classifier: default layers per family, token maps as grids, normalisation, files that
round-trip by architecture name, old files, and the refusals (unknown layers, maps too small,
files that are no classifier, weights of another class count)."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from safetensors import safe_open

from tests.hostile import hostile_weights
from viscoin.errors import UserError
from viscoin.models.classifier import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    build_classifier,
    load_classifier,
    save_classifier,
)
from viscoin.models.concepts import ConceptExtractor
from viscoin.utils.checkpoint import save_checkpoint


def tiny_vit(image_size: int = 48, classes: int = 3) -> torchvision.models.VisionTransformer:
    return torchvision.models.VisionTransformer(
        image_size=image_size,
        patch_size=8,
        num_layers=4,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=classes,
    )


@pytest.mark.parametrize(
    "arch",
    [
        "torchvision:resnet18",
        "torchvision:efficientnet_b0",
        "torchvision:mobilenet_v2",
        "torchvision:mobilenet_v3_small",
        "torchvision:mobilenet_v3_large",
        "torchvision:regnet_y_400mf",
        "torchvision:shufflenet_v2_x0_5",
        "torchvision:densenet121",
    ],
)
def test_default_layers_are_the_last_three_stages(arch):
    """The table's layers are the outputs at strides 8, 16 and 32, measured at 64 px."""
    f = Classifier(arch, 3)
    assert [(h, w) for _, h, w in f.feature_shapes(64)] == [(8, 8), (4, 4), (2, 2)]


def test_timm_defaults_follow_its_feature_info():
    timm = pytest.importorskip("timm")
    convnext = Classifier("timm:convnext_atto", 3, options={"dims": (8, 16, 24, 32)})
    assert convnext.layers == ["stages.1", "stages.2", "stages.3"]
    assert convnext.feature_shapes(64) == [(16, 8, 8), (24, 4, 4), (32, 2, 2)]
    vit = Classifier("timm:vit_tiny_patch16_224", 3, options={"img_size": 64, "depth": 4})
    assert vit.layers == ["blocks.1", "blocks.2", "blocks.3"]
    assert isinstance(vit.backbone, timm.models.VisionTransformer)


def _tokens(module: torch.nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    store = []
    handle = module.get_submodule(name).register_forward_hook(lambda m, i, o: store.append(o))
    module(x)
    handle.remove()
    return store[0]


def test_vit_tokens_become_a_grid_without_the_class_token():
    f = Classifier(None, 3, backbone=tiny_vit(48)).eval()
    assert f.layers == [f"encoder.layers.encoder_layer_{i}" for i in (1, 2, 3)]
    assert f.prefix_tokens == 1
    images = torch.rand(2, 3, 48, 48) * 2 - 1
    _, maps = f.forward_features(images)
    tokens = _tokens(f.backbone, f.layers[-1], f.normalise(images))  # (2, 1 + 36, 16)
    assert tokens.shape == (2, 37, 16) and maps[-1].shape == (2, 16, 6, 6)
    # patch (row i, column j) is token 1 + 6 i + j
    assert torch.equal(maps[-1][:, :, 2, 5], tokens[:, 1 + 6 * 2 + 5])
    assert torch.equal(maps[-1][:, :, 5, 0], tokens[:, 1 + 6 * 5])


def test_timm_prefix_tokens_are_dropped():
    pytest.importorskip("timm")
    f = Classifier(
        "timm:deit_tiny_distilled_patch16_224", 3, options={"img_size": 64, "depth": 2}
    ).eval()
    assert f.prefix_tokens == 2  # class and distillation tokens
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    _, maps = f.forward_features(images)
    tokens = _tokens(f.backbone, f.layers[-1], f.normalise(images))
    assert tokens.shape[1] == 2 + 16 and maps[-1].shape == (1, 192, 4, 4)
    assert torch.equal(maps[-1][0, :, 0, 0], tokens[0, 2])
    assert torch.equal(maps[-1][0, :, 3, 1], tokens[0, 2 + 13])


def test_normalisation_comes_from_the_model_or_the_config():
    grey = torch.zeros(1, 3, 8, 8)  # 0.5 in [0, 1]
    f = Classifier("torchvision:mobilenet_v3_small", 3)
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(f.normalise(grey)[0, :, 0, 0], expected)
    g = Classifier("torchvision:mobilenet_v3_small", 3, mean=(0.5, 0.5, 0.5), std=(0.25,) * 3)
    assert torch.allclose(g.normalise(grey), torch.zeros(1, 3, 8, 8))
    assert g.normalise(torch.ones(1, 3, 8, 8)).allclose(torch.full((1, 3, 8, 8), 2.0))


def test_timm_normalisation_from_pretrained_cfg():
    pytest.importorskip("timm")
    vit = Classifier("timm:vit_tiny_patch16_224", 3, options={"img_size": 64, "depth": 1})
    assert vit.mean_values == [0.5, 0.5, 0.5] and vit.std_values == [0.5, 0.5, 0.5]
    assert torch.allclose(
        vit.normalise(torch.full((1, 3, 4, 4), 0.3)), torch.full((1, 3, 4, 4), 0.3)
    )


def test_input_size_resizes_for_a_fixed_size_model():
    f = Classifier(None, 3, backbone=tiny_vit(48), input_size=48).eval()
    logits, maps = f.forward_features(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert logits.shape == (2, 3) and maps[0].shape == (2, 16, 6, 6)
    with pytest.raises(UserError, match="does not run on 32 px images"):
        Classifier(None, 3, backbone=tiny_vit(48)).feature_shapes(32)


def _round_trip(f: Classifier, tmp_path, resolution: int) -> Classifier:
    path = save_classifier(f, tmp_path / "f.safetensors", classes=["a", "b", "c"])
    g = load_classifier(path)
    assert g.config() == f.config() and g.classes == ["a", "b", "c"]
    images = torch.rand(2, 3, resolution, resolution) * 2 - 1
    f.eval()
    logits_f, maps_f = f.forward_features(images)
    logits_g, maps_g = g.forward_features(images)
    assert torch.equal(logits_f, logits_g)
    assert all(torch.equal(a, b) for a, b in zip(maps_f, maps_g, strict=True))
    return g


def test_torchvision_round_trip_keeps_architecture_layers_and_normalisation(tmp_path):
    f = Classifier(
        "torchvision:mobilenet_v3_small", 3, layers=["features.2", "features.8"], mean=(0.4,) * 3
    )
    g = _round_trip(f, tmp_path, 64)
    with safe_open(str(tmp_path / "f.safetensors"), "pt") as fh:
        config = json.loads(fh.metadata()["viscoin.config"])
    assert config["arch"] == "torchvision:mobilenet_v3_small" and config["num_classes"] == 3
    assert config["layers"] == ["features.2", "features.8"] and config["mean"] == [0.4] * 3
    assert g.feature_shapes(64) == [(24, 8, 8), (48, 4, 4)]


def test_timm_round_trip_with_options(tmp_path):
    pytest.importorskip("timm")
    f = Classifier("timm:vit_tiny_patch16_224", 3, options={"img_size": 48, "depth": 2})
    g = _round_trip(f, tmp_path, 48)
    assert g.options == {"img_size": 48, "depth": 2} and len(g.backbone.blocks) == 2


def test_a_file_of_the_first_format_loads_as_before(tmp_path):
    """Files written before the architecture string grew: config {arch, num_classes} only."""
    reference = Classifier("resnet18", 4).eval()
    path = save_checkpoint(
        tmp_path / "old.safetensors",
        reference.state_dict(),
        "classifier",
        {"arch": "resnet18", "num_classes": 4},
        {"classes": ["a", "b", "c", "d"]},
    )
    f = load_classifier(path)
    assert f.layers == ["layer2", "layer3", "layer4"] and f.mean_values == list(IMAGENET_MEAN)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(f(images), reference(images))
    assert f.feature_shapes(64) == [(128, 8, 8), (256, 4, 4), (512, 2, 2)]


@pytest.mark.parametrize("resolution", [32, 48, 64, 100])
def test_measured_resnet_sizes_are_those_of_the_stride_arithmetic(resolution):
    """Ψ of earlier runs was sized by ResNet arithmetic; the measured sizes equal it, so resumed
    and reloaded runs build the same Ψ."""
    size = resolution
    for _ in range(2):
        size = (size - 1) // 2 + 1
    expected = []
    for _ in range(3):
        size = (size - 1) // 2 + 1
        expected.append(size)
    f = Classifier("resnet50", 2)
    assert [h for _, h, _ in f.feature_shapes(resolution)] == expected
    assert [c for c, _, _ in f.feature_shapes(resolution)] == [512, 1024, 2048]


def test_unknown_layers_are_refused_with_the_available_ones():
    with pytest.raises(UserError) as info:
        Classifier("torchvision:efficientnet_b0", 3, layers=["features.3", "features.33", "layer4"])
    message = str(info.value)
    assert "no layer features.33, layer4 (close: features.3" in message
    assert "features.8" in message and "classifier" in message
    assert "more)" not in message or message.count(",") < 40  # shortened, not every module


def test_feature_maps_too_small_for_three_by_three_are_refused():
    f = Classifier(None, 3, backbone=tiny_vit(16), input_size=16)  # a 2 × 2 patch grid
    with pytest.raises(UserError, match=r"too small for Ψ's 3×3 concept maps"):
        f.feature_shapes(16)
    assert Classifier(None, 3, backbone=tiny_vit(24)).feature_shapes(24)[0] == (16, 3, 3)


def test_a_file_that_is_no_classifier_is_refused(tmp_path):
    from viscoin.models.stylegan2 import Generator, save_generator

    generator = Generator(8, 0, 8, 16, 3, mapping_kwargs={"num_layers": 1}, channel_max=8)
    path = save_generator(generator, tmp_path / "G.safetensors")
    with pytest.raises(UserError, match="'stylegan2.generator' model, but a 'classifier'"):
        load_classifier(path)
    foreign = tmp_path / "foreign.safetensors"
    save_checkpoint(foreign, {"w": torch.zeros(1)}, "classifier", {"arch": "resnet18", "x": 1})
    with pytest.raises(UserError, match="config keys x are unknown"):
        load_classifier(foreign)
    save_checkpoint(foreign, {"w": torch.zeros(1)}, "classifier", {"num_classes": 3})
    with pytest.raises(UserError, match="not a classifier file viscoin can rebuild"):
        load_classifier(foreign)
    save_checkpoint(foreign, {"w": torch.zeros(1)}, "classifier", {"arch": "resnet18"})
    with pytest.raises(UserError, match="weights do not match"):
        load_classifier(foreign)


def test_named_architecture_from_a_plain_state_dict(tmp_path):
    reference = torchvision.models.mobilenet_v3_small(num_classes=3)
    torch.save(reference.state_dict(), tmp_path / "m.pt")
    f = build_classifier(
        "torchvision:mobilenet_v3_small", 3, str(tmp_path / "m.pt"), new_head=False
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            f.backbone.state_dict().values(), reference.state_dict().values(), strict=True
        )
    )
    # a head for another class count: refused for VisCoIN, replaced when fine-tuning
    with pytest.raises(UserError, match="for 3 classes, but the dataset has 5"):
        build_classifier(
            "torchvision:mobilenet_v3_small", 5, str(tmp_path / "m.pt"), new_head=False
        )
    tuned = build_classifier("torchvision:mobilenet_v3_small", 5, str(tmp_path / "m.pt"))
    assert tuned.backbone.classifier[3].out_features == 5
    assert torch.equal(tuned.backbone.features[0][0].weight, reference.features[0][0].weight)
    with pytest.raises(UserError, match="does not fit a torchvision:efficientnet_b0"):
        build_classifier("torchvision:efficientnet_b0", 3, str(tmp_path / "m.pt"))


def test_a_pickled_module_is_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    path = hostile_weights(tmp_path / "evil.pt", marker)
    with pytest.raises(UserError, match="never unpickles"):
        build_classifier("torchvision:mobilenet_v3_small", 3, str(path), new_head=False)
    assert not marker.exists()
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=3), tmp_path / "module.pt")
    with pytest.raises(UserError, match="never unpickles"):
        build_classifier("torchvision:mobilenet_v3_small", 3, str(tmp_path / "module.pt"))


def test_unknown_architectures_are_refused():
    with pytest.raises(UserError, match="did you mean efficientnet_b0"):
        Classifier("torchvision:efficientnet_b00", 3)
    with pytest.raises(UserError, match="torchvision:NAME or timm:NAME"):
        Classifier("keras:resnet", 3)
    with pytest.raises(UserError, match="no architecture name rebuilds"):
        save_classifier(Classifier(None, 3, backbone=tiny_vit(48)), "never.safetensors")


def test_extractor_reads_any_number_of_maps_of_any_sizes():
    maps = [torch.rand(2, 5, 12, 16), torch.rand(2, 7, 6, 8), torch.rand(2, 3, 6, 4)]
    psi = ConceptExtractor([5, 7, 3], [[12, 16], [6, 8], [6, 4]], n_concepts=4, channels=6)
    assert [tuple(c.stride) for c in psi.inputs] == [(2, 4), (1, 2), (1, 1)]
    concept_maps, support = psi(maps)
    assert concept_maps.shape == (2, 4, 3, 3) and support.shape == (2, 36)
    assert psi.concept_weight.shape == (4, 18)
    single = ConceptExtractor([16], [6], n_concepts=4, channels=6)
    assert single([torch.rand(2, 16, 6, 6)])[0].shape == (2, 4, 3, 3)
    restored = ConceptExtractor(**psi.config())
    restored.load_state_dict(psi.state_dict())
    assert torch.equal(restored(maps)[0], concept_maps)
