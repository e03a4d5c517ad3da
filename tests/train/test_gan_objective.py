"""The GAN trainer's phases against the StyleGAN2-ADA objective written out by hand.

Tiny networks on CPU, no augmentation: each phase's gradients are compared with those of the
formula (non-saturating logistic loss, R1 with its γ/2 and lazy gain), each phase must step only
its own network, z must reach the synthesis with and without style mixing, and the 'auto' preset
must regularise path lengths as StyleGAN2-ADA's ``--cfg auto`` does, and TF32 follows ``gan.tf32``.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from viscoin.config import GanConfig, load_config
from viscoin.models.stylegan2.layers import MinibatchStdLayer
from viscoin.train.gan import (
    GanLoss,
    GanState,
    _new_state,
    _phase,
    build_networks,
    lazy_adam,
    lerp_ema,
    set_cuda_precision,
)


def tiny(**overrides) -> GanConfig:
    values = {
        "resolution": 16,
        "z_dim": 8,
        "w_dim": 8,
        "channel_base": 64,
        "channel_max": 8,
        "batch_size": 4,
        "mbstd_group_size": 2,
        "r1_gamma": 0.7,
        "style_mixing": 0.0,
        "augment": "none",
    }
    return GanConfig(**{**values, **overrides})


def tiny_state(g: GanConfig) -> GanState:
    torch.manual_seed(0)
    state = _new_state(g, 3, torch.device("cpu"))
    with torch.no_grad():  # noise on, so that the noise strengths get gradients too
        for name, param in state.G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.3)
    return state


def grads_of(module: torch.nn.Module, fn) -> dict[str, torch.Tensor]:
    """Gradients of ``module``'s parameters after ``fn()`` (which calls backward itself)."""
    for p in module.parameters():
        p.grad = None
    module.requires_grad_(True)
    fn()
    module.requires_grad_(False)
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert b and b.keys() <= a.keys()
    for name in a.keys() - b.keys():  # in the trainer's graph only through a `* 0` term
        assert not a[name].any(), name
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-7, msg=name)


def test_phases_compute_the_stylegan2_ada_objective():
    g = tiny()
    s = tiny_state(g)
    loss = GanLoss(s, g)
    real = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z, c = torch.randn(4, 8, generator=torch.Generator().manual_seed(2)), torch.zeros(4, 0)

    def fake() -> torch.Tensor:
        return s.G.synthesis(s.G.mapping(z, c), noise_mode="random")

    def seeded(fn):
        def run():
            torch.manual_seed(3)  # the same noise draws in the trainer's phase and the formula
            fn()

        return run

    # G: maximise log σ(D(G(z))), i.e. minimise mean softplus(−D(G(z))).
    trainer = grads_of(s.G, seeded(lambda: loss.generator_main(z, c)))
    formula = grads_of(s.G, seeded(lambda: F.softplus(-s.D(fake(), c)).mean().backward()))
    assert_same(trainer, formula)

    # D: mean softplus(D(G(z))) + mean softplus(−D(x)), G's images held fixed.
    def d_formula():
        with torch.no_grad():
            images = fake()
        (F.softplus(s.D(images, c)).mean() + F.softplus(-s.D(real, c)).mean()).backward()

    assert_same(
        grads_of(s.D, seeded(lambda: loss.discriminator_main(real, c, z, c))),
        grads_of(s.D, seeded(d_formula)),
    )

    # R1 every 16 steps: 16 · (γ/2) · mean ‖∇ₓD(x)‖².
    def r1_formula():
        x = real.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(s.D(x, c).sum(), x, create_graph=True)
        (16 * g.r1_gamma / 2 * grad.square().sum([1, 2, 3]).mean()).backward()

    assert_same(
        grads_of(s.D, lambda: loss.discriminator_r1(real, c, 16)), grads_of(s.D, r1_formula)
    )


def test_each_phase_steps_only_its_own_network():
    g = tiny(pl_weight=1.0)
    s = tiny_state(g)
    loss = GanLoss(s, g)
    real, c = torch.rand(4, 3, 16, 16) * 2 - 1, torch.zeros(4, 0)
    z = torch.randn(4, 8)
    phases = [
        (s.G, s.opt_G, loss.generator_main, (z, c)),
        (s.G, s.opt_G, loss.generator_pl, (z, c, 4)),
        (s.D, s.opt_D, loss.discriminator_main, (real, c, z, c)),
        (s.D, s.opt_D, loss.discriminator_r1, (real, c, 16)),
    ]
    for module, opt, fn, args in phases:
        before = {name: copy.deepcopy(net.state_dict()) for name, net in (("G", s.G), ("D", s.D))}
        _phase(module, opt, fn, *args)
        own, other = ("G", "D") if module is s.G else ("D", "G")
        after = {"G": s.G.state_dict(), "D": s.D.state_dict()}
        changed = {
            name: [k for k, v in after[name].items() if not torch.equal(v, before[name][k])]
            for name in after
        }
        # D's main phase moves G's w̄ (a buffer, the mapping's running mean), nothing else of G.
        assert changed[other] in ([], ["mapping.w_avg"]), (fn.__name__, changed[other])
        assert changed[own], fn.__name__
        assert not any(p.requires_grad for p in (*s.G.parameters(), *s.D.parameters()))


@pytest.mark.parametrize("mixing", [0.0, 1.0])
def test_z_reaches_the_synthesis(mixing):
    g = tiny(style_mixing=mixing)
    s = tiny_state(g)
    loss = GanLoss(s, g)
    c = torch.zeros(4, 0)
    for seed in range(8):
        z = torch.randn(4, 8, generator=torch.Generator().manual_seed(seed))
        images, ws = loss.run_G(z, c)
        own = s.G.mapping(z, c)
        # Without mixing every row is z's; with it, at least the first one (the cutoff is ≥ 1).
        rows = ws.shape[1] if mixing == 0 else 1
        torch.testing.assert_close(ws[:, :rows], own[:, :rows])
        other = loss.run_G(torch.randn(4, 8), c)[0]
        assert (images - other).abs().mean() > 1e-3  # different z, different images


def test_minibatch_std_sees_a_collapsed_batch():
    diverse = torch.randn(8, 4, 4, 4)
    collapsed = diverse[:1].expand(8, -1, -1, -1)
    std = MinibatchStdLayer(4)
    assert std(collapsed)[:, -1].abs().max() < 1e-3
    assert std(diverse)[:, -1].min() > 0.5


def test_auto_preset_regularises_path_lengths_with_the_lazy_adam():
    g = load_config(None, ["gan.preset=auto", "gan.resolution=32"]).gan
    assert (g.pl_weight, g.pl_interval, g.style_mixing) == (2.0, 4, 0.9)
    G, _ = build_networks(tiny(), 3, 0)
    group = lazy_adam(G.parameters(), g.lr, g.betas, g.pl_interval).param_groups[0]
    assert group["lr"] == pytest.approx(0.0025 * 4 / 5)  # StyleGAN2-ADA's G: 0.002
    assert group["betas"] == pytest.approx((0.0, 0.99**0.8))


def test_tf32_follows_the_config():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for on in (True, False):
            set_cuda_precision(tiny(tf32=on))
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (
                on,
                on,
            )
        assert load_config(None, ["gan.preset=auto"]).gan.tf32 is False  # as StyleGAN2-ADA
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_style_mixing_takes_the_rows_from_the_cutoff_on_from_a_second_latent():
    """The mixing draws (cutoff, whether to mix, the second z) in that order from the global
    RNG, as StyleGAN2-ADA's loss; rows before the cutoff are z's, the rest the second latent's."""
    g = tiny(style_mixing=0.5)
    s = tiny_state(g)
    loss = GanLoss(s, g)
    c, mixed = torch.zeros(4, 0), 0
    for seed in range(12):
        z = torch.randn(4, 8, generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        _, ws = loss.run_G(z, c)
        torch.manual_seed(seed)
        cutoff = int(torch.empty([], dtype=torch.int64).random_(1, ws.shape[1]))
        mix = bool(torch.rand([]) < g.style_mixing)
        second = torch.randn_like(z)
        cutoff = cutoff if mix else ws.shape[1]
        mixed += mix
        torch.testing.assert_close(ws[:, :cutoff], s.G.mapping(z, c)[:, :cutoff])
        torch.testing.assert_close(ws[:, cutoff:], s.G.mapping(second, c)[:, cutoff:])
    assert 0 < mixed < 12  # both cases were seen


def test_ema_update_is_one_lerp_per_tensor():
    g = tiny()
    s, other = tiny_state(g), tiny_state(g)
    with torch.no_grad():
        for p in other.G.parameters():
            p.add_(torch.randn_like(p))
        other.G.mapping.w_avg.normal_()
    params = [p.clone() for p in s.G_ema.parameters()]
    lerp_ema(s.G_ema, other.G, 0.9)
    for ema, before, p in zip(s.G_ema.parameters(), params, other.G.parameters(), strict=True):
        assert torch.equal(ema, p.lerp(before, 0.9))  # bit for bit: 0.9 of the old EMA
    assert torch.equal(s.G_ema.mapping.w_avg, other.G.mapping.w_avg)  # buffers copied
    with pytest.raises(ValueError, match="differ"):
        lerp_ema(s.G_ema, s.D, 0.9)
