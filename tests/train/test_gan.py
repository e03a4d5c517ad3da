"""StyleGAN2 training on CPU: a tiny GAN trains, saves, resumes exactly, and its generator samples."""

import importlib.util
import math

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from tests.conftest import run_cli
from viscoin.config import load_config
from viscoin.errors import UserError
from viscoin.models.stylegan2 import load_discriminator, load_generator, sample
from viscoin.train.gan import InfiniteBatches, lazy_adam, train_gan
from viscoin.utils.checkpoint import load_state
from viscoin.utils.runs import new_run, read_metrics

TINY = [
    "gan.resolution=16",
    "gan.z_dim=16",
    "gan.w_dim=16",
    "gan.mapping_layers=2",
    "gan.channel_base=128",
    "gan.channel_max=16",
    "gan.batch_size=4",
    "gan.mbstd_group_size=2",
    "gan.r1_interval=2",
    "gan.pl_weight=1.0",
    "gan.pl_interval=2",
    "gan.augment=ada",
    "gan.ada_kimg=0.1",  # p moves by 4 · 3 / 100 = 0.12 per adjustment
    "gan.ada_interval=3",  # adjustments after steps 3, 6: the resume at step 2 holds half an interval
    "gan.ema_kimg=0.01",
    "gan.snapshot_every=2",
    "gan.log_every=1",
    "data.num_workers=0",
]


def tiny_dataset(n=10, classes=("circle", "square")):
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(n, 3, 16, 16, generator=generator) * 2 - 1
    labels = torch.arange(n) % len(classes)
    dataset = TensorDataset(images, labels)
    dataset.classes = list(classes)
    return dataset


def train(tmp_path, name, steps, resume=False, extra=()):
    cfg = load_config(None, [*TINY, f"gan.kimg={steps * 4 / 1000}", *extra])
    run = new_run(tmp_path, name, prefix="gan", resume=resume)
    summary = train_gan(cfg, run, tiny_dataset(), torch.device("cpu"), resume=resume)
    return run, summary


def test_resume_continues_bit_exactly(tmp_path):
    straight, summary = train(tmp_path, "straight", 5)
    assert summary["steps"] == 5
    # Interrupted after step 4: ADA has moved p once (after step 3) and holds step 4's signs.
    train(tmp_path, "resumed", 4)
    resumed, _ = train(tmp_path, "resumed", 5, resume=True)

    for name in ("generator.safetensors", "discriminator.safetensors"):
        a, b = load_file(straight / "checkpoints" / name), load_file(resumed / "checkpoints" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    sa = load_state(straight / "checkpoints" / "gan-training.state.pt")
    sb = load_state(resumed / "checkpoints" / "gan-training.state.pt")
    assert sa["step"] == sb["step"] == 5
    for key, tensor in sa["G"].items():
        assert torch.equal(tensor, sb["G"][key]), key
    assert torch.equal(sa["pl_mean"], sb["pl_mean"])
    assert torch.equal(sa["ada"]["p"], sb["ada"]["p"]) and float(sa["ada"]["p"]) > 0
    # signs of steps 4 and 5: 4 logits at step 4 (D main), 8 at step 5 (D main and R1)
    assert torch.equal(sa["ada"]["signs"], sb["ada"]["signs"]) and sa["ada"]["signs"][1] == 12
    assert sa["opt_D"]["state"][0]["step"] == sb["opt_D"]["state"][0]["step"]

    # metrics: one record per step, none duplicated by the resume
    records = read_metrics(resumed / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    # the resumed step logs what the uninterrupted run logged, ADA's p and r_t included
    for a, b in zip(records, read_metrics(straight / "metrics.jsonl"), strict=True):
        for key in ("loss_G", "loss_D", "augment_p", "ada_rt"):
            assert a.get(key) == b.get(key), (a["step"], key)
    record = read_metrics(straight / "metrics.jsonl")[-1]
    for key in ("loss_G", "loss_D", "loss_D_real", "loss_D_fake", "kimg", "augment_p"):
        assert isinstance(record[key], float), key
    assert {r["step"] for r in read_metrics(straight / "metrics.jsonl") if "r1_penalty" in r} == {
        1,
        3,
        5,
    }
    assert sorted(p.name for p in (straight / "figures").iterdir()) == [
        "samples-000002.png",
        "samples-000004.png",
        "samples-000005.png",
    ]


def test_kill_between_network_files_and_state_resumes_exactly(tmp_path, monkeypatch):
    """Killed after step 4's generator/discriminator files but before its state file: resume
    continues from step 2's state, rewrites the files that ran ahead and ends as the
    uninterrupted run."""
    import viscoin.train.gan as gan_training
    from tests.train.test_viscoin_training import _die_at_state_write
    from viscoin.utils.checkpoint import checkpoint_step

    straight, _ = train(tmp_path, "straight", 5)
    with monkeypatch.context() as patch:
        _die_at_state_write(patch, gan_training, call=2)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path, "killed", 5)
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert checkpoint_step(checkpoints / "generator.safetensors") == 4
    assert load_state(checkpoints / "gan-training.state.pt")["step"] == 2
    with monkeypatch.context() as patch:  # stop right after the resume: the files are step 2's
        patch.setattr(gan_training, "InfiniteBatches", _no_batches)
        with pytest.raises(_Stopped):
            train(tmp_path, "killed", 5, resume=True)
    assert checkpoint_step(checkpoints / "discriminator.safetensors") == 2
    resumed, _ = train(tmp_path, "killed", 5, resume=True)
    for name in ("generator.safetensors", "discriminator.safetensors"):
        a, b = load_file(straight / "checkpoints" / name), load_file(resumed / "checkpoints" / name)
        assert all(torch.equal(a[key], b[key]) for key in a), name
    steps = [(r["step"], r["loss_G"]) for r in read_metrics(resumed / "metrics.jsonl")]
    assert steps == [(r["step"], r["loss_G"]) for r in read_metrics(straight / "metrics.jsonl")]


class _Stopped(Exception):
    pass


def _no_batches(*args, **kwargs):
    raise _Stopped


def test_trained_generator_loads_and_samples(tmp_path):
    run, _ = train(
        tmp_path, "cond", 1, extra=["gan.c_dim=2", "gan.pl_weight=0", "gan.augment=none"]
    )
    G = load_generator(run / "checkpoints" / "generator.safetensors")
    assert G.c_dim == 2 and G.img_resolution == 16 and not G.training
    images = sample(G, [0, 1], class_idx=1, truncation=0.5)
    assert images.shape == (2, 16, 16, 3) and images.dtype == torch.uint8
    D = load_discriminator(run / "checkpoints" / "discriminator.safetensors")
    assert D(torch.zeros(2, 3, 16, 16), torch.eye(2)).shape == (2, 1)


def test_checks_resolution_classes_and_resume_state(tmp_path):
    cfg = load_config(None, [*TINY, "gan.resolution=32"])
    with pytest.raises(UserError, match="data.resolution=32"):
        train_gan(cfg, new_run(tmp_path, "a", "gan"), tiny_dataset(), torch.device("cpu"))
    cfg = load_config(None, [*TINY, "gan.c_dim=3"])
    with pytest.raises(UserError, match="gan.c_dim=2"):
        train_gan(cfg, new_run(tmp_path, "b", "gan"), tiny_dataset(), torch.device("cpu"))
    cfg = load_config(None, TINY)
    (tmp_path / "c").mkdir()
    with pytest.raises(UserError, match="resume state not found"):
        train_gan(
            cfg,
            new_run(tmp_path, "c", "gan", resume=True),
            tiny_dataset(),
            torch.device("cpu"),
            resume=True,
        )


def test_infinite_batches_restart_anywhere():
    full = iter(InfiniteBatches(size=5, batch_size=3, seed=7))
    first = [next(full) for _ in range(6)]
    later = iter(InfiniteBatches(size=5, batch_size=3, seed=7, start_batch=4))
    assert [next(later), next(later)] == first[4:]
    flat = [i for batch in first for i in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))


def test_lazy_regularisation_rescales_adam():
    param = [torch.nn.Parameter(torch.zeros(1))]
    opt = lazy_adam(param, 0.0025, (0.0, 0.99), reg_interval=16)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert group["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert lazy_adam(param, 0.002, (0.0, 0.99), None).param_groups[0]["lr"] == 0.002


@pytest.mark.skipif(
    importlib.util.find_spec("viscoin.data") is None, reason="datasets not installed"
)
def test_train_gan_command_on_the_builtin_dataset(tmp_path):
    overrides = TINY + ["gan.kimg=0.008", "data.resolution=16", "data.options.n_train=12"]
    sets = [f"--set={item}" for item in overrides]
    proc = run_cli(
        "train", "gan", "--config", "shapes", *sets, "--runs-dir", str(tmp_path), "--name", "g",
        "--device", "cpu", "--quiet", check=True,
    )  # fmt: skip
    assert "trained 2 steps" in proc.stdout
    assert "train gan:" not in proc.stderr  # --quiet: no progress bar
    assert (
        load_generator(tmp_path / "g" / "checkpoints" / "generator.safetensors").img_resolution
        == 16
    )


def test_ada_moves_p_by_the_sign_rule_and_logs_it(tmp_path):
    # Target 0.01: r_t above it raises p, below it lowers p (clamped at 0).
    run, _ = train(tmp_path, "ada", 9, extra=["gan.ada_target=0.01", "gan.r1_interval=1"])
    records = read_metrics(run / "metrics.jsonl")
    p = [r["augment_p"] for r in records]
    adjusted = [r for r in records if "ada_rt" in r]
    assert [r["step"] for r in adjusted] == [3, 6, 9]
    expected, value = [], 0.0
    for record in records:
        if "ada_rt" in record:
            value = min(max(value + math.copysign(0.12, record["ada_rt"] - 0.01), 0.0), 1.0)
        expected.append(value)
    assert p == pytest.approx(expected)
    assert max(p) > 0  # p did move
    state = load_state(run / "checkpoints" / "gan-training.state.pt")
    assert float(state["ada"]["p"]) == pytest.approx(p[-1])


def test_fixed_augmentation_keeps_p(tmp_path):
    run, _ = train(tmp_path, "fixed", 2, extra=["gan.augment=fixed:0.3"])
    records = read_metrics(run / "metrics.jsonl")
    assert [r["augment_p"] for r in records] == pytest.approx([0.3, 0.3])
    assert not any("ada_rt" in r for r in records)
    assert "ada" not in load_state(run / "checkpoints" / "gan-training.state.pt")
