"""Training, testing, evaluating, resuming and exporting through the console entry point."""

import json
import shutil

import torch

from tests.conftest import DATA, run_cli


def test_test_classifier(trained_run):
    run = trained_run.parent / "f"
    proc = run_cli("test", "classifier", str(run), check=True)
    assert "test accuracy" in proc.stdout
    metrics = json.loads((run / "test-metrics.json").read_text())
    assert metrics["count"] == 32 and len(metrics["per_class_accuracy"]) == 10
    assert sum(map(sum, metrics["confusion"])) == 32
    assert (run / "figures" / "confusion.png").is_file()


def test_evaluate_writes_every_metric(trained_run, tmp_path):
    out = tmp_path / "eval"
    proc = run_cli(
        "evaluate", str(trained_run), "--fid", "off", "--faithfulness-images", "16",
        "--consistency-concepts", "2", "--consistency-images", "8", "--out", str(out),
        "--independent-classifier", str(trained_run.parent / "f"), check=True,
    )  # fmt: skip
    assert "acc_f" in proc.stdout and "FF@0.1" in proc.stdout and "(null" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "acc_f",
        "acc_g",
        "fidelity",
        "mse",
        "l1",
        "fd_classifier",
        "sparsity",
        "faithfulness",
    ):
        assert key in metrics, key
    assert set(metrics["attribute_alignment"]) >= {"body_colour", "wing_pattern", "head_crest"}
    assert "reconstructions show the class-defining attributes" in proc.stdout
    assert set(metrics["recon_attributes"]["chance"]) == set(metrics["attribute_alignment"])
    assert "per_class" not in (out / "metrics.md").read_text()
    assert "| acc_f |" in (out / "metrics.md").read_text()
    # f itself given as the independent classifier: it reads every reconstruction as f does
    independent = metrics["independent"]
    assert independent["agrees_with_f"] == 1.0 and independent["fooling_gap"] == 0.0
    assert "paired_fi@0.1" in metrics["faithfulness"]
    assert metrics["consistency"]["null_mean"] <= 1.0
    assert "direction_mean" in metrics["consistency"]
    assert "paired_matched_f@0.1" in metrics["faithfulness"]


def test_evaluate_refuses_bad_options(trained_run, tmp_path):
    proc = run_cli("evaluate", str(trained_run), "--intervention", "global", "--fid", "off")
    assert proc.returncode == 2 and "error: --intervention" in proc.stderr
    proc = run_cli(
        "evaluate", str(trained_run), "--fid", "off", "--independent-classifier",
        str(tmp_path / "missing.safetensors"),
    )  # fmt: skip
    assert proc.returncode == 2 and "independent classifier not found" in proc.stderr
    proc = run_cli("evaluate", str(trained_run), "--fid", "off", "--consistency-multiplier", "nan")
    assert proc.returncode == 2 and "error: --consistency-multiplier" in proc.stderr


def test_resume_through_the_cli_continues_the_run(trained_run, tmp_path):
    run = tmp_path / "v"
    shutil.copytree(trained_run, run)
    proc = run_cli(
        "train", "viscoin", *DATA, "--classifier", str(trained_run.parent / "f"),
        "--generator", str(trained_run.parent / "G.safetensors"), "--set", "viscoin.iterations=5",
        "--set", "viscoin.n_concepts=8", "--set", "viscoin.channels=16", "--set", "viscoin.real_batch=4",
        "--set", "viscoin.fake_batch=4", "--set", "viscoin.eval_every=0", "--set", "viscoin.lpips=none",
        "--runs-dir", str(tmp_path), "--name", "v", "--resume", "--quiet", check=True,
    )  # fmt: skip
    assert "step 5" in proc.stdout
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 5
    # starting again without --resume is refused rather than overwriting
    again = run_cli(
        "train", "viscoin", *DATA, "--classifier", str(trained_run.parent / "f"),
        "--generator", str(trained_run.parent / "G.safetensors"), "--runs-dir", str(tmp_path), "--name", "v",
    )  # fmt: skip
    assert again.returncode == 2 and "Pass --resume" in again.stderr


def test_export_and_load(trained_run, tmp_path):
    import viscoin

    out = tmp_path / "bundle.safetensors"
    proc = run_cli("export", str(trained_run), str(out), check=True)
    assert "embedded" in proc.stdout
    model = viscoin.load(str(out))
    result = model.explain(torch.zeros(2, 3, 32, 32))
    assert result["relevance"].shape == (2, 8) and result["reconstructions"].shape == (2, 3, 32, 32)


def test_train_viscoin_refuses_a_missing_classifier(tmp_path):
    proc = run_cli(
        "train",
        "viscoin",
        "--classifier",
        str(tmp_path / "nope"),
        "--generator",
        str(tmp_path / "G"),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: classifier not found: {tmp_path / 'nope'}"
