"""gan.compile: the main phases run compiled synthesis and discriminator modules and train what
the eager ones train; the regularisation phases (double backward) stay eager. The graphs are
built with AOTAutograd's eager backend here, which traces what Inductor would compile, in seconds."""

import contextlib
import copy

import pytest
import torch

import viscoin.train.gan as vg
from tests.train.test_gan_objective import tiny, tiny_state
from tests.train.test_gan_stop import train_cli
from viscoin.config import load_config
from viscoin.errors import UserError
from viscoin.models.stylegan2.synthesis import SynthesisNetwork
from viscoin.train.gan import GanLoss, training_step


def _steps(state, g, steps=2):
    loss = GanLoss(state, g, seed=0)
    real = torch.rand(g.batch_size, 3, g.resolution, g.resolution) * 2 - 1
    labels = torch.zeros(g.batch_size, dtype=torch.long)
    for step in range(steps):
        torch.manual_seed(100 + step)
        training_step(loss, real, labels, 0, g)
    return state


def test_compiled_main_phases_train_what_the_eager_ones_do(monkeypatch):
    # R1 and path length at step 0 (every 2 steps), style mixing on: every phase runs in 2 steps
    g = tiny(pl_weight=2.0, pl_interval=2, r1_interval=2, style_mixing=0.5)
    eager = _steps(tiny_state(g), g)

    calls = {"synthesis": 0, "D": 0}
    real_compile = torch.compile

    def counted_compile(module, **options):
        assert options == {"mode": "default", "dynamic": False}
        graph = real_compile(module, backend="aot_eager", dynamic=False)
        name = "synthesis" if isinstance(module, SynthesisNetwork) else "D"

        def run(*args, **kwargs):
            calls[name] += 1
            return graph(*args, **kwargs)

        return run

    monkeypatch.setattr(torch, "compile", counted_compile)
    compiled = _steps(tiny_state(g), _with_compile(g))
    # per step: G main (G, D) and D main (G, D on fakes, D on reals); never the R1 / path-length ones
    assert calls == {"synthesis": 2 * 2, "D": 3 * 2}
    for net in ("G", "D", "G_ema"):
        a, b = getattr(eager, net).state_dict(), getattr(compiled, net).state_dict()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=f"{net}.{key}")


def _with_compile(g):
    g = copy.copy(g)
    g.compile = True
    return g


def test_gan_compile_mode_refuses_cuda_graphs():
    assert load_config(None, ["gan.compile=true"]).gan.compile is True
    with pytest.raises(UserError, match="gan.compile_mode must be default or"):
        load_config(None, ["gan.compile_mode=reduce-overhead"])


@pytest.mark.parametrize("compiled", [True, False])
def test_compiled_training_keeps_its_compile_cache_in_the_run(
    tmp_path, capsys, monkeypatch, compiled
):
    """A resumed compiled run loads the first start's graphs from run/compile-cache."""
    seen = []

    @contextlib.contextmanager
    def recorded(directory):
        seen.append(directory)
        yield

    monkeypatch.setattr(vg, "compile_cache", recorded)
    monkeypatch.setattr(torch, "compile", lambda module, **options: module)  # nothing to build
    code, err = train_cli(tmp_path, "c", capsys, f"gan.compile={str(compiled).lower()}")
    assert code == 0, err
    assert seen == [tmp_path / "c" / "compile-cache" if compiled else None]
