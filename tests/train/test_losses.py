"""Every loss term against a value computed by hand on a small input."""

import math

import pytest
import torch

from viscoin.train.losses import (
    LPIPS,
    build_lpips,
    feature_distance,
    orthogonality_loss,
    output_fidelity_loss,
    pixel_losses,
    soft_cross_entropy,
    sparsity_loss,
    w_regularisation,
)


def test_soft_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # log_softmax = log([1/4, 3/4])
    target = torch.tensor([[math.log(1.0), math.log(4.0)]])  # softmax = [1/5, 4/5]
    expected = -(0.2 * math.log(0.25) + 0.8 * math.log(0.75))
    assert soft_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # mean over the batch
    two = soft_cross_entropy(torch.cat([logits, logits]), torch.cat([target, target]))
    assert two.item() == pytest.approx(expected, rel=1e-6)


def test_soft_cross_entropy_detaches_target():
    logits = torch.randn(3, 4, requires_grad=True)
    target = torch.randn(3, 4, requires_grad=True)
    soft_cross_entropy(logits, target).backward()
    assert logits.grad is not None and target.grad is None


def test_output_fidelity_is_alpha_times_ce():
    g, f = torch.randn(5, 7), torch.randn(5, 7)
    assert output_fidelity_loss(g, f, 0.5).item() == pytest.approx(
        0.5 * soft_cross_entropy(g, f).item()
    )


def test_pixel_losses_by_hand():
    a = torch.zeros(1, 3, 2, 2)
    b = torch.zeros(1, 3, 2, 2)
    b[0, 0, 0, 0] = 1.0
    b[0, 1, 1, 1] = -2.0
    mse, l1 = pixel_losses(a, b)
    assert mse.item() == pytest.approx((1 + 4) / 12)
    assert l1.item() == pytest.approx((1 + 2) / 12)


def test_sparsity_by_hand():
    activations = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # rows normalised: [.6, .8], [0, 1]
    maps = torch.zeros(2, 2, 3, 3)
    maps[0, 0, 1, 1] = 3.0
    maps[1, 1, 0, 0] = 2.0
    expected = 0.2 * ((0.6 + 0.8 + 0.0 + 1.0) / 4 + (3.0 + 2.0) / 36)
    assert sparsity_loss(activations, maps, 0.2).item() == pytest.approx(expected, rel=1e-6)


def test_orthogonality_by_hand():
    assert orthogonality_loss(torch.eye(3)).item() == pytest.approx(0.0, abs=1e-7)
    w = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # |row-normalised| = all 1/√2 → ŴŴᵀ all ones
    assert orthogonality_loss(w).item() == pytest.approx((4 - 2) / 4)
    # scale-invariant in each row, and the 4-D conv weight is flattened
    w4 = torch.tensor([[[[2.0]], [[0.0]]], [[[0.0]], [[5.0]]]])
    assert orthogonality_loss(w4).item() == pytest.approx(0.0, abs=1e-7)


def test_w_regularisation_by_hand():
    w_avg = torch.tensor([1.0, 2.0])
    w_plus = torch.tensor([[[1.0, 2.0], [3.0, 2.0]]])  # differences 0,0,2,0
    assert w_regularisation(w_plus, w_avg).item() == pytest.approx(4 / 4)


def test_feature_distance_by_hand():
    # one map, one position, two channels: (3, 4) → (.6, .8) against (0, 2) → (0, 1)
    a = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    b = torch.tensor([0.0, 2.0]).view(1, 2, 1, 1)
    assert feature_distance([a], [b]).item() == pytest.approx(0.6**2 + 0.2**2, rel=1e-6)
    # scale-free, 4 for opposite directions, a sum over maps and a mean over batch and positions
    assert feature_distance([5 * a], [b]).item() == pytest.approx(0.4, rel=1e-6)
    assert feature_distance([-b], [b]).item() == pytest.approx(4.0)
    torch.manual_seed(0)
    maps = [torch.randn(3, 4, 5, 5), torch.randn(3, 8, 2, 2)]
    targets = [torch.randn(3, 4, 5, 5), torch.randn(3, 8, 2, 2)]
    # ‖â − b̂‖² = 2 − 2 cos(a, b)
    expected = sum(
        (2 - 2 * torch.cosine_similarity(m, t, dim=1)).mean()
        for m, t in zip(maps, targets, strict=True)
    )
    assert feature_distance(maps, targets).item() == pytest.approx(expected.item(), rel=1e-5)
    assert feature_distance(maps, maps).item() == pytest.approx(0.0, abs=1e-6)


def test_feature_distance_detaches_target():
    a = torch.randn(2, 3, 2, 2, requires_grad=True)
    b = torch.randn(2, 3, 2, 2, requires_grad=True)
    feature_distance([a], [b]).backward()
    assert a.grad is not None and b.grad is None


def _vgg16_state_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    path = tmp_path / "vgg16.pth"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    return path


def test_lpips_with_local_vgg_weights(tmp_path):
    lpips_pkg = pytest.importorskip("lpips")
    path = _vgg16_state_file(tmp_path)
    ours = LPIPS(vgg_weights=path)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert ours(x, x).item() == pytest.approx(0.0, abs=1e-6)
    # reference: lpips' own module with the torchvision VGG weights copied in by its own indices
    import torchvision

    ref = lpips_pkg.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    vgg = torchvision.models.vgg16(weights=None)
    vgg.load_state_dict(torch.load(path, weights_only=True))
    features = list(vgg.features.children())
    for name, module in ref.net.named_modules():
        parts = name.split(".")
        if len(parts) == 2 and isinstance(module, torch.nn.Conv2d):
            module.load_state_dict(features[int(parts[1])].state_dict())
    assert ours(x, y).item() == pytest.approx(ref(x, y).mean().item(), rel=1e-5)
    assert ours(x, y).item() > 0


def test_lpips_bad_weights_file(tmp_path):
    pytest.importorskip("lpips")
    from viscoin.errors import UserError

    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="not a torchvision VGG-16"):
        LPIPS(vgg_weights=bad)
    with pytest.raises(UserError, match="not found"):
        LPIPS(vgg_weights=tmp_path / "missing.pth")
    assert build_lpips("none") is None
