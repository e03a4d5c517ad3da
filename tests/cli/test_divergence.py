"""A run whose loss or weights stop being finite stops with exit 2 and a message naming the step;
the checkpoint on disk is the last finite one, never overwritten with NaN weights."""

import json

import pytest

from tests.conftest import DATA, run_cli, save_tiny_models
from viscoin.utils.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A random classifier (no training needed: it only has to be finite) and a tiny generator."""
    return save_tiny_models(tmp_path_factory.mktemp("models"))


def all_finite(path):
    tensors, _, extra = load_checkpoint(path)
    return all(bool(t.isfinite().all()) for t in tensors.values()), extra


def one_error(proc):
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "done" not in proc.stdout
    return errors[0]


def train_viscoin(models, tmp_path, *flags):
    return run_cli(
        "train", "viscoin", *DATA, "--classifier", str(models / "f.safetensors"),
        "--generator", str(models / "G.safetensors"), "--set", "viscoin.iterations=6",
        "--set", "viscoin.n_concepts=8", "--set", "viscoin.channels=16",
        "--set", "viscoin.real_batch=4", "--set", "viscoin.fake_batch=4",
        "--set", "viscoin.eval_every=0", "--set", "viscoin.lpips=none",
        "--set", "viscoin.lr=1e6", "--set", "viscoin.log_every=1",
        "--runs-dir", str(tmp_path), "--name", "v", "--quiet", *flags,
    )  # fmt: skip


def test_viscoin_divergence_keeps_the_last_finite_checkpoint(models, tmp_path):
    error = one_error(train_viscoin(models, tmp_path, "--set", "viscoin.checkpoint_every=1"))
    assert "VisCoIN training diverged at step 2 (Ψ, Θ, Ω weights are not finite)" in error
    assert "last finite checkpoint (step 1" in error and "lower viscoin.lr" in error
    finite, extra = all_finite(tmp_path / "v" / "checkpoints" / "viscoin.safetensors")
    assert finite and extra["step"] == 1


def test_viscoin_non_finite_loss_is_caught_at_the_log_step(models, tmp_path):
    error = one_error(train_viscoin(models, tmp_path, "--set", "viscoin.checkpoint_every=0"))
    assert "diverged at step 3 (loss is nan)" in error
    assert "no checkpoint had been written yet" in error
    assert not (tmp_path / "v" / "checkpoints" / "viscoin.safetensors").exists()
    records = [json.loads(x) for x in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]  # no record of null losses
    assert all(v is not None for r in records for v in r.values())


def test_classifier_divergence_keeps_the_last_finite_epoch(tmp_path):
    proc = run_cli(
        "train", "classifier", *DATA, "--set", "classifier.epochs=2",
        "--set", "classifier.arch=resnet18", "--set", "classifier.lr=1e30",
        "--runs-dir", str(tmp_path), "--name", "f", "--quiet",
    )  # fmt: skip
    error = one_error(proc)
    assert "classifier training diverged at step 2 (loss is nan)" in error
    assert "last finite checkpoint (epoch 1" in error and "lower classifier.lr" in error
    for name in ("last.safetensors", "best.safetensors"):
        finite, extra = all_finite(tmp_path / "f" / "checkpoints" / name)
        assert finite and extra["epoch"] == 1
