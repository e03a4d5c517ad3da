"""viscoin.compile_scope=regional: each repeated block of f, G's synthesis network and LPIPS is
compiled on its own, in place, and the step computes what the eager one does. The graphs are built
with AOTAutograd's eager backend here (forward and backward traced as Inductor would compile them,
in seconds)."""

import pytest
import torch
from torchvision.models.resnet import BasicBlock

from viscoin.errors import UserError
from viscoin.models.classifier import Classifier
from viscoin.models.stylegan2 import Generator
from viscoin.models.stylegan2.synthesis import SynthesisBlock
from viscoin.models.viscoin import build_core
from viscoin.train.losses import LPIPS
from viscoin.train.step import SpeedOptions, StepCompute, repeated_blocks
from viscoin.train.viscoin import LossWeights

RES = 32
CPU = torch.device("cpu")


def parts():
    torch.manual_seed(0)
    f = Classifier("resnet18", 3).eval().requires_grad_(False)
    G = Generator(
        8, 0, 8, RES, 3, mapping_kwargs={"num_layers": 1}, channel_base=128, channel_max=8
    )
    G = G.eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    core = build_core(f, G, RES, n_concepts=4, channels=8).train()
    return f, G, core, LPIPS(random_backbone=True)


def test_the_regions_are_the_networks_repeated_blocks():
    f, G, _, lpips = parts()
    blocks = repeated_blocks(f)
    # a ResNet's stages are looked into: its 8 basic blocks, not its 4 stages
    assert sum(isinstance(b, BasicBlock) for b in blocks) == 8
    assert not any(isinstance(b, torch.nn.Sequential) for b in blocks)
    assert repeated_blocks(G.synthesis) == [m for m in G.synthesis.children()]
    assert all(isinstance(b, SynthesisBlock) for b in repeated_blocks(G.synthesis))
    # LPIPS: the five VGG slices (containers of layers) and the linear heads
    slices = [b for b in repeated_blocks(lpips) if isinstance(b, torch.nn.Sequential)]
    assert len(slices) == 5
    # every parameter of f is in some region or in a module that is not repeated (stem, head)
    covered = {id(p) for b in blocks for p in b.parameters()}
    assert len(covered) > 0.9 * sum(1 for _ in f.parameters())


def _steps(compute, core, steps=2):
    opt = torch.optim.Adam(core.parameters(), lr=1e-3)
    out = []
    for step in range(steps):
        torch.manual_seed(10 + step)
        real = torch.rand(2, 3, RES, RES) * 2 - 1
        z = torch.randn(2, 8)
        fake = compute.sample(z, torch.zeros(2, 0))
        terms = compute.losses(torch.cat([real, fake]), step > 0, 0.1)
        terms["total"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.append({k: v.detach() for k, v in terms.items()})
    return out


def test_regional_compilation_trains_what_the_eager_step_does(monkeypatch):
    f, G, core, _ = parts()  # without LPIPS: its regions are plain layers, and many (slow to trace)
    eager = _steps(StepCompute(f, core, G, None, LossWeights(), SpeedOptions(), CPU), core)
    eager_core = {k: v.clone() for k, v in core.state_dict().items()}

    graphs = []

    def counting_backend(gm, inputs):
        from torch._dynamo.backends.common import aot_autograd
        from torch._functorch.aot_autograd import make_boxed_func

        def count(g, _):
            graphs.append(g)
            return make_boxed_func(g.forward)

        return aot_autograd(fw_compiler=count, bw_compiler=count)(gm, inputs)

    real_compile = torch.nn.Module.compile

    def compile_with_test_backend(self, **options):
        assert options == {"mode": "default", "dynamic": False}
        real_compile(self, backend=counting_backend, dynamic=False)

    monkeypatch.setattr(torch.nn.Module, "compile", compile_with_test_backend)
    torch._dynamo.reset()
    f, G, core, _ = parts()  # the same seeded weights
    keys = (f.state_dict().keys(), G.state_dict().keys())
    options = SpeedOptions(compile="default", compile_scope="regional")
    compute = StepCompute(f, core, G, None, LossWeights(), options, CPU)
    assert compute.regions and all(b._compiled_call_impl is not None for b in compute.regions)
    # compiled in place: the modules keep their parameter names (no "_orig_mod." prefix)
    assert (f.state_dict().keys(), G.state_dict().keys()) == keys

    regional = _steps(compute, core)
    compiled_graphs = len(graphs)
    assert compiled_graphs > 0  # the regions ran compiled, forward and backward
    for a, b in zip(eager, regional, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    for k, v in core.state_dict().items():
        torch.testing.assert_close(v, eager_core[k], rtol=1e-4, atol=1e-5, msg=k)

    # an evaluation at another batch size runs eagerly: nothing new is compiled
    with compute.eager(), torch.no_grad():
        G(torch.randn(5, 8), torch.zeros(5, 0))
        f(torch.rand(5, 3, RES, RES))
    assert len(graphs) == compiled_graphs
    assert all(b._compiled_call_impl is not None for b in compute.regions)  # and back after


def test_a_bad_compile_scope_is_named():
    with pytest.raises(UserError, match="viscoin.compile_scope must be one of whole, regional"):
        SpeedOptions(compile="default", compile_scope="blocks")


def test_the_whole_step_compiles_with_static_shapes(monkeypatch):
    # the training batches have one size: a dynamic-shape graph would only compile more slowly
    f, G, core, _ = parts()
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or fn)
    StepCompute(f, core, G, None, LossWeights(), SpeedOptions(compile="default"), CPU)
    assert calls == [{"mode": "default", "dynamic": False}] * 2
