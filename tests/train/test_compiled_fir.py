"""Which FIR form the compiled step traces: matrix products in the loss computation (their
backward is matrix products, where the fused shifted views' backward re-reads its input 16 times),
shifted views in the sampling; the loss computation falls back to shifted views when a
resampling filter is not the standard one. Traced by Dynamo with the eager backend (no code
generation), so the forms are those a GPU run compiles."""

import functools

import pytest
import torch

from viscoin.models.classifier import Classifier
from viscoin.models.stylegan2 import Generator, ops
from viscoin.models.viscoin import build_core
from viscoin.train.step import SpeedOptions, StepCompute
from viscoin.train.viscoin import LossWeights


@pytest.fixture
def traced(monkeypatch):
    """Counts, per FIR form, the calls made while Dynamo traces."""
    calls = {"matmul": 0, "pointwise": 0}

    def spy(name, real):
        def wrapped(*args, **kwargs):
            if torch.compiler.is_compiling():
                calls[name] += 1
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(ops, "_fir_matmul", spy("matmul", ops._fir_matmul))
    monkeypatch.setattr(ops, "upfirdn2d_pointwise", spy("pointwise", ops.upfirdn2d_pointwise))
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()


def _step(compile_mode: str, standard: bool = True) -> tuple[StepCompute, torch.Tensor]:
    torch.manual_seed(0)
    f = Classifier("resnet18", 10).eval().requires_grad_(False)
    G = Generator(
        16, 0, 16, 32, 3, mapping_kwargs={"num_layers": 1}, channel_base=256, channel_max=16
    )
    G = G.eval().requires_grad_(False)
    if not standard:
        dict(G.named_buffers())["synthesis.b16.conv0.resample_filter"].mul_(1.5)
    core = build_core(f, G, 32, n_concepts=8, channels=16).train()
    options = SpeedOptions(compile=compile_mode)
    return StepCompute(f, core, G, None, LossWeights(), options, torch.device("cpu")), G


def test_the_compiled_losses_filter_by_matrix_products_and_the_sampling_by_shifted_views(traced):
    compute, G = _step("default")
    assert compute.compiled_fir == "matmul"
    images = compute.sample(torch.randn(2, 16), torch.zeros(2, 0))
    assert traced["matmul"] == 0 and traced["pointwise"] > 0
    sampled = traced["pointwise"]
    terms = compute.losses(images, True, 0.1)
    assert traced["matmul"] > 0 and traced["pointwise"] == sampled
    # the same numbers as the eager step (float32)
    eager = StepCompute(
        compute.classifier, compute.core, G, None, LossWeights(), SpeedOptions(), compute.device
    )
    expected = eager.losses(images, True, 0.1)
    torch.testing.assert_close(terms["total"], expected["total"], rtol=1e-5, atol=1e-6)


def test_a_changed_filter_keeps_the_compiled_losses_on_shifted_views(traced):
    compute, _ = _step("default", standard=False)
    assert compute.compiled_fir == "pointwise"
    compute.losses(torch.rand(2, 3, 32, 32) * 2 - 1, True, 0.1)
    assert traced["matmul"] == 0 and traced["pointwise"] > 0


def test_the_fir_choice_is_checked():
    with pytest.raises(ValueError, match="compiled_fir"):
        SpeedOptions(compiled_fir="fft")
