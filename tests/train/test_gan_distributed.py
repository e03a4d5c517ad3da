"""``train gan`` under torch.distributed: two gloo processes on CPU, each with half of the global
batch, train what one process trains with all of it.

Every run takes R1 and path-length steps (intervals 2) with style mixing, one with ADA and labels,
one with fixed augmentation and the quality monitor: G, D, G_ema (``w_avg`` included),
``pl_mean`` and p must be equal on both processes and match one process to float rounding. Only
rank 0 writes; a resumed two-process run continues as the uninterrupted one; a divergence seen by
one process, and a time budget spent on rank 0's clock, stop both; batches that do not split are
refused; ``torchrun -m viscoin train gan`` trains as one process does.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.train.ddp import free_port, torchrun_environment
from tests.train.test_gan import TINY, tiny_dataset
from viscoin.config import load_config
from viscoin.errors import UserError
from viscoin.models.classifier import Classifier, save_classifier
from viscoin.train.distributed import DistInfo
from viscoin.train.gan import train_gan
from viscoin.utils.runs import RunDir, new_run, read_metrics

WORLD = 2
BATCH = 8  # global: 4 images per process, two minibatch-std groups of 2 each
STEPS = 4  # R1 and path lengths at steps 0 and 2; ADA adjusts p after step 3
RUNS = {
    # seed 2: D's r_t after step 3 is above the target, so p moves (to 0.24) and step 4 augments
    "ada": ["gan.augment=ada", "gan.c_dim=2", "gan.style_mixing=0.9", "run.seed=2"],
    "fixed": ["gan.augment=fixed:0.5", "gan.style_mixing=1.0"],
}
# the tolerance of the comparison with one process (parameters after STEPS Adam steps): two halves
# of a batch sum their gradients in another order than the whole batch, and the CPU's convolution
# kernels differ between processors; a 2-process run of D's small biases (|b| < 0.01) ended
# 3e-5 away from the 1-process run on an Intel Xeon (on an AMD EPYC, within 1e-5)
RTOL, ATOL = 1e-4, 1e-4


def config(name: str, root: Path, steps: int = STEPS, extra: tuple[str, ...] = ()):
    sets = [*TINY, f"gan.batch_size={BATCH}", f"gan.kimg={steps * BATCH / 1000}", *RUNS[name]]
    if name == "fixed":  # with the quality monitor (rank 0 only), which must not change training
        monitor = ["gan.metric_every=2", "gan.metric_samples=8"]
        sets += [*monitor, f"gan.metric_classifier={root / 'f.safetensors'}"]
    return load_config(None, [*sets, *extra])


def capture_states(gan_module) -> list:
    """Patch ``_new_state`` so that every training's GanState is appended to the returned list."""
    states = []
    new_state = gan_module._new_state

    def capturing(*args, **kwargs):
        states.append(new_state(*args, **kwargs))
        return states[-1]

    gan_module._new_state = capturing
    return states


def final_values(state) -> dict[str, torch.Tensor]:
    """What training leaves behind, flat: networks (parameters and buffers), pl_mean, p, ADA sums."""
    values = {"pl_mean": state.pl_mean.clone()}
    for name in ("G", "D", "G_ema"):
        for key, tensor in getattr(state, name).state_dict().items():
            values[f"{name}.{key}"] = tensor.clone()
    if state.augment_pipe is not None:
        values["p"] = state.augment_pipe.p.clone()
    if state.ada is not None:
        values["ada.signs"] = state.ada.signs.clone()
    return values


def _worker(rank: int, world: int, port: int, root: str) -> None:
    torchrun_environment(rank, world, port)
    import viscoin.train.gan as gan
    from viscoin.train.distributed import init_distributed, shutdown

    # a short timeout: a process left waiting in a collective fails the test instead of hanging it
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=60))
    dist = init_distributed("cpu")
    root = Path(root)
    states = capture_states(gan)

    def train(cfg, run, resume=False):
        return train_gan(
            cfg, run, tiny_dataset(), dist.device, resume=resume, progress=False, dist=dist
        )

    def shared_run(name: str, resume: bool = False) -> RunDir:
        if dist.is_main:
            new_run(root / "ddp", name, "gan", resume)
        torch.distributed.barrier()
        return RunDir(root / "ddp" / name)

    for name in RUNS:
        # rank 1 is given a directory of its own: anything it wrote would appear there
        run = shared_run(name)
        if not dist.is_main:
            run = RunDir(root / "rank1" / name)
        train(config(name, root), run)
        torch.save(final_values(states[-1]), root / f"{name}-rank{rank}.pt")

    # interrupted after 2 steps (ADA mid-interval), resumed to 4: every rank reads the state
    train(config("ada", root, 2), shared_run("resumed"))
    train(config("ada", root), shared_run("resumed", resume=True), resume=True)
    torch.save(final_values(states[-1]), root / f"resumed-rank{rank}.pt")
    # started by one process (in the test), resumed by two
    train(config("ada", root), shared_run("switch", resume=True), resume=True)
    torch.save(final_values(states[-1]), root / f"switch-rank{rank}.pt")

    # a time budget spent after the first step on rank 0's clock (rank 1's is stopped): both stop
    clock = gan.time
    if rank == 1:
        gan.time = SimpleNamespace(time=lambda: 0.0)
    summary = train(config("ada", root, extra=("gan.max_minutes=1e-9",)), shared_run("budget"))
    (root / f"budget-rank{rank}.txt").write_text(str(summary["steps"]))
    gan.time = clock

    # rank 1 alone sees a non-finite loss at step 2: both processes must stop there
    if rank == 1:
        step = gan.training_step

        def poisoned(loss, *args):
            values = step(loss, *args)
            if loss.s.step == 2:
                values = {**values, "loss_G": values["loss_G"] * float("nan")}
            return values

        gan.training_step = poisoned
    try:
        train(config("ada", root), shared_run("nan"))
        message = "no error"
    except UserError as exc:
        message = str(exc)
    (root / f"nan-rank{rank}.txt").write_text(message)
    shutdown(dist)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-process runs here, then the same runs (and the resume, the divergence) on 2 processes."""
    import viscoin.train.gan as gan

    root = tmp_path_factory.mktemp("gan-ddp")
    save_classifier(Classifier("resnet18", 2), root / "f.safetensors")
    new_state = gan._new_state
    try:
        states = capture_states(gan)
        for name in RUNS:
            run = new_run(root / "single", name, "gan")
            cfg = config(name, root)
            train_gan(cfg, run, tiny_dataset(), torch.device("cpu"), progress=False)
            torch.save(final_values(states[-1]), root / f"{name}-single.pt")
        # the first 2 steps of a run the two processes resume (no lock: this process lives on)
        switch = RunDir(root / "ddp" / "switch").create()
        train_gan(
            config("ada", root, 2), switch, tiny_dataset(), torch.device("cpu"), progress=False
        )
    finally:
        gan._new_state = new_state
    mp.start_processes(
        _worker, args=(WORLD, free_port(), str(root)), nprocs=WORLD, start_method="spawn"
    )
    return root


def _max_difference(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_match_one(runs, name):
    single, rank0, rank1 = (
        torch.load(runs / f"{name}-{who}.pt") for who in ("single", "rank0", "rank1")
    )
    assert single.keys() == rank0.keys() == rank1.keys()
    for key in rank0:  # the processes hold the same state, bit for bit
        assert torch.equal(rank0[key], rank1[key]), key
    for key in single:
        torch.testing.assert_close(rank0[key], single[key], rtol=RTOL, atol=ATOL, msg=key)
    print(f"{name}: max |2 processes - 1 process| = {_max_difference(rank0, single):.3g}")
    assert single["pl_mean"] > 0  # path lengths were regularised
    assert single["G.mapping.w_avg"].abs().max() > 0
    if name == "ada":
        assert single["p"] > 0 and torch.equal(rank0["p"], single["p"])  # p moved, the same
        assert torch.equal(rank0["ada.signs"], single["ada.signs"])
    # the log: one record per step, the global batch's mean losses (and the monitor's distances)
    ddp_log = read_metrics(runs / "ddp" / name / "metrics.jsonl")
    single_log = read_metrics(runs / "single" / name / "metrics.jsonl")
    assert [r["step"] for r in ddp_log] == [r["step"] for r in single_log]
    assert [r["step"] for r in ddp_log if "loss_G" in r] == [1, 2, 3, 4]
    keys = ("loss_G", "loss_D", "r1_penalty", "pl_penalty", "augment_p", "ada_rt", "fd_classifier")
    for a, b in zip(ddp_log, single_log, strict=True):
        assert a.keys() == b.keys()
        for key in keys:
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)
    if name == "fixed":
        assert [r["step"] for r in ddp_log if "fd_classifier" in r] == [2, 4]


def test_only_rank_0_writes(runs):
    def files(path: Path) -> set[str]:
        return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}

    for name in RUNS:
        assert files(runs / "ddp" / name) == files(runs / "single" / name)
    assert "checkpoints/generator-best.safetensors" in files(runs / "ddp" / "fixed")
    assert not (runs / "rank1").exists()


def test_a_resumed_two_process_run_continues_as_an_uninterrupted_one(runs):
    straight, resumed = (torch.load(runs / f"{name}-rank0.pt") for name in ("ada", "resumed"))
    other = torch.load(runs / "resumed-rank1.pt")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
        assert torch.equal(other[key], resumed[key]), key
    steps = [r["step"] for r in read_metrics(runs / "ddp" / "resumed" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4]


def test_a_one_process_run_resumes_on_two(runs):
    single, switched = (torch.load(runs / f"{name}.pt") for name in ("ada-single", "switch-rank0"))
    for key in single:
        torch.testing.assert_close(switched[key], single[key], rtol=RTOL, atol=ATOL, msg=key)


def test_the_time_budget_stops_both_at_the_same_step(runs):
    assert [(runs / f"budget-rank{r}.txt").read_text() for r in range(WORLD)] == ["1", "1"]


def test_a_divergence_on_one_process_stops_both(runs):
    for rank in range(WORLD):
        message = (runs / f"nan-rank{rank}.txt").read_text()
        assert "diverged: non-finite losses at step 2" in message, (rank, message)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["gan.batch_size=7"], "must be divisible by 2; set gan.batch_size to a multiple of 2"),
        (
            ["gan.batch_size=4", "gan.mbstd_group_size=4"],
            "leaves 2 images per process, not a multiple of gan.mbstd_group_size=4",
        ),
        (
            ["gan.batch_size=6", "gan.mbstd_group_size=1", "gan.pl_weight=1"],
            "each needs an even share; set gan.batch_size to a multiple of 4",
        ),
    ],
)
def test_batches_that_do_not_split_are_refused(tmp_path, sets, message):
    cfg = load_config(None, [*TINY, *sets])
    dist = DistInfo(rank=0, world=2, local_rank=0, device=torch.device("cpu"))
    run = new_run(tmp_path, "bad", "gan")
    with pytest.raises(UserError, match=message):
        train_gan(cfg, run, tiny_dataset(), dist.device, progress=False, dist=dist)
    assert not list(run.checkpoints.iterdir())  # refused before anything ran


@pytest.mark.skipif(
    importlib.util.find_spec("viscoin.data") is None, reason="datasets not installed"
)
def test_train_gan_command_under_torchrun(tmp_path):
    data = ["data.resolution=16", "data.options.n_train=12"]
    sets = [*TINY, *data, f"gan.batch_size={BATCH}", "gan.kimg=0.016"]  # 2 steps
    args = ["train", "gan", "--config", "shapes", *(f"--set={s}" for s in sets)]
    args += ["--device", "cpu", "--quiet", "--runs-dir", str(tmp_path)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [*torchrun, "-m", "viscoin", *args, "--name", "two"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 2 steps") == 1  # rank 0 reports, alone
    records = read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    # the same training in this process, alone
    from viscoin.data import build_dataset

    cfg = load_config("shapes", sets)
    one_run = new_run(tmp_path, "one", "gan")
    dataset = build_dataset(cfg.data, split="train", augment=False)
    train_gan(cfg, one_run, dataset, torch.device("cpu"), progress=False)
    two, one = (
        load_file(r / "checkpoints" / "generator.safetensors")
        for r in (tmp_path / "two", one_run.path)
    )
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=RTOL, atol=ATOL, msg=key)
