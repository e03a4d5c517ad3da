"""StyleGAN2 generator and discriminator: official names and shapes, numbers against the
reference transcription, save/load round trips and the generate.py sampling procedure."""

import numpy as np
import pytest
import torch

from tests.models import stylegan2_reference as ref
from viscoin.errors import UserError
from viscoin.models.stylegan2 import (
    Discriminator,
    Generator,
    load_discriminator,
    load_generator,
    sample,
    save_discriminator,
    save_generator,
)


def tiny_generator(c_dim=0, resolution=16, **synthesis):
    synthesis = {"channel_base": 128, "channel_max": 16, **synthesis}
    G = Generator(
        z_dim=12,
        c_dim=c_dim,
        w_dim=10,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs=synthesis,
    )
    randomise(G)
    return G.eval()


def randomise(module):
    """Non-trivial values for the parameters that start at constants (biases, noise strengths)."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith(("bias", "noise_strength", "w_avg")):
                tensor.normal_(0, 0.5)


def close(a, b, tol=2e-5):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), err


def test_parameter_names_and_shapes_are_the_official_ones():
    G = Generator(
        z_dim=6, c_dim=2, w_dim=5, img_resolution=8, img_channels=3,
        mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 64, "channel_max": 7},
    )  # fmt: skip
    shapes = {k: tuple(v.shape) for k, v in G.state_dict().items()}

    def layer(prefix, cin, cout, res):
        return {
            f"{prefix}.weight": (cout, cin, 3, 3), f"{prefix}.bias": (cout,),
            f"{prefix}.noise_strength": (), f"{prefix}.noise_const": (res, res),
            f"{prefix}.resample_filter": (4, 4),
            f"{prefix}.affine.weight": (cin, 5), f"{prefix}.affine.bias": (cin,),
        }  # fmt: skip

    def torgb(prefix, cin):
        return {
            f"{prefix}.weight": (3, cin, 1, 1), f"{prefix}.bias": (3,),
            f"{prefix}.affine.weight": (cin, 5), f"{prefix}.affine.bias": (cin,),
        }  # fmt: skip

    # channels: min(64 // 4, 7) = 7 at 4×4, min(64 // 8, 7) = 7 at 8×8
    expected = {
        "mapping.embed.weight": (5, 2), "mapping.embed.bias": (5,),
        "mapping.fc0.weight": (5, 11), "mapping.fc0.bias": (5,),
        "mapping.fc1.weight": (5, 5), "mapping.fc1.bias": (5,), "mapping.w_avg": (5,),
        "synthesis.b4.const": (7, 4, 4), "synthesis.b4.resample_filter": (4, 4),
        **layer("synthesis.b4.conv1", 7, 7, 4), **torgb("synthesis.b4.torgb", 7),
        "synthesis.b8.resample_filter": (4, 4),
        **layer("synthesis.b8.conv0", 7, 7, 8), **layer("synthesis.b8.conv1", 7, 7, 8),
        **torgb("synthesis.b8.torgb", 7),
    }  # fmt: skip
    assert shapes == expected
    assert G.num_ws == G.mapping.num_ws == 4


def test_discriminator_names_and_shapes_are_the_official_ones():
    D = Discriminator(c_dim=2, img_resolution=8, img_channels=3, channel_base=64, channel_max=16)
    shapes = {k: tuple(v.shape) for k, v in D.state_dict().items()}
    # channels: 8 at 8×8, 16 at 4×4; cmap_dim = channels at 4×4; D's mapping has 8 layers
    expected = {
        "b8.resample_filter": (4, 4),
        "b8.fromrgb.weight": (8, 3, 1, 1), "b8.fromrgb.bias": (8,), "b8.fromrgb.resample_filter": (4, 4),
        "b8.conv0.weight": (8, 8, 3, 3), "b8.conv0.bias": (8,), "b8.conv0.resample_filter": (4, 4),
        "b8.conv1.weight": (16, 8, 3, 3), "b8.conv1.bias": (16,), "b8.conv1.resample_filter": (4, 4),
        "b8.skip.weight": (16, 8, 1, 1), "b8.skip.resample_filter": (4, 4),
        "mapping.embed.weight": (16, 2), "mapping.embed.bias": (16,),
        **{f"mapping.fc{i}.{p}": (16, 16) if p == "weight" else (16,) for i in range(8) for p in ("weight", "bias")},
        "b4.conv.weight": (16, 17, 3, 3), "b4.conv.bias": (16,), "b4.conv.resample_filter": (4, 4),
        "b4.fc.weight": (16, 256), "b4.fc.bias": (16,), "b4.out.weight": (16, 16), "b4.out.bias": (16,),
    }  # fmt: skip
    assert shapes == expected


def test_channel_formula_and_num_ws_at_256px():
    with torch.device("meta"):
        G = Generator(512, 0, 512, 256, 3, synthesis_kwargs={"channel_base": 16384})
    channels = {
        res: getattr(G.synthesis, f"b{res}").conv1.weight.shape[0]
        for res in G.synthesis.block_resolutions
    }
    assert channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    assert G.num_ws == 14


@pytest.mark.parametrize("c_dim", [0, 3])
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_generator_matches_reference_transcription(c_dim, psi):
    G = tiny_generator(c_dim=c_dim, conv_clamp=0.8)  # a clamp small enough to act
    z = torch.randn(2, 12)
    c = torch.eye(3)[[2, 0]][:, :c_dim]
    expected = ref.generate(dict(G.state_dict()), G.to_config(), z, c, psi)
    close(G(z, c, truncation_psi=psi, noise_mode="const"), expected)
    G.train()  # training mode takes the unfused modulated-conv path
    close(G(z, c, truncation_psi=psi, noise_mode="const"), expected)


@pytest.mark.parametrize("fused", [True, False])
def test_synthesis_compute_dtype_and_memory_format(fused):
    """bf16 / channels_last are speed options: the image stays float32 and close to the default."""
    G = tiny_generator(conv_clamp=256)
    ws = G.mapping(torch.randn(3, 12), None)
    ws.requires_grad_(True)
    expected = G.synthesis(ws, fused_modconv=fused)
    nhwc = G.synthesis(ws, fused_modconv=fused, channels_last=True)
    close(nhwc, expected)
    low = G.synthesis(ws, fused_modconv=fused, dtype=torch.bfloat16, channels_last=True)
    assert low.dtype == torch.float32 and low.shape == expected.shape
    assert (low - expected).abs().max() < 0.05 * expected.abs().max()
    (grad,) = torch.autograd.grad(low.square().sum(), ws)  # gradients reach W+ in bf16 too
    (grad32,) = torch.autograd.grad(expected.square().sum(), ws)
    assert torch.nn.functional.cosine_similarity(grad.flatten(), grad32.flatten(), dim=0) > 0.99


def test_fp16_blocks_compute_in_float32_on_cpu():
    G16 = tiny_generator(num_fp16_res=2, conv_clamp=256)
    G32 = tiny_generator(conv_clamp=256)
    G32.load_state_dict(G16.state_dict())
    assert (
        G16.synthesis.b16.use_fp16 and G16.synthesis.b8.use_fp16 and not G16.synthesis.b4.use_fp16
    )
    z = torch.randn(2, 12)
    img = G16(z, None)
    assert img.dtype == torch.float32
    assert torch.equal(img, G32(z, None))
    assert torch.equal(img, G16(z, None, force_fp32=True))


def test_noise_modes_and_input_checks():
    G = tiny_generator()
    z = torch.randn(1, 12)
    assert torch.equal(G(z, None, noise_mode="const"), G(z, None, noise_mode="const"))
    assert not torch.equal(G(z, None, noise_mode="random"), G(z, None, noise_mode="random"))
    assert not torch.equal(G(z, None, noise_mode="none"), G(z, None, noise_mode="const"))
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.zeros(1, 3, 10))


@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_explicit_noise_is_the_random_draw(architecture):
    """``noise=`` images in ``noise_resolutions()`` order are exactly what ``random`` mode draws
    in the same RNG state, and every one of them reaches the image."""
    G = tiny_generator(architecture=architecture)
    ws = G.mapping(torch.randn(2, 12), None)
    resolutions = G.synthesis.noise_resolutions()
    assert resolutions == [4, 8, 8, 16, 16]
    torch.manual_seed(3)
    fresh = G.synthesis(ws, noise_mode="random")
    torch.manual_seed(3)
    noise = [torch.randn(2, 1, r, r) for r in resolutions]
    assert torch.equal(G.synthesis(ws, noise_mode="random", noise=noise), fresh)
    for i in range(len(noise)):
        changed = [n.clone() for n in noise]
        changed[i].neg_()
        assert not torch.equal(G.synthesis(ws, noise_mode="random", noise=changed), fresh), i
    with pytest.raises(ValueError, match="noise must hold 5 images"):
        G.synthesis(ws, noise_mode="random", noise=noise[:-1])
    with pytest.raises(ValueError, match="explicit noise needs noise_mode='random'"):
        G.synthesis(ws, noise_mode="const", noise=noise)


@pytest.mark.parametrize("architecture", ["orig", "resnet"])
def test_other_generator_architectures_run(architecture):
    G = tiny_generator(architecture=architecture)
    assert G(torch.randn(2, 12), None).shape == (2, 3, 16, 16)
    if architecture == "orig":
        assert not hasattr(G.synthesis.b8, "torgb") and hasattr(G.synthesis.b16, "torgb")
    else:
        assert G.synthesis.b8.skip.weight.shape[-1] == 1


def test_flat_synthesis_kwargs_are_accepted():
    a = Generator(4, 0, 4, 8, 3, synthesis_kwargs={"channel_base": 32, "channel_max": 4})
    b = Generator(4, 0, 4, 8, 3, channel_base=32, channel_max=4)
    assert a.to_config() == b.to_config() == b.config


@pytest.mark.parametrize("c_dim", [0, 3])
def test_discriminator_matches_reference_transcription(c_dim):
    D = Discriminator(
        c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
        conv_clamp=0.9, mapping_kwargs={"num_layers": 2}, epilogue_kwargs={"mbstd_group_size": 2},
    )  # fmt: skip
    randomise(D)
    img = torch.randn(4, 3, 16, 16)
    c = torch.eye(3)[[0, 1, 2, 1]][:, :c_dim]
    logits = D(img, c)
    assert logits.shape == (4, 1)
    close(logits, ref.discriminate(dict(D.state_dict()), D.to_config(), img, c), tol=1e-4)


@pytest.mark.parametrize("architecture", ["orig", "skip"])
def test_other_discriminator_architectures_run(architecture):
    D = Discriminator(0, 16, 3, architecture=architecture, channel_base=128, channel_max=16)
    assert D(torch.randn(4, 3, 16, 16), None).shape == (4, 1)


def test_generator_round_trip(tmp_path):
    G = tiny_generator(c_dim=3, num_fp16_res=1, conv_clamp=256.0)
    path = save_generator(G, tmp_path / "G.safetensors")
    H = load_generator(path)
    assert not H.training and not any(p.requires_grad for p in H.parameters())
    assert H.to_config() == G.to_config()
    for name, tensor in G.state_dict().items():
        assert torch.equal(tensor, H.state_dict()[name]), name
    z, c = torch.randn(2, 12), torch.eye(3)[:2]
    assert torch.equal(G(z, c), H(z, c))


def test_discriminator_round_trip_and_kind_check(tmp_path):
    D = Discriminator(2, 16, 3, channel_base=128, channel_max=16, mapping_kwargs={"num_layers": 1})
    path = save_discriminator(D, tmp_path / "D.safetensors")
    E = load_discriminator(path)
    img, c = torch.randn(4, 3, 16, 16), torch.eye(2)[[0, 1, 1, 0]]
    assert torch.equal(D.eval()(img, c), E(img, c))
    with pytest.raises(UserError, match="'stylegan2.discriminator' model"):
        load_generator(path)


def test_sample_follows_generate_py():
    G = tiny_generator(c_dim=3)
    images = sample(G, [0, 7], class_idx=1, truncation=0.6, noise_mode="const")
    assert images.shape == (2, 16, 16, 3) and images.dtype == torch.uint8
    sd = dict(G.state_dict())
    for seed, image in zip([0, 7], images, strict=True):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
        label = torch.zeros([1, 3])
        label[:, 1] = 1
        img = ref.generate(sd, G.to_config(), z, label, 0.6)
        expected = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0]
        assert (image.int() - expected.int()).abs().max() <= 1
    # a seed's image does not depend on the other seeds
    assert torch.equal(sample(G, [7], class_idx=1, truncation=0.6)[0], images[1])


def test_sample_checks_the_class():
    G = tiny_generator(c_dim=3)
    with pytest.raises(UserError, match="conditional"):
        sample(G, [0])
    with pytest.raises(UserError, match="out of range"):
        sample(G, [0], class_idx=3)
