"""The StyleGAN2 ops against a plain transcription of the official formulas."""

import math

import pytest
import torch

from tests.models import stylegan2_reference as ref
from viscoin.models.stylegan2 import ops
from viscoin.models.stylegan2.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    MinibatchStdLayer,
    SynthesisLayer,
    ToRGBLayer,
)
from viscoin.models.stylegan2.mapping import MappingNetwork


def close(a, b, tol=1e-5):
    scale = max(1.0, b.abs().max().item())
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= tol * scale, (a - b).abs().max().item()


def test_setup_filter_is_the_normalised_outer_product():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    close(f, ref.fir_filter())
    assert math.isclose(f.sum().item(), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize(
    "up, down, pad",
    [
        (1, 1, (1, 2, 2, 1)),
        (2, 1, (2, 1, 2, 1)),  # upsample2d
        (1, 2, (1, 1, 1, 1)),  # downsample2d
        (2, 1, (0, -1, 3, 0)),  # asymmetric, with cropping
        (1, 2, (2, 2, 2, 2)),
        (2, 2, (1, 1, 1, 1)),
        (4, 1, (3, 2, 3, 2)),
        # symmetric per axis but not across axes (the convolutions' own padding, (y, x))
        (1, 1, (1, 1, 2, 2)),
        (2, 1, (2, 1, 1, 0)),  # crops of 1 (x) and 2 (y) as the transposed conv's padding
        (2, 1, (1, 1, 2, 1)),  # an uneven crop in x: output_padding gives a row back
    ],
)
def test_upfirdn2d_matches_zero_insert_pad_convolve_subsample(up, down, pad):
    x = torch.randn(2, 3, 7, 6)
    f = torch.rand(4, 4)  # asymmetric, so a flipped filter would show
    close(
        ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=1.7),
        ref.upfirdn2d(x, f, up, down, pad, 1.7),
    )


def test_upfirdn2d_flip_filter_is_correlation():
    x, f = torch.randn(1, 2, 5, 5), torch.rand(4, 4)
    close(
        ops.upfirdn2d(x, f, padding=2, flip_filter=True),
        ref.upfirdn2d(x, f.flip([0, 1]), pad=(2, 2, 2, 2)),
    )


def test_upsample_and_downsample_keep_constants_and_shapes():
    f = ops.setup_filter()
    x = torch.full([1, 1, 8, 8], 3.0)
    up = ops.upsample2d(x, f)
    down = ops.downsample2d(x, f)
    assert up.shape == (1, 1, 16, 16) and down.shape == (1, 1, 4, 4)
    close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 3.0))
    close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.0))


def test_bias_act_lrelu_gain_and_clamp():
    x, b = torch.randn(4, 5, 3, 3) * 100, torch.randn(5)
    close(ops.bias_act(x, b, act="lrelu", clamp=256), ref.bias_act(x, b, "lrelu", clamp=256))
    y = ops.bias_act(torch.tensor([[-1.0, 2.0]]), act="lrelu")
    close(y, torch.tensor([[-0.2, 2.0]]) * math.sqrt(2))


@pytest.mark.parametrize(
    "up, down, k, flip_weight",
    [
        (1, 1, 3, True),
        (2, 1, 3, False),
        (1, 2, 3, True),
        (2, 1, 1, False),
        (1, 2, 1, True),
        (1, 1, 1, True),
        (2, 1, 3, True),
    ],
)
def test_conv2d_resample_matches_generic_path(up, down, k, flip_weight):
    x = torch.randn(2, 4, 8, 8)
    w = torch.randn(5, 4, k, k)
    f = ops.setup_filter()
    out = ops.conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2, flip_weight=flip_weight)
    close(out, ref.conv2d_resample(x, w, f, up, down, k // 2, flip_weight))
    assert out.shape[-1] == 8 * up // down


def test_conv2d_resample_grouped_upsampling_matches_per_group():
    x = torch.randn(1, 6, 5, 5)
    w = torch.randn(8, 3, 3, 3)  # two groups of 3 inputs -> 4 outputs
    f = ops.setup_filter()
    out = ops.conv2d_resample(x, w, f=f, up=2, padding=1, groups=2, flip_weight=False)
    expected = torch.cat(
        [
            ref.conv2d_resample(x[:, 3 * g : 3 * g + 3], w[4 * g : 4 * g + 4], f, 2, 1, 1, False)
            for g in range(2)
        ],
        dim=1,
    )
    close(out, expected)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_synthesis_layer_fused_and_unfused_match_reference(up, noise_mode):
    layer = SynthesisLayer(6, 5, w_dim=7, resolution=8, up=up, conv_clamp=0.5)
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
        layer.bias.normal_()
    x, w = torch.randn(3, 6, 8 // up, 8 // up), torch.randn(3, 7)
    expected = ref.modulated_layer(dict(layer.state_dict()), "", x, w, up, noise_mode, 0.5)
    for fused in (True, False):
        close(layer(x, w, noise_mode=noise_mode, fused_modconv=fused), expected)
    # the clamp acts: without it the reference differs
    assert expected.abs().max() <= 0.5 + 1e-6


def test_synthesis_layer_gain_scales_output_and_clamp():
    layer = SynthesisLayer(4, 4, w_dim=3, resolution=4, conv_clamp=0.2)
    x, w = torch.randn(2, 4, 4, 4), torch.randn(2, 3)
    gain = math.sqrt(0.5)
    expected = ref.modulated_layer(dict(layer.state_dict()), "", x, w, 1, "const", 0.2, gain=gain)
    close(layer(x, w, noise_mode="const", gain=gain), expected)


def test_random_noise_has_the_right_shape_and_strength():
    layer = SynthesisLayer(2, 2, w_dim=3, resolution=4)
    x, w = torch.zeros(2, 2, 4, 4), torch.zeros(2, 3)
    a = layer(x, w, noise_mode="random")
    b = layer(x, w, noise_mode="none")
    assert torch.equal(a, b)  # noise_strength starts at zero
    with torch.no_grad():
        layer.noise_strength.fill_(1.0)
    assert not torch.equal(layer(x, w, noise_mode="random"), layer(x, w, noise_mode="random"))
    with pytest.raises(ValueError):
        layer(x, w, noise_mode="loud")


@pytest.mark.parametrize("fused", [True, False])
def test_torgb_matches_reference(fused):
    layer = ToRGBLayer(6, 3, w_dim=5, conv_clamp=256)
    with torch.no_grad():
        layer.bias.normal_()
    x, w = torch.randn(2, 6, 4, 4), torch.randn(2, 5)
    close(layer(x, w, fused_modconv=fused), ref.torgb(dict(layer.state_dict()), "", x, w, 256))


def test_fp16_prenormalisation_leaves_demodulated_result_unchanged():
    x, weight, styles = torch.randn(2, 4, 6, 6), torch.randn(3, 4, 3, 3) * 50, torch.rand(2, 4) * 30
    a = ops.modulated_conv2d(x, weight, styles, padding=1)
    b = ops.modulated_conv2d(x, weight * 7, styles * 0.01, padding=1)
    close(a, b, tol=1e-4)


def test_fully_connected_equalised_learning_rate():
    layer = FullyConnectedLayer(8, 4, activation="lrelu", lr_multiplier=0.01, bias_init=0.5)
    assert layer.weight.std() > 10  # stored as N(0, 1/lr²)
    x = torch.randn(3, 8)
    close(layer(x), ref.dense(dict(layer.state_dict()), "", x, "lrelu", 0.01))
    assert torch.allclose(layer.bias, torch.full([4], 0.5))


@pytest.mark.parametrize("down, k", [(1, 3), (2, 3), (2, 1), (1, 1)])
def test_conv2d_layer_matches_reference(down, k):
    layer = Conv2dLayer(3, 4, kernel_size=k, activation="lrelu", down=down, conv_clamp=0.3)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 8, 8)
    sd = dict(layer.state_dict())
    close(layer(x, gain=0.7), ref.conv_layer(sd, "", x, down=down, gain=0.7, clamp=0.3))


def test_minibatch_std_matches_per_group_formula():
    x = torch.randn(8, 5, 4, 4)
    close(MinibatchStdLayer(4)(x), ref.minibatch_std(x, 4))
    close(MinibatchStdLayer(4)(x[:2]), ref.minibatch_std(x[:2], 4))  # group shrinks to the batch


@pytest.mark.parametrize("c_dim", [0, 3])
@pytest.mark.parametrize("psi, cutoff", [(1.0, None), (0.7, None), (0.5, 2)])
def test_mapping_with_truncation_matches_reference(c_dim, psi, cutoff):
    net = MappingNetwork(z_dim=6, c_dim=c_dim, w_dim=5, num_ws=4, num_layers=3)
    with torch.no_grad():
        net.w_avg.normal_()
    z = torch.randn(3, 6, dtype=torch.float64)  # generate.py feeds float64 latents
    c = torch.eye(3)[[0, 2, 1]][:, :c_dim]
    ws = net(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
    expected = ref.mapping(dict(net.state_dict()), "", z, c, 3, 4, psi, cutoff)
    close(ws, expected)
    assert ws.shape == (3, 4, 5) and ws.dtype == torch.float32


def test_mapping_updates_w_avg_only_when_asked():
    net = MappingNetwork(z_dim=4, c_dim=0, w_dim=4, num_ws=2, num_layers=2, w_avg_beta=0.9)
    z = torch.randn(5, 4)
    net(z, None)
    assert torch.equal(net.w_avg, torch.zeros(4))
    w = net(z, None, update_emas=True)[:, 0]
    close(net.w_avg, 0.1 * w.mean(0))


@pytest.mark.parametrize(
    "up, down, padding, flip",
    [
        (1, 1, (1, 2, 1, 2), False),
        (2, 1, (2, 1, 2, 1), False),
        (1, 2, (1, 1, 1, 1), True),
        (2, 2, (0, -1, 1, 0), False),
        (1, 1, (-1, 2, 0, 1), True),
    ],
)
def test_upfirdn2d_pointwise_matches_convolution_form(up, down, padding, flip):
    """The form used under torch.compile computes what the convolution form computes."""
    x = torch.randn(2, 5, 9, 7, dtype=torch.float64)
    f = (
        ops.setup_filter([1, 3, 3, 1]).double()
        * torch.tensor([[1.0], [2.0], [0.5], [1.5]]).double()
    )
    expected = ops.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=3.0)
    got = ops.upfirdn2d_pointwise(x, f * 3.0, up, down, padding, flip)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("groups", [1, 2])
def test_subpixel_convolution_is_the_transposed_convolution(stride, kernel, groups):
    torch.manual_seed(stride * 10 + kernel)
    for padding, (height, width) in [(p, hw) for p in range(kernel) for hw in ((4, 4), (5, 7))]:
        x = torch.randn(2, 4, height, width, dtype=torch.float64)
        w = torch.randn(4, 3, kernel, kernel, dtype=torch.float64)
        expected = torch.nn.functional.conv_transpose2d(
            x, w, stride=stride, padding=padding, groups=groups
        )
        out = ops.conv_transpose2d_subpixel(x, w, stride, (padding, padding), groups)
        close(out, expected, tol=1e-12)


@pytest.mark.parametrize("k, flip_weight", [(3, False), (3, True), (1, True), (2, False)])
def test_conv2d_resample_upsamples_the_same_with_subpixel_convolutions(k, flip_weight):
    x = torch.randn(2, 4, 8, 8)
    w = torch.randn(5, 4, k, k)
    f = ops.setup_filter()
    with ops.use_upsample_impl("subpixel"):
        assert ops.upsample_impl() == "subpixel"
        out = ops.conv2d_resample(x, w, f=f, up=2, padding=k // 2, flip_weight=flip_weight)
    assert ops.upsample_impl() == "transpose"  # restored
    close(out, ref.conv2d_resample(x, w, f, 2, 1, k // 2, flip_weight))
    with pytest.raises(ValueError, match="upsample impl"), ops.use_upsample_impl("pixelshuffle"):
        pass


def _tiny_networks():
    """A 16 px G and D with noise strengths and biases drawn (every path counts), seeded."""
    from viscoin.models.stylegan2 import Discriminator, Generator

    torch.manual_seed(0)
    G = Generator(8, 0, 8, 16, 3, synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    D = Discriminator(
        0, 16, 3, channel_base=64, channel_max=8, epilogue_kwargs={"mbstd_group_size": 2}
    )
    for name, param in [*G.named_parameters(), *D.named_parameters()]:
        if name.endswith(("noise_strength", "bias")):
            torch.nn.init.normal_(param, std=0.3)
    return G, D


def test_generator_with_subpixel_upsampling_gives_the_same_images_and_second_gradients():
    G, _ = _tiny_networks()
    z = torch.randn(3, 8)

    def run():
        # a path-length-style penalty: its gradient is a double backward through the synthesis
        ws = G.mapping(z, None).detach().requires_grad_(True)
        img = G.synthesis(ws, noise_mode="const")
        (grad,) = torch.autograd.grad((img * img.detach().sin()).sum(), ws, create_graph=True)
        G.zero_grad()
        (img.square().mean() + grad.square().sum()).backward()
        return img.detach(), {
            n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None
        }

    img_t, grads_t = run()
    with ops.use_upsample_impl("subpixel"):
        img_s, grads_s = run()
    close(img_s, img_t)
    assert grads_t.keys() == grads_s.keys() and len(grads_t) > 10
    for name in grads_t:
        close(grads_s[name], grads_t[name], tol=1e-4)


def test_fir_weights_are_built_once_per_filter_and_key(monkeypatch):
    built = []
    depthwise = ops._depthwise
    monkeypatch.setattr(ops, "_depthwise", lambda *a: built.append(a[1:]) or depthwise(*a))
    layer = Conv2dLayer(3, 4, 3, down=2)
    x = torch.randn(2, 3, 8, 8)
    first = layer(x)
    assert len(built) == 1
    close(layer(x), first, tol=0)
    ops.upsample2d(x, layer.resample_filter)  # another gain and flip: a weight of its own
    ops.upsample2d(x.double(), layer.resample_filter)  # another dtype
    assert len(built) == 3
    layer(x)
    ops.upsample2d(x, layer.resample_filter)
    assert len(built) == 3


def test_a_filter_changed_in_place_gives_new_fir_weights():
    x, f = torch.randn(2, 3, 7, 6), torch.rand(4, 4)
    close(ops.upfirdn2d(x, f, down=2, padding=1), ref.upfirdn2d(x, f, 1, 2, (1, 1, 1, 1)))
    with torch.no_grad():
        f.copy_(torch.rand(4, 4))
    close(ops.upfirdn2d(x, f, down=2, padding=1), ref.upfirdn2d(x, f, 1, 2, (1, 1, 1, 1)))
    # a layer given another filter by load_state_dict computes with it
    layer, other = (
        Conv2dLayer(3, 4, 3, down=2),
        Conv2dLayer(3, 4, 3, down=2, resample_filter=(1, 2, 2, 1)),
    )
    layer(x)
    layer.load_state_dict(other.state_dict())
    close(layer(x), other(x))


def test_fir_weights_built_in_inference_mode_do_not_reach_autograd():
    layer = Conv2dLayer(3, 4, 3, down=2)
    with torch.inference_mode():
        layer(torch.randn(2, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    layer(x).sum().backward()  # an inference tensor saved for backward would raise here
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("down", [1, 2])
@pytest.mark.parametrize("gain", [1.0, 4.0, 2.5])
@pytest.mark.parametrize(
    "pad", [(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2), (3, 3, 3, 3), (1, 1, 3, 3)]
)
@pytest.mark.parametrize("impl", ["pool", "matmul"])
def test_pooled_fir_is_zero_pad_convolve_subsample(down, gain, pad, impl):
    """Three 2×2 poolings, or a matrix product per axis, are the standard [1, 3, 3, 1] filter
    (float64: exact up to rounding)."""
    f = ops.setup_filter().double()
    for size in ((8, 8), (9, 6)):
        x = torch.randn(2, 3, *size, dtype=torch.float64)
        with ops.use_fir_impl(impl):
            out = ops.upfirdn2d(x, f, down=down, padding=pad, gain=gain)
        expected = ref.upfirdn2d(x, f, 1, down, pad, gain)
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("impl", ["pool", "matmul"])
def test_pooled_upsample2d_is_zero_insertion_and_the_filter(impl):
    f = ops.setup_filter().double()
    for size in ((8, 8), (5, 7)):
        x = torch.randn(2, 3, *size, dtype=torch.float64)
        with ops.use_fir_impl(impl):
            out = ops.upsample2d(x, f)
        expected = ref.upfirdn2d(x, f, 2, 1, (2, 1, 2, 1), 4.0)
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-13)


def test_pooled_fir_is_taken_for_the_standard_filter_only(monkeypatch):
    calls = []
    real_pool = torch.nn.functional.avg_pool2d
    monkeypatch.setattr(ops.F, "avg_pool2d", lambda *a, **k: calls.append(1) or real_pool(*a, **k))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    f = ops.setup_filter().double()
    with ops.use_fir_impl("pool"):
        ops.upfirdn2d(x, f, down=2, padding=1)
        assert len(calls) == 3
        f.mul_(torch.rand(4, 4, dtype=torch.float64))  # no longer the standard filter
        close(ops.upfirdn2d(x, f, down=2, padding=1), ref.upfirdn2d(x, f, 1, 2, (1, 1, 1, 1), 1.0))
        ops.upfirdn2d(x, f * 0 + torch.rand(4, 4, dtype=torch.float64), padding=1)
    assert len(calls) == 3  # the changed filter and another one took the convolutions
    with ops.use_fir_impl("auto"):  # the CPU's choice: convolutions
        ops.upfirdn2d(x, ops.setup_filter().double(), down=2, padding=1)
    assert len(calls) == 3
    with pytest.raises(ValueError, match="FIR impl"), ops.use_fir_impl("fft"):
        pass


@pytest.mark.parametrize(
    ("up", "down", "pad"),
    [(1, 1, (0, 0, 0, 0)), (2, 2, (1, 2, 0, 3)), (1, 2, (-1, 2, 3, 0)), (2, 1, (1, 1, 1, 1))],
)
def test_fir_as_matrix_products_takes_any_resampling(up, down, pad):
    f = ops.setup_filter().double()
    x = torch.randn(2, 3, 9, 6, dtype=torch.float64)
    with ops.use_fir_impl("matmul"):
        out = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=2.5)
    torch.testing.assert_close(out, ref.upfirdn2d(x, f, up, down, pad, 2.5), rtol=0, atol=1e-13)


@pytest.mark.parametrize("impl", ["pool", "matmul"])
def test_pooled_fir_has_second_derivatives(impl):
    f = ops.setup_filter().double()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    with ops.use_fir_impl(impl):
        for fn in (
            lambda x: ops.upfirdn2d(x, f, down=2, padding=1),
            lambda x: ops.upfirdn2d(x, f, padding=2, gain=4),
            lambda x: ops.upsample2d(x, f),
        ):
            assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("impl", ["pool", "matmul"])
def test_networks_with_pooled_fir_give_the_same_images_logits_and_second_gradients(impl):
    G, D = _tiny_networks()
    z = torch.randn(4, 8)

    def run():
        # path length through G and R1 through D: second derivatives of both networks
        ws = G.mapping(z, None).detach().requires_grad_(True)
        img = G.synthesis(ws, noise_mode="const")
        (g_ws,) = torch.autograd.grad((img * img.detach().sin()).sum(), ws, create_graph=True)
        real = img.detach().requires_grad_(True)
        logits = D(real, None)
        (g_x,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        G.zero_grad(), D.zero_grad()
        (img.square().mean() + g_ws.square().sum() + g_x.square().sum() + logits.mean()).backward()
        named = [*G.named_parameters(), *D.named_parameters()]
        grads = {n: p.grad.clone() for n, p in named if p.grad is not None}
        return img.detach(), logits.detach(), grads

    img_c, logits_c, grads_c = run()
    with ops.use_fir_impl(impl):
        img_p, logits_p, grads_p = run()
    close(img_p, img_c)
    close(logits_p, logits_c)
    assert len(grads_c) > 20
    for name in grads_c:
        close(grads_p[name], grads_c[name], tol=1e-4)


@pytest.mark.parametrize(
    ("up", "down", "pad"), [(1, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (2, 1, (2, 1, 2, 1))]
)
def test_compiled_fir_as_matrix_products_matches_the_reference(up, down, pad):
    """Under torch.compile (Dynamo's tracing, eager backend: the graph's own ops), the matmul
    choice builds its matrices inside the graph and filters as the reference does."""
    f = ops.setup_filter().double()
    x = torch.randn(2, 3, 9, 6, dtype=torch.float64)
    seen = []

    def spy(*args):  # which form the traced graph took
        seen.append(torch.compiler.is_compiling())
        return real(*args)

    real = ops._fir_matmul
    fn = torch.compile(
        lambda x: ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=2.5),
        backend="eager",
        fullgraph=True,
    )
    with ops.use_compiled_fir_impl("matmul"), pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops, "_fir_matmul", spy)
        out = fn(x)
    assert seen == [True]
    torch.testing.assert_close(out, ref.upfirdn2d(x, f, up, down, pad, 2.5), rtol=0, atol=1e-13)
    torch._dynamo.reset()


def test_standard_filters_finds_a_changed_filter():
    G, D = _tiny_networks()
    assert ops.standard_filters(G) and ops.standard_filters(D)
    dict(G.named_buffers())["synthesis.b8.conv0.resample_filter"].mul_(2)
    assert not ops.standard_filters(G) and ops.standard_filters(D)
