"""--resume through the CLI: the run's own config, refused changes, no config.yaml lost."""

from __future__ import annotations

import json
import shutil

import yaml

from tests.conftest import run_cli


def _resume(trained_run, run, *flags):
    return run_cli(
        "train", "viscoin", "--classifier", str(trained_run.parent / "f"),
        "--generator", str(trained_run.parent / "G.safetensors"),
        "--runs-dir", str(run.parent), "--name", run.name, "--resume", "--quiet", *flags,
    )  # fmt: skip


def test_model_or_data_changes_are_refused_listing_each(trained_run, tmp_path):
    run = tmp_path / "v"
    shutil.copytree(trained_run, run)
    before = (run / "config.yaml").read_bytes()
    proc = _resume(trained_run, run, "--set", "viscoin.n_concepts=4", "--set", "data.resolution=64")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: cannot resume")
    assert "viscoin.n_concepts: run has 8, asked 4" in proc.stderr
    assert "data.resolution: run has 32, asked 64" in proc.stderr
    assert (run / "config.yaml").read_bytes() == before


def test_resume_runs_on_the_saved_config_with_safe_changes(trained_run, tmp_path):
    run = tmp_path / "v"
    shutil.copytree(trained_run, run)
    # no --config nor data flags: the saved 32 px, 64-image shapes config is the one that runs
    proc = _resume(trained_run, run, "--iterations", "4")
    assert proc.returncode == 0, proc.stderr
    assert "resuming with changed settings: viscoin.iterations 3 -> 4" in proc.stderr
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["viscoin"]["iterations"] == 4 and saved["data"]["resolution"] == 32
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 4


def test_a_failed_resume_leaves_config_yaml_alone(trained_run, tmp_path):
    run = tmp_path / "v"
    shutil.copytree(trained_run, run)
    before = (run / "config.yaml").read_bytes()
    state = run / "checkpoints" / "viscoin.state.pt"
    state.write_bytes(state.read_bytes()[:100])
    proc = _resume(trained_run, run, "--iterations", "6")
    assert proc.returncode == 2 and "cannot read resume state" in proc.stderr, proc.stderr
    assert (run / "config.yaml").read_bytes() == before


def test_garbage_in_metrics_refuses_the_resume_and_keeps_config_yaml(trained_run, tmp_path):
    run = tmp_path / "v"
    shutil.copytree(trained_run, run)
    before = (run / "config.yaml").read_bytes()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    proc = _resume(trained_run, run, "--iterations", "6")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "metrics.jsonl line 2 is not a metrics record" in proc.stderr
    assert (run / "config.yaml").read_bytes() == before
