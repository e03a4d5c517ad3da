"""The documentation site builds with ``mkdocs build --strict``.

Strict mode turns every warning into a failure: a broken link or anchor, a page missing from the
navigation, an API page naming an object that no longer exists, a generated reference section
(CLI, config) whose generator fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in (
        "viscoin demo",
        "viscoin train viscoin",
        "viscoin gan convert",
        "viscoin report",
        "viscoin explore",
    ):
        assert command in cli
    assert "viscoin.feature_weight" in (site / "reference" / "config" / "index.html").read_text()
    assert (
        "viscoin.models.viscoin.Viscoin.explain"
        in (site / "reference" / "api" / "models" / "index.html").read_text()
    )
