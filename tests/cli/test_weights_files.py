"""Every weights file a user hands the CLI is read without running code: a hostile pickle, a
truncated copy or garbage gives one `error:` line naming the file, exit 2, and runs nothing."""

import shutil

import pytest

from tests.conftest import DATA, run_cli
from tests.hostile import hostile_weights, truncated_weights


def assert_refused(proc, path, marker):
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and str(path) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists(), "the pickle payload ran"


@pytest.mark.parametrize("bad", ["hostile", "truncated"])
@pytest.mark.parametrize(
    "flags",
    [["--fid", "on", "--inception-weights"], ["--fid", "off", "--lpips"]],
    ids=["inception", "lpips"],
)
def test_evaluate_refuses_bad_weights(trained_run, tmp_path, flags, bad):
    marker = tmp_path / "ran"
    path = (
        hostile_weights(tmp_path / "evil.pth", marker)
        if bad == "hostile"
        else truncated_weights(tmp_path / "cut.pth")
    )
    proc = run_cli("evaluate", str(trained_run), *flags, str(path), "--out", str(tmp_path / "e"))
    assert_refused(proc, path, marker)
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_training_refuses_hostile_classifier_weights(tmp_path):
    marker = tmp_path / "ran"
    path = hostile_weights(tmp_path / "evil.pth", marker)
    proc = run_cli(
        "train", "classifier", *DATA, "--set", f"classifier.weights={path}",
        "--runs-dir", str(tmp_path), "--name", "f", "--quiet",
    )  # fmt: skip
    assert_refused(proc, path, marker)


def test_resume_refuses_a_hostile_state_file(trained_run, tmp_path):
    marker = tmp_path / "ran"
    run = tmp_path / "v"
    shutil.copytree(trained_run, run)
    state = hostile_weights(run / "checkpoints" / "viscoin.state.pt", marker)
    proc = run_cli(
        "train", "viscoin", *DATA, "--classifier", str(trained_run.parent / "f"),
        "--generator", str(trained_run.parent / "G.safetensors"),
        "--set", "viscoin.iterations=5", "--set", "viscoin.n_concepts=8",
        "--set", "viscoin.channels=16", "--set", "viscoin.real_batch=4",
        "--set", "viscoin.fake_batch=4", "--set", "viscoin.eval_every=0",
        "--set", "viscoin.lpips=none",
        "--runs-dir", str(tmp_path), "--name", "v", "--resume", "--quiet",
    )  # fmt: skip
    assert_refused(proc, state, marker)
