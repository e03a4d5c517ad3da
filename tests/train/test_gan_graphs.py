"""gan.cuda_graphs: what a CUDA graph needs of the GAN's phases, checked on the CPU.

A captured phase is replayed without Python: it must never read the device on the host nor copy
host data to it, and the graph-safe augmentation (every transform computed, each image keeping
only what its draws chose) must train exactly what the default one does. That replayed graphs
then give the eager weights is checked on a GPU by ``benchmarks/gan_vs_official.py graphs``.
"""

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.train.test_gan_objective import tiny, tiny_state
from tests.train.test_gan_stop import train_cli
from viscoin.config import load_config
from viscoin.errors import UserError
from viscoin.train.augment import AugmentPipe
from viscoin.train.gan import GanLoss, training_step

# ops that read a device tensor on the host, or put host data on the device, or whose output
# shape depends on values: none can be replayed by a CUDA graph
SYNCING = {
    "aten._local_scalar_dense.default",  # .item(), bool(t), float(t), int(t)
    "aten.lift_fresh.default",  # torch.tensor(data) / as_tensor / new_tensor: a host copy
    "aten.lift_fresh_copy.default",
    "aten.nonzero.default",
    "aten.masked_select.default",
    "aten._unique2.default",
}


class GraphBreakers(TorchDispatchMode):
    """Records every op a CUDA graph could not replay (``SYNCING``, boolean-mask indexing and
    ``Tensor.tolist``, which bypasses the dispatcher)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        masks = name.startswith("aten.index") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool
            for a in args
            if isinstance(a, (list, tuple))
            for i in a
        )
        if name in SYNCING or masks:
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def breakers(fn, monkeypatch) -> list[str]:
    mode = GraphBreakers()
    real_tolist = torch.Tensor.tolist

    def tolist(t):
        mode.found.append("Tensor.tolist")
        return real_tolist(t)

    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    with mode:
        fn()
    monkeypatch.setattr(torch.Tensor, "tolist", real_tolist)
    return mode.found


def _phases(loss: GanLoss, s, g):
    """Each phase's loss function with its arguments, as training_step calls them."""
    n = g.batch_size
    real = torch.rand(n, 3, g.resolution, g.resolution) * 2 - 1
    c, z = torch.zeros(n, 0), torch.randn(n, g.z_dim)
    return {
        "G_main": (s.G, lambda: loss.generator_main(z, c)),
        "G_pl": (s.G, lambda: loss.generator_pl(z, c, g.pl_interval)),
        "D_main": (s.D, lambda: loss.discriminator_main(real, c, z, c)),
        "D_r1": (s.D, lambda: loss.discriminator_r1(real, c, g.r1_interval)),
    }


def _run(module, fn):
    module.requires_grad_(True)
    fn()
    module.requires_grad_(False)


@pytest.mark.parametrize("phase", ["G_main", "G_pl", "D_main", "D_r1"])
def test_graph_safe_phases_never_sync_nor_copy_from_the_host(phase, monkeypatch):
    g = tiny(augment="ada", pl_weight=2.0, style_mixing=0.9)
    s = tiny_state(g)
    s.augment_pipe.p.fill_(0.5)
    loss = GanLoss(s, g)
    loss.graph_safe = True
    module, fn = _phases(loss, s, g)[phase]
    _run(module, fn)  # as the eager warm-up calls before the capture: constants made once
    assert breakers(lambda: _run(module, fn), monkeypatch) == []


def test_the_default_augmentation_is_what_the_check_catches(monkeypatch):
    """The check is not blind: the default pass asks the device which transforms to run."""
    g = tiny(augment="fixed:0.5")
    s = tiny_state(g)
    module, fn = _phases(GanLoss(s, g), s, g)["D_main"]
    _run(module, fn)
    found = breakers(lambda: _run(module, fn), monkeypatch)
    assert "aten._local_scalar_dense.default" in found


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("p", [0.0, 0.4, 1.0])
def test_graph_safe_augmentation_is_the_default_one(channels, p):
    pipe = AugmentPipe(p)
    x = (torch.rand(12, channels, 16, 16, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    draws = pipe.draw(12, 16, 16, generator=torch.Generator().manual_seed(3))
    outputs, grads = [], []
    for graph_safe in (False, True):
        y = pipe.apply(x, draws, graph_safe=graph_safe)
        (gx,) = torch.autograd.grad((y * y.detach()).sum(), x)
        outputs.append(y.detach())
        grads.append(gx)
    assert torch.equal(outputs[0], outputs[1])
    assert torch.equal(grads[0], grads[1])
    if p > 0:
        assert not torch.equal(outputs[0], x.detach())  # something was augmented


def test_graph_safe_training_steps_are_the_default_ones():
    g = tiny(augment="ada", ada_interval=1, ada_kimg=1, pl_weight=2.0, pl_interval=2)
    g.r1_interval, g.style_mixing = 2, 0.9
    states = []
    for graph_safe in (False, True):
        s = tiny_state(g)
        s.augment_pipe.p.fill_(0.6)
        loss = GanLoss(s, g, seed=1)
        loss.graph_safe = graph_safe
        real = torch.rand(g.batch_size, 3, g.resolution, g.resolution) * 2 - 1
        labels = torch.zeros(g.batch_size, dtype=torch.long)
        torch.manual_seed(5)
        for _ in range(3):
            training_step(loss, real, labels, 0, g)
        states.append(s)
    a, b = states
    assert float(a.augment_pipe.p) != 0.6  # ADA moved p
    for net in ("G", "D", "G_ema"):
        for key, value in getattr(a, net).state_dict().items():
            assert torch.equal(getattr(b, net).state_dict()[key], value), f"{net}.{key}"
    assert torch.equal(a.augment_pipe.p, b.augment_pipe.p)


def test_cuda_graphs_and_compile_are_refused_together():
    assert load_config(None, ["gan.cuda_graphs=true"]).gan.cuda_graphs is True
    with pytest.raises(UserError, match="gan.cuda_graphs must be false with gan.compile=true"):
        load_config(None, ["gan.cuda_graphs=true", "gan.compile=true"])


def test_cuda_graphs_refused_over_several_processes():
    g = tiny()
    loss = GanLoss(tiny_state(g), g)
    loss.dist = copy.copy(loss.dist)
    loss.dist.world = 2
    with pytest.raises(UserError, match="under torchrun set gan.cuda_graphs=false"):
        loss.use_cuda_graphs()


def test_cuda_graphs_on_the_cpu_trains_without_them_and_says_so(tmp_path, capsys):
    code, err = train_cli(tmp_path, "graphs", capsys, "gan.cuda_graphs=true")
    assert code == 0, err
    assert "warning: gan.cuda_graphs needs a CUDA device: training on cpu without them" in err
    assert (tmp_path / "graphs" / "checkpoints" / "generator.safetensors").exists()
