"""``viscoin explain RUN a.png b.jpg`` on a tiny trained run: the user's own image files, no dataset."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _write_images(folder):
    rng = np.random.default_rng(0)
    png, jpg = folder / "bird.png", folder / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(png)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(jpg, quality=90)
    return png, jpg


def _error_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_explain_image_files(trained_run, tmp_path):
    import viscoin

    png, jpg = _write_images(tmp_path)
    proc = run_cli(
        "explain", str(trained_run), str(png), str(jpg), "--top-k", "2", "--multipliers", "0,1,3",
        "--device", "cpu", check=True,
    )  # fmt: skip
    out = trained_run / "explain"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[-1] == f"wrote {out / 'explain.html'}"
    model = viscoin.load(trained_run, device="cpu")
    expected = model.explain([png, jpg], top_k=2)
    for line, path, b in zip(lines[:2], (png, jpg), range(2), strict=True):
        top = zip(
            expected.top_concepts[b].tolist(), expected.top_relevance[b].tolist(), strict=True
        )
        shown = ", ".join(f"{k} (r {r:.2f})" for k, r in top)
        assert line.startswith(f"{path}: f {expected.f_names[b]} ")
        assert f", g {expected.g_names[b]} " in line and f"; concepts {shown} -> " in line
        for name in (f"{path.stem}-reconstruction.png", f"{path.stem}-amplify.png"):
            assert str(out / name) in line
            assert Image.open(out / name).format == "PNG"
    recon = np.asarray(Image.open(out / "bird-reconstruction.png"))
    assert recon.shape == (32, 32, 3)
    page = (out / "explain.html").read_text()
    assert page.count("<article") == 2 and "bird.png" in page and "photo.jpg" in page
    assert "λ ∈ {0, 1, 3}" in page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 6
    for src in sources:  # self-contained: every image is inline
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()


def test_explain_bundle_writes_beside_it_and_escapes_names(trained_run, tmp_path):
    bundle = tmp_path / "model.safetensors"
    run_cli("export", str(trained_run), str(bundle), check=True)
    png, _ = _write_images(tmp_path)
    odd = png.rename(tmp_path / "<b>&.png")
    run_cli("explain", str(bundle), str(odd), "--top-k", "1", check=True)
    page = (tmp_path / "model-explain" / "explain.html").read_text()
    assert "&lt;b&gt;&amp;.png" in page and "<b>&.png" not in page


def test_explain_bad_files_give_one_error_line(trained_run, tmp_path):
    png, _ = _write_images(tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(png.read_bytes()[:40])  # a truncated file
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    missing = tmp_path / "missing.png"
    for bad, message in (
        (broken, f"cannot decode {broken} as an image"),
        (text, f"cannot decode {text} as an image"),
        (missing, f"image file not found: {missing}"),
    ):
        line = _error_line(run_cli("explain", str(trained_run), str(png), str(bad)))
        assert line.startswith("error: ") and message in line
    assert not (trained_run / "explain" / "broken-reconstruction.png").exists()
    assert "--top-k 9: the model has only 8 concepts" in _error_line(
        run_cli("explain", str(trained_run), str(png), "--top-k", "9")
    )
    assert "model file not found" in _error_line(
        run_cli("explain", str(tmp_path / "nope.safetensors"), str(png))
    )
