"""gan.cuda_graphs: what a CUDA graph needs of the GAN's phases, checked on the CPU, and when
the trainer uses them (auto: one CUDA process on torch >= 2.5 without gan.compile).

A captured phase is replayed without Python: it must never read the device on the host nor copy
host data to it, and the graph-safe augmentation (every transform computed, each image keeping
only what its draws chose) must train exactly what the default one does. That replayed graphs
then give the eager weights is checked on a GPU by ``benchmarks/gan_vs_official.py graphs``.
"""

import copy

import pytest
import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode

import viscoin.train.gan as vg
from tests.train.test_gan import TINY
from tests.train.test_gan_init import run_main
from tests.train.test_gan_objective import tiny, tiny_state
from tests.train.test_gan_stop import train_cli
from viscoin.config import Config, load_config, resume_differences
from viscoin.errors import UserError
from viscoin.train import graphs
from viscoin.train.augment import AugmentPipe
from viscoin.train.gan import GanLoss, training_step
from viscoin.train.graphs import graphs_supported, resolve_cuda_graphs

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


CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "world", "compile", "supported", "expected"),
    [
        (CUDA, 1, False, True, True),  # one CUDA process on torch >= 2.5: on
        (CPU, 1, False, True, False),
        (CUDA, 2, False, True, False),  # under torchrun
        (CUDA, 1, True, True, False),  # gan.compile wins
        (CUDA, 1, False, False, False),  # torch < 2.5
    ],
)
def test_auto_uses_graphs_exactly_in_one_cuda_process_without_compile(
    device, world, compile, supported, expected, monkeypatch
):
    monkeypatch.setattr(graphs, "graphs_supported", lambda: supported)
    assert resolve_cuda_graphs("auto", device, world, compile) is expected


@pytest.mark.parametrize("device", [CUDA, CPU])
@pytest.mark.parametrize("world", [1, 2])
def test_false_never_uses_graphs(device, world):
    assert resolve_cuda_graphs(False, device, world, False) is False


def test_true_uses_graphs_on_cuda_and_says_why_it_cannot(monkeypatch):
    assert resolve_cuda_graphs(True, CUDA, 1, False) is True
    assert resolve_cuda_graphs(True, CPU, 1, False) is False  # the trainer warns
    assert resolve_cuda_graphs(True, CPU, 2, False) is False
    with pytest.raises(UserError, match="under torchrun set gan.cuda_graphs=false"):
        resolve_cuda_graphs(True, CUDA, 2, False)
    monkeypatch.setattr(graphs, "graphs_supported", lambda: False)
    with pytest.raises(
        UserError, match=r"needs torch >= 2.5 \(this is .*set gan.cuda_graphs=false"
    ):
        resolve_cuda_graphs(True, CUDA, 1, False)


def test_the_torch_check_is_the_version_that_replays_other_generators():
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    assert graphs_supported() is ((major, minor) >= (2, 5))
    assert graphs_supported() is hasattr(torch.cuda.CUDAGraph, "register_generator_state")


def test_cuda_graphs_is_auto_true_or_false():
    assert Config().gan.cuda_graphs == "auto"
    assert load_config(None).gan.cuda_graphs == "auto"
    assert load_config(None, ["gan.cuda_graphs=true"]).gan.cuda_graphs is True
    assert load_config(None, ["gan.cuda_graphs=false"]).gan.cuda_graphs is False
    assert load_config(None, ["gan.cuda_graphs=auto"]).gan.cuda_graphs == "auto"
    for bad in ("maybe", "1", "'true'"):
        with pytest.raises(UserError, match="gan.cuda_graphs must be auto, true or false, got"):
            load_config(None, [f"gan.cuda_graphs={bad}"])
    with pytest.raises(UserError, match="gan.cuda_graphs must be of type"):
        load_config(None, ["gan.cuda_graphs=[auto]"])


@pytest.mark.parametrize("value", [True, False, "auto"])
def test_a_saved_config_loads_its_cuda_graphs_back(value, tmp_path):
    """config.yaml of runs saved before 'auto' hold a YAML bool; those after, any of the three."""
    raw = Config().to_dict()
    raw["gan"]["cuda_graphs"] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert f"cuda_graphs: {str(value).lower()}\n" in path.read_text()
    loaded = load_config(path)
    assert loaded.gan.cuda_graphs == value and type(loaded.gan.cuda_graphs) is type(value)
    loaded.save(tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml") == loaded


def test_resuming_an_old_run_may_change_cuda_graphs(tmp_path):
    saved = load_config(None, ["gan.cuda_graphs=false"])  # an old run's default
    safe, refused = resume_differences(saved, load_config(None))
    assert safe == {"gan.cuda_graphs": (False, "auto")} and refused == {}


def test_cuda_graphs_and_compile_are_refused_together():
    assert load_config(None, ["gan.cuda_graphs=true"]).gan.cuda_graphs is True
    with pytest.raises(UserError, match="gan.cuda_graphs must be false with gan.compile=true"):
        load_config(None, ["gan.cuda_graphs=true", "gan.compile=true"])


def test_auto_with_compile_is_accepted_and_compile_wins():
    cfg = load_config(None, ["gan.compile=true"])
    assert cfg.gan.cuda_graphs == "auto" and cfg.gan.compile is True
    assert load_config(None, ["gan.cuda_graphs=auto", "gan.compile=true"]).gan.compile is True
    assert load_config(None, ["gan.cuda_graphs=false", "gan.compile=true"]).gan.compile is True
    assert resolve_cuda_graphs(cfg.gan.cuda_graphs, CUDA, 1, cfg.gan.compile) is False


def test_cuda_graphs_refused_over_several_processes():
    g = tiny()
    loss = GanLoss(tiny_state(g), g)
    loss.dist = copy.copy(loss.dist)
    loss.dist.world = 2
    with pytest.raises(UserError, match="under torchrun set gan.cuda_graphs=false"):
        loss.use_cuda_graphs()


def test_cuda_graphs_refused_before_torch_2_5(monkeypatch):
    g = tiny()
    loss = GanLoss(tiny_state(g), g)
    monkeypatch.setattr(graphs, "graphs_supported", lambda: False)
    with pytest.raises(UserError, match=r"gan.cuda_graphs needs torch >= 2.5"):
        loss.use_cuda_graphs()


def _recorded(monkeypatch, answer: bool) -> tuple[list, list]:
    """The trainer's calls to resolve_cuda_graphs (answering ``answer``) and use_cuda_graphs."""
    asked, used = [], []

    def resolve(*args):
        asked.append(args)
        return answer

    monkeypatch.setattr(vg, "resolve_cuda_graphs", resolve)
    monkeypatch.setattr(GanLoss, "use_cuda_graphs", lambda self: used.append(self))
    return asked, used


@pytest.mark.parametrize(
    ("sets", "setting", "compile"),
    [
        ((), "auto", False),
        (("gan.cuda_graphs=false",), False, False),
        (("gan.compile=true",), "auto", True),
    ],
)
def test_the_trainer_uses_graphs_when_the_setting_resolves_to_them(
    sets, setting, compile, tmp_path, capsys, monkeypatch
):
    asked, used = _recorded(monkeypatch, True)
    monkeypatch.setattr(torch, "compile", lambda module, **options: module)  # nothing to build
    code, err = train_cli(tmp_path, "graphs", capsys, *sets)
    assert code == 0, err
    assert asked == [(setting, torch.device("cpu"), 1, compile)]
    assert len(used) == 1


def test_auto_on_the_cpu_trains_eagerly_without_a_word(tmp_path, capsys, monkeypatch):
    used = []
    monkeypatch.setattr(GanLoss, "use_cuda_graphs", lambda self: used.append(self))
    code, err = train_cli(tmp_path, "graphs", capsys)
    assert code == 0, err
    assert used == []
    assert "cuda_graphs" not in err and "warning:" not in err
    saved = yaml.safe_load((tmp_path / "graphs" / "config.yaml").read_text())
    assert saved["gan"]["cuda_graphs"] == "auto"
    assert (tmp_path / "graphs" / "checkpoints" / "generator.safetensors").exists()


def test_cuda_graphs_on_the_cpu_trains_without_them_and_says_so(tmp_path, capsys):
    code, err = train_cli(tmp_path, "graphs", capsys, "gan.cuda_graphs=true")
    assert code == 0, err
    assert "warning: gan.cuda_graphs needs a CUDA device: training on cpu without them" in err
    assert (tmp_path / "graphs" / "checkpoints" / "generator.safetensors").exists()


@pytest.mark.parametrize(
    ("sets", "loop"), [((), "eager"), (("gan.compile=true",), "torch.compile")]
)
def test_the_start_line_names_the_training_loop(sets, loop, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **options: module)  # nothing to build
    data = ["data.resolution=16", "data.options.n_train=8", "gan.kimg=0.008", *sets]
    args = ["train", "gan", "--config", "shapes", *(f"--set={s}" for s in TINY + data)]
    code = run_main(*args, "--device", "cpu", "--quiet", "--runs-dir", str(tmp_path), "--name", "s")
    out = capsys.readouterr().out
    assert code == 0
    assert f"run directory: {tmp_path / 's'}  (8 images, device cpu, 1 process(es), {loop})" in out
