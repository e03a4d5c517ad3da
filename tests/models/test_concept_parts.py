"""Ψ, Θ, Ω and the classifier wrapper: shapes, routing, formulas, save → load round trips."""

import math

import pytest
import torch

from viscoin.models.classifier import Classifier, build_classifier, load_classifier, save_classifier
from viscoin.models.concepts import ConceptExtractor
from viscoin.models.head import ConceptHead
from viscoin.models.translator import ConceptTranslator, default_mid


@pytest.mark.parametrize(
    "arch, resolution", [("resnet18", 32), ("resnet18", 64), ("resnet50", 64), ("resnet18", 48)]
)
def test_extractor_shapes_any_resnet_and_resolution(arch, resolution):
    f = Classifier(arch, 5).eval()
    shapes = f.feature_shapes(resolution)
    psi = ConceptExtractor(
        [c for c, _, _ in shapes], [h for _, h, _ in shapes], n_concepts=6, channels=8
    )
    _, maps = f.forward_features(torch.randn(2, 3, resolution, resolution))
    concept_maps, support = psi(maps)
    assert concept_maps.shape == (2, 6, 3, 3) and support.shape == (2, 54)
    assert (concept_maps >= 0).all() and (support >= 0).all()


def test_extractor_strides_follow_size_ratios():
    psi = ConceptExtractor((128, 256, 512), (32, 16, 8), n_concepts=4, channels=8)
    assert [(c.kernel_size[0], c.stride[0]) for c in psi.inputs] == [(5, 4), (3, 2), (3, 1)]
    assert psi.concept_weight.shape == (4, 24)


def test_head_is_linear_in_maxpooled_maps():
    head = ConceptHead(4, 3, dropout=0.5).eval()
    maps = torch.rand(2, 4, 3, 3)
    logits, activations = head(maps)
    assert torch.equal(activations, maps.flatten(2).max(dim=2).values)
    assert torch.allclose(logits, activations @ head.linear.weight.T + head.linear.bias)


def test_head_gradient_is_finite_compiled_in_bf16():
    """The max-pool's gradient survives torch.compile + bf16 + dropout (an amax-based head gave
    NaN there: its backward re-found the maximum by comparing recomputed values)."""
    head = ConceptHead(8, 5, dropout=0.01).train()

    def loss(maps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return head(maps)[0].float().square().mean()

    maps = torch.rand(4, 8, 3, 3, requires_grad=True)
    torch.compile(loss)(maps).backward()
    assert torch.isfinite(maps.grad).all()
    assert (maps.grad != 0).flatten(2).sum(-1).max() == 1  # one pixel per map gets the gradient


def test_translator_routing_and_w_avg():
    k, num_ws, w_dim = 4, 8, 16
    w_avg = torch.randn(w_dim)
    omega = ConceptTranslator(k, num_ws, w_dim, coarse=2, mid=5, w_avg=w_avg)
    maps, support = torch.rand(3, k, 3, 3), torch.rand(3, 9 * k)
    base = omega(maps, support)
    assert base.shape == (3, num_ws, w_dim)
    other_support = omega(maps, torch.rand(3, 9 * k))
    other_maps = omega(torch.rand(3, k, 3, 3), support)
    fed_by_maps = torch.zeros(num_ws, dtype=torch.bool)
    fed_by_maps[2:6] = True
    assert torch.equal(base[:, fed_by_maps], other_support[:, fed_by_maps])
    assert torch.equal(base[:, ~fed_by_maps], other_maps[:, ~fed_by_maps])
    # zero weights and biases: the output is exactly w̄
    with torch.no_grad():
        for p in omega.parameters():
            p.zero_()
    assert torch.allclose(omega(maps, support), w_avg.expand(3, num_ws, w_dim))
    assert default_mid(14) == 10


def test_translator_equalised_lr_formula():
    torch.manual_seed(0)
    omega = ConceptTranslator(2, 4, 3, coarse=1, mid=2, lr_multiplier=0.01)
    maps, support = torch.rand(1, 2, 3, 3), torch.rand(1, 18)
    with torch.no_grad():
        omega.net[0].bias.normal_()
    out = omega(maps, support)
    x = maps.flatten(1)
    x = x / torch.sqrt(x.square().mean() + 1e-8)
    layer = omega.net[0]
    row = 1  # reads the concept maps
    pre = x[0] @ (layer.weight[row] * 0.01 / math.sqrt(18)).T + layer.bias[row] * 0.01
    expected = torch.nn.functional.leaky_relu(pre, 0.2) * math.sqrt(2)
    assert torch.allclose(out[0, row], expected, atol=1e-6)


def test_translator_linear_output_skips_only_the_last_activation():
    torch.manual_seed(0)
    omega = ConceptTranslator(2, 4, 3, coarse=1, mid=2, layers=2, linear_output=True)
    maps, support = torch.rand(2, 2, 3, 3), torch.rand(2, 18)
    with torch.no_grad():
        for layer in omega.net:
            layer.bias.normal_()
    x = maps.flatten(1)
    x = x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-8)
    first, last = omega.net
    row = 1  # reads the concept maps
    hidden = x @ (first.weight[row] * first.weight_gain).T + first.bias[row] * first.bias_gain
    hidden = torch.nn.functional.leaky_relu(hidden, 0.2) * math.sqrt(2)
    expected = hidden @ (last.weight[row] * last.weight_gain).T + last.bias[row] * last.bias_gain
    assert torch.allclose(omega(maps, support)[:, row], expected, atol=1e-5)
    assert (expected < 0).any()  # a leaky ReLU would have shrunk these
    assert ConceptTranslator(**omega.config()).linear_output


def test_translator_batch_input_norm_standardises_the_support():
    torch.manual_seed(0)
    omega = ConceptTranslator(2, 4, 3, coarse=1, mid=2, input_norm="batch")
    # a large part shared by every image, as trained supports have: the per-image rms scaling
    # would shrink the rest to almost nothing
    maps = torch.rand(6, 2, 3, 3)
    support = torch.rand(6, 18) * 0.1 + 20.0
    out = omega(maps, support)
    layer = omega.net[0]

    def expected(x, row):
        pre = x @ (layer.weight[row] * layer.weight_gain).T + layer.bias[row] * layer.bias_gain
        return torch.nn.functional.leaky_relu(pre, 0.2) * math.sqrt(2)

    s = (support - support.mean(0)) / torch.sqrt(support.var(0, unbiased=False) + 1e-5)
    assert torch.allclose(out[:, 0], expected(s, 0), atol=1e-3)  # row 0 reads Φ'
    c = maps.flatten(1)
    c = c / torch.sqrt(c.square().mean(-1, keepdim=True) + 1e-8)
    assert torch.allclose(out[:, 1], expected(c, 1), atol=1e-5)  # row 1 reads Φ, per-image rms
    # eval mode uses the running statistics; a saved and restored translator gives the same output
    omega.eval()
    restored = ConceptTranslator(**omega.config())
    restored.load_state_dict(omega.state_dict())
    restored.eval()
    assert torch.allclose(restored(maps[:1], support[:1]), omega(maps[:1], support[:1]))
    with pytest.raises(ValueError, match="input_norm"):
        ConceptTranslator(2, 4, 3, coarse=1, mid=2, input_norm="layer")


def test_translator_rejects_bad_routing():
    with pytest.raises(ValueError, match="coarse"):
        ConceptTranslator(2, 4, 3, coarse=3, mid=1)


def test_classifier_normalisation_and_round_trip(tmp_path):
    f = Classifier("resnet18", 4).eval()
    x = torch.zeros(1, 3, 8, 8)  # mid-grey in [-1, 1] is 0.5 in [0, 1]
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(f.normalise(x)[0, :, 0, 0], expected)
    path = save_classifier(f, tmp_path / "f.safetensors", classes=["a", "b", "c", "d"])
    g = load_classifier(path)
    assert g.classes == ["a", "b", "c", "d"] and not g.training
    assert not any(p.requires_grad for p in g.parameters())
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(f(images), g(images))


def test_classifier_from_local_torchvision_weights(tmp_path):
    import torchvision

    from viscoin.errors import UserError

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    f = build_classifier("resnet18", 3, weights=str(tmp_path / "r18.pth"))
    assert torch.equal(f.backbone.conv1.weight, reference.conv1.weight)
    assert f.backbone.fc.out_features == 3
    with pytest.raises(UserError, match="does not fit a torchvision resnet50"):
        build_classifier("resnet50", 3, weights=str(tmp_path / "r18.pth"))
    with pytest.raises(UserError, match="unknown classifier architecture"):
        Classifier("vgg11", 3)
