"""`viscoin demo --quick` end to end, as a newcomer runs it."""

import json

from tests.conftest import run_cli


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--quick", "--out", str(out), "--device", "cpu", "-q", check=True)
    assert "[5/5] writing the HTML concept atlas" in proc.stdout
    # every stage closes with its duration
    assert [f"stage {i} took" in proc.stdout for i in range(1, 6)] == [True] * 5
    assert f"report: {out / 'viscoin' / 'report.html'}" in proc.stdout
    report = (out / "viscoin" / "report.html").read_text()
    assert report.count('class="concept-card"') >= 1
    metrics = json.loads((out / "viscoin" / "metrics.json").read_text())
    for key in (
        "acc_f",
        "acc_g",
        "fidelity",
        "mse",
        "faithfulness",
        "consistency",
        "attribute_alignment",
        "recon_attributes",
    ):
        assert key in metrics
    shown = metrics["recon_attributes"]
    assert shown["images"] == 64 and 0.0 <= shown["all_class_defining"] <= 1.0
    assert shown["chance"]["body_colour"] == 0.25 and len(shown["per_class"]) >= 5
    assert (out / "classifier" / "checkpoints" / "best.safetensors").is_file()
    # the independent classifier f' read the reconstructions: its numbers beside f's, each a rate
    independent = metrics["independent"]
    assert metrics["independent_classifier"].endswith(
        "classifier-independent/checkpoints/best.safetensors"
    )
    assert all(0.0 <= independent[k] <= 1.0 for k in ("agrees_with_f", "recon_agrees_with_f"))
    assert "paired_fi@0.1" in metrics["faithfulness"]
    assert (out / "viscoin" / "checkpoints" / "viscoin.safetensors").is_file()
    # a second run into the same folder is refused instead of mixing results
    again = run_cli("demo", "--quick", "--out", str(out), "--device", "cpu", "-q")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_demo_config_layers():
    """The demo preset, then QUICK for the smoke run, then the caller's overrides; LPIPS off, its
    place taken by the perceptual distance on f's stage maps."""
    from viscoin.config import load_config
    from viscoin.demo import demo_config

    full = demo_config(False, "cpu", 3)
    assert (full.viscoin.iterations, full.viscoin.lpips, full.viscoin.feature_weight) == (
        2000,
        "none",
        1.0,
    )
    assert full.run.seed == 3 and full.run.device == "cpu"
    preset = load_config("demo", ["run.device=cpu", "run.seed=3"])
    assert full == preset and full != load_config("shapes", ["run.device=cpu", "run.seed=3"])
    quick = demo_config(True, "cpu", 0)
    assert quick.viscoin.iterations == 20 and quick.viscoin.feature_weight == 1.0
    assert demo_config(True, "cpu", 0, ["viscoin.feature_weight=0"]).viscoin.feature_weight == 0
