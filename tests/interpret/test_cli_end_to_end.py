"""The interpretation commands on a really trained tiny run: classifier and VisCoIN trained through
the CLI on the built-in ``shapes`` dataset with a tiny random StyleGAN2 generator.

Skipped until the StyleGAN2 implementation and the dataset registry are installed with the package.
"""

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _error_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    return lines[0]


def test_concepts_and_cache(trained_run):
    proc = run_cli("concepts", str(trained_run), "--quiet", check=True)
    assert "32 test images, 8 concepts" in proc.stdout
    summary = json.loads((trained_run / "concepts.json").read_text())
    assert summary["n_images"] == 32 and len(summary["mean_activation"]) == 8
    assert (trained_run / "figures" / "concept-activation.png").is_file()
    again = run_cli("concepts", str(trained_run), "--quiet", check=True)
    assert "from cache" in again.stdout
    forced = run_cli("concepts", str(trained_run), "--quiet", "--force", check=True)
    assert "from cache" not in forced.stdout


def test_amplify_and_heatmaps(trained_run):
    run_cli("amplify", str(trained_run), "--top-k", "2", "--images", "0,5", check=True)
    (strip,) = (trained_run / "amplify").glob("amplify-test-5-c*-each-isolated.png")
    assert Image.open(strip).format == "PNG"
    run_cli(
        "amplify", str(trained_run), "--threshold", "0.1", "--images", "1", "--mode", "together",
        check=True,
    )  # fmt: skip
    # relevance is at most 1: a threshold from 1 up selects nothing, and says so
    proc = run_cli("amplify", str(trained_run), "--threshold", "1.5", "--images", "1", check=True)
    assert "warning: relevance r_k(x) is at most 1" in proc.stderr
    assert "concepts none selected" in proc.stdout
    run_cli("heatmaps", str(trained_run), "--images", "0,1", "--concepts", "0,3", check=True)
    assert (trained_run / "heatmaps" / "heatmaps-test-0-c0_3.png").is_file()
    with np.load(trained_run / "heatmaps" / "heatmaps-test-i0_1.npz") as saved:
        assert saved["heatmaps"].shape == (2, 2, 32, 32)
    assert "concept index 8 is out of range" in _error_line(
        run_cli("amplify", str(trained_run), "--concepts", "1,8")
    )
    assert "image index 32 is out of range" in _error_line(
        run_cli("heatmaps", str(trained_run), "--images", "32")
    )


def test_logs_and_report(trained_run):
    proc = run_cli("logs", str(trained_run), check=True)
    assert "curves-losses.png" in proc.stdout
    run_cli(
        "report", str(trained_run), "--max-concepts", "4", "--images", "3", "--quiet", check=True
    )
    page = (trained_run / "report.html").read_text()
    run_cli("concepts", str(trained_run), "--quiet", check=True)  # the analytics the page used
    analytics = json.loads((trained_run / "concepts.json").read_text())
    alive = analytics["n_concepts"] - len(analytics["dead"])
    assert page.count('class="concept-card"') == min(4, alive)
    for src in re.findall(r'<img [^>]*src="([^"]+)"', page):
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()


def test_exported_bundle(trained_run, tmp_path):
    bundle = tmp_path / "model.safetensors"
    run_cli("export", str(trained_run), str(bundle), check=True)
    assert "--dataset" in _error_line(run_cli("concepts", str(bundle)))
    out = tmp_path / "outputs"
    run_cli(
        "concepts", str(bundle), "--dataset", "shapes", "--max-images", "16", "--out", str(out),
        "--quiet", check=True,
    )  # fmt: skip
    assert json.loads((out / "concepts.json").read_text())["n_images"] == 16
