"""The ADA augmentation pipeline: each transform on known images, probabilities, determinism,
double backward (R1 goes through it), the p-tuning rule and the ``gan.augment`` syntax."""

import math

import pytest
import torch
import torch.nn.functional as F

from viscoin.config import GanConfig
from viscoin.errors import UserError
from viscoin.train.augment import (
    AdaTuner,
    AugmentDraws,
    AugmentPipe,
    AugmentSpec,
    apply_color,
    blit,
    blit_matrix,
    check_augment_config,
    color_matrix,
    geometric_matrix,
    parse_augment,
    resample,
)

NEUTRAL = {
    "xflip": 0.0, "rotate90": 0.0, "scale": 1.0, "rotate_pre": 0.0, "aniso": 1.0,
    "rotate_post": 0.0, "brightness": 0.0, "contrast": 1.0, "lumaflip": 0.0, "hue": 0.0,
    "saturation": 1.0,
}  # fmt: skip


def draws(batch: int = 2, **values) -> AugmentDraws:
    """Neutral draws for ``batch`` images, with the given ones set (scalars or (B,) / (B, 2))."""
    out = {}
    for name in [*NEUTRAL, "xint", "xfrac"]:
        default = NEUTRAL.get(name, 0.0)
        shape = [batch, 2] if name in ("xint", "xfrac") else [batch]
        out[name] = torch.as_tensor(values.get(name, default), dtype=torch.float32).expand(shape)
    return AugmentDraws(**out)


def images(batch: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def run(x: torch.Tensor, **values) -> torch.Tensor:
    return AugmentPipe().apply(x, draws(x.shape[0], **values))


def test_blits_are_exact_pixel_moves():
    x = images()
    assert torch.equal(run(x, xflip=1.0), torch.flip(x, dims=[3]))
    for k in (1, 2, 3):
        assert torch.equal(run(x, rotate90=float(k)), torch.rot90(x, k, dims=(2, 3))), k
    # Shift right by 3 and up by 2: a shifted copy, the uncovered border filled by reflection.
    shifted = F.pad(x, [3, 0, 0, 2], mode="reflect")[:, :, 2:, :16]
    assert torch.equal(run(x, xint=[3.0, -2.0]), shifted)
    # Order: flip first, then the turn.
    expected = torch.rot90(torch.flip(x, dims=[3]), 1, dims=(2, 3))
    assert torch.equal(run(x, xflip=1.0, rotate90=1.0), expected)


def test_isotropic_scale_magnifies_about_the_centre():
    size = 32
    centred = torch.arange(size, dtype=torch.float64) - (size - 1) / 2

    def smooth(scale: float) -> torch.Tensor:
        y, x = torch.meshgrid(centred / scale, centred / scale, indexing="ij")
        return (torch.cos(2 * math.pi * x / 24 + 0.3) * torch.sin(2 * math.pi * y / 20 + 1)).float()

    x = smooth(1.0).expand(1, 3, size, size)
    out = run(x, scale=2.0)
    # out(p) = in(p / 2): the analytic image at half the frequency (within the smoothing of
    # bilinear supersampling and the low-pass, 1 % of the amplitude at this frequency).
    assert (out - smooth(2.0)).abs().max() < 0.02
    assert (x - smooth(2.0)).abs().max() > 0.5  # and it did change


def test_shrinking_filters_detail_instead_of_aliasing():
    # Columns alternating ±1 shrunk by 2: naive sampling at the output pixels sees every second
    # column (all +1 or all −1); the supersampled, low-passed warp returns flat grey.
    x = torch.ones(1, 3, 32, 32) * (-1.0) ** torch.arange(32)
    warp = draws(1, scale=0.5, xfrac=[0.25, 0.0])
    out = AugmentPipe().apply(x, warp)
    assert out[..., 8:24, 8:24].abs().max() < 1e-5
    # Naive: one bilinear sample per output pixel, at input column 2 (j − 15.5 − 0.25) + 15.5.
    columns = 2 * (torch.arange(32.0) - 15.75) + 15.5
    grid = torch.stack([columns / 31 * 2 - 1, torch.zeros(32)], -1).expand(1, 32, 32, 2)
    naive = F.grid_sample(x, grid, align_corners=True, padding_mode="reflection")
    assert naive[..., 8:24, 8:24].abs().min() > 0.99


def test_identity_and_tiny_warps():
    x = images()
    assert torch.allclose(resample(x, torch.eye(3).expand(2, 3, 3)), x, atol=1e-6)
    # A tiny shift changes the image only a little (the warp is continuous in its matrix).
    assert (run(x, xfrac=[1e-3, 0.0]) - x).abs().max() < 1e-2


def test_rotation_by_a_quarter_turn_matches_rot90_away_from_the_border():
    x = images(1, 16)
    quarter = run(x, rotate_pre=-math.pi / 2)
    # Same pixels as the exact blit (interpolation weights of 0/1), up to rounding.
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_colour_transforms():
    x = images()
    grey = torch.linspace(-1, 1, 2)[:, None, None, None].expand(2, 3, 8, 8)
    assert torch.allclose(run(x, brightness=0.3), x + 0.3, atol=1e-6)
    assert torch.allclose(run(x, contrast=0.5), x * 0.5, atol=1e-6)
    assert torch.allclose(run(run(x, lumaflip=1.0), lumaflip=1.0), x, atol=1e-6)
    assert torch.allclose(run(grey, lumaflip=1.0), -grey, atol=1e-6)
    desaturated = run(x, saturation=0.0)
    assert torch.allclose(desaturated, x.mean(1, keepdim=True).expand_as(x), atol=1e-6)
    for theta in (0.7, -2.0):
        turned = run(x, hue=theta)
        assert torch.allclose(turned.mean(1), x.mean(1), atol=1e-6)  # luma kept
        chroma = (x - x.mean(1, keepdim=True)).norm(dim=1)
        assert torch.allclose(
            (turned - turned.mean(1, keepdim=True)).norm(dim=1), chroma, atol=1e-5
        )
    # A third of a turn around the grey axis permutes the channels.
    assert torch.allclose(run(x, hue=2 * math.pi / 3), x[:, [2, 0, 1]], atol=1e-6)


def test_p_zero_is_exactly_the_identity_and_draws_are_seeded():
    x = images(8)
    pipe = AugmentPipe(p=0.0)
    assert torch.equal(pipe(x, torch.Generator().manual_seed(3)), x)
    pipe.p.fill_(1.0)
    a = pipe(x, torch.Generator().manual_seed(3))
    b = pipe(x, torch.Generator().manual_seed(3))
    c = pipe(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == x.shape and not torch.allclose(a, x)


def test_each_augmentation_happens_with_probability_p_times_its_multiplier():
    n = 20_000
    pipe = AugmentPipe(p=0.3, brightness=0.5)
    d = pipe.draw(n, 16, 16, generator=torch.Generator().manual_seed(0))
    for name, neutral, rate in [("scale", 1.0, 0.3), ("aniso", 1.0, 0.3), ("hue", 0.0, 0.3),
                                ("brightness", 0.0, 0.15), ("saturation", 1.0, 0.3)]:  # fmt: skip
        applied = getattr(d, name).ne(neutral).float().mean()
        assert abs(applied - rate) < 0.015, name
    # x-flip: chosen with p, then a fair coin flips or not.
    assert abs(d.xflip.mean() - 0.15) < 0.015
    # Pre- or post-rotation (or both) with probability p.
    rotated = (d.rotate_pre.ne(0) | d.rotate_post.ne(0)).float().mean()
    assert abs(rotated - 0.3) < 0.015
    assert d.xint.abs().max() <= round(0.125 * 16) and torch.equal(d.xint, d.xint.round())
    assert abs(d.scale[d.scale != 1].log2().std() - 0.2) < 0.01


def test_double_backward_through_each_stage():
    x = images(2, 5).double().requires_grad_(True)
    matrix = geometric_matrix(
        draws(2, scale=[1.3, 0.7], rotate_pre=[0.4, -1.1], xfrac=0.3)
    ).double()
    assert torch.autograd.gradcheck(lambda t: resample(t, matrix), (x,))
    assert torch.autograd.gradgradcheck(lambda t: resample(t, matrix), (x,))
    blits = blit_matrix(draws(2, xflip=1.0, rotate90=[1.0, 3.0], xint=[1.0, -1.0])).double()
    assert torch.autograd.gradgradcheck(lambda t: blit(t, blits), (x,))
    colors = color_matrix(draws(2, brightness=0.1, hue=1.0, saturation=0.5)).double()
    assert torch.autograd.gradgradcheck(lambda t: apply_color(t, colors), (x,))


def test_double_backward_through_the_whole_pipe():
    # R1 differentiates D(augment(x)) twice: a non-linear "D" after the whole pipe at p = 1.
    x = images(2, 5).double().requires_grad_(True)
    pipe = AugmentPipe(p=1.0)
    fixed = pipe.draw(2, 5, 5, generator=torch.Generator().manual_seed(1))
    assert fixed.scale.ne(1).all() and fixed.hue.ne(0).all()  # every stage is exercised
    weight = torch.randn(2, 3, 5, 5, dtype=torch.float64)

    def discriminator(t):
        return (torch.tanh(pipe.apply(t, fixed)) * weight).sum((1, 2, 3))

    assert torch.autograd.gradcheck(discriminator, (x,))
    assert torch.autograd.gradgradcheck(discriminator, (x,))


def test_ada_tuner_follows_the_sign_rule():
    pipe = AugmentPipe(p=0.0)
    # batch 4, interval 2, 0.04 kimg: each adjustment moves p by 4 · 2 / 40 = 0.2.
    tuner = AdaTuner(pipe, target=0.6, kimg=0.04, interval=2, batch=4)
    plus, minus = torch.ones(4, 1), -torch.ones(4, 1)
    mixed = torch.tensor([[1.0], [2.0], [-0.5], [3.0]])  # signs sum to 2
    sequence = [  # (logits at step, expected r_t at even steps, expected p after)
        (minus, None, 0.0), (minus, -1.0, 0.0),  # below target at p = 0: stays at 0
        (mixed, None, 0.0), (plus, 0.75, 0.2),  # 6 / 8 > 0.6: up
        (plus, None, 0.2), (plus, 1.0, 0.4),
        (mixed, None, 0.4), (mixed, 0.5, 0.2),  # 4 / 8 < 0.6: down
        (plus, None, 0.2), (plus, 1.0, 0.4), (plus, None, 0.4), (plus, 1.0, 0.6),
        (plus, None, 0.6), (plus, 1.0, 0.8), (plus, None, 0.8), (plus, 1.0, 1.0),
        (plus, None, 1.0), (plus, 1.0, 1.0),  # clamped at 1
    ]  # fmt: skip
    for step, (logits, rt, p) in enumerate(sequence, start=1):
        tuner.observe(logits)
        out = tuner.update(step)
        assert (out == {}) == (rt is None), step
        if rt is not None:
            assert float(out["ada_rt"]) == pytest.approx(rt), step
        assert float(pipe.p) == pytest.approx(p), step
    # r_t exactly at the target leaves p where it is; the state round-trips.
    tuner.observe(torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0]))
    state = tuner.state_dict()
    other = AdaTuner(AugmentPipe(), target=0.6, kimg=0.04, interval=2, batch=4)
    other.load_state_dict(state)
    assert float(other.pipe.p) == 1.0
    other.observe(torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0]))
    assert float(other.update(2)["ada_rt"]) == pytest.approx(0.6) and float(other.pipe.p) == 1.0


@pytest.mark.parametrize(
    "text, spec",
    [("ada", AugmentSpec("ada")), ("none", AugmentSpec("none")), ("fixed:0.25", AugmentSpec("fixed", 0.25)),
     ("FIXED:1", AugmentSpec("fixed", 1.0)), ("fixed:0", AugmentSpec("fixed", 0.0))],
)  # fmt: skip
def test_augment_forms(text, spec):
    assert parse_augment(text) == spec


@pytest.mark.parametrize(
    "text, message",
    [("bgc", "unknown gan.augment"), ("fixed:1.5", r"\[0, 1\]"), ("fixed:x", r"\[0, 1\]"),
     ("fixed:", r"\[0, 1\]"), ("True", "not an on/off switch")],
)  # fmt: skip
def test_bad_augment_forms(text, message):
    with pytest.raises(UserError, match=message):
        parse_augment(text)


def test_ada_settings_are_checked():
    assert check_augment_config(GanConfig(augment="ada")) == AugmentSpec("ada")
    for field, value, message in [("ada_target", 1.0, "ada_target"), ("ada_target", 0.0, "ada_target"),
                                  ("ada_kimg", 0.0, "ada_kimg"), ("ada_interval", 0, "ada_interval")]:  # fmt: skip
        with pytest.raises(UserError, match=message):
            check_augment_config(GanConfig(augment="ada", **{field: value}))


def test_bilinear_sample_matches_grid_sample():
    """The gather-based sampler against torch's grid_sample (align_corners=False, zeros), with
    points inside, between and outside the image."""
    import torch.nn.functional as F

    from viscoin.train.augment import bilinear_sample

    gen = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 7, 9, generator=gen, dtype=torch.float64)
    col = torch.rand(2, 5, 6, generator=gen, dtype=torch.float64) * 12 - 2
    row = torch.rand(2, 5, 6, generator=gen, dtype=torch.float64) * 10 - 2
    grid = torch.stack([(2 * col + 1) / 9 - 1, (2 * row + 1) / 7 - 1], dim=-1)
    expected = F.grid_sample(
        images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    assert torch.allclose(bilinear_sample(images, col, row), expected, atol=1e-12)
