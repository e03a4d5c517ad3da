"""`viscoin demo --quick` end to end, as a newcomer runs it."""

import json

from tests.conftest import run_cli


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--quick", "--out", str(out), "--device", "cpu", "-q", check=True)
    assert "[5/5] writing the HTML concept atlas" in proc.stdout
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
    assert shown["images"] == 128 and 0.0 <= shown["all_class_defining"] <= 1.0
    assert shown["chance"]["body_colour"] == 0.25 and len(shown["per_class"]) >= 5
    assert (out / "classifier" / "checkpoints" / "best.safetensors").is_file()
    assert (out / "viscoin" / "checkpoints" / "viscoin.safetensors").is_file()
    # a second run into the same folder is refused instead of mixing results
    again = run_cli("demo", "--quick", "--out", str(out), "--device", "cpu", "-q")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_demo_long_schedule_and_conflict(tmp_path):
    from viscoin.demo import demo_config

    cfg = demo_config(False, "cpu", 0, long=True)
    assert (cfg.viscoin.iterations, cfg.viscoin.gamma_start, cfg.viscoin.gamma) == (
        6000,
        3000,
        0.01,
    )
    assert demo_config(False, "cpu", 0).viscoin.iterations == 2000
    proc = run_cli("demo", "--quick", "--long", "--out", str(tmp_path / "d"), "--device", "cpu")
    assert proc.returncode == 2 and "--quick and --long" in proc.stderr
    assert not (tmp_path / "d").exists()
