"""Shared fixtures: everything is seeded, tiny and generated here; nothing downloads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def run_cli(
    *args: str, cwd: Path | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """Run ``python -m viscoin ARGS`` as a user would, capturing output."""
    proc = subprocess.run(
        [sys.executable, "-m", "viscoin", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"viscoin {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli
