"""torch.compile's caches in a directory of our choosing: a second start loads what the first
compiled (CPU, a small function)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from viscoin.utils.device import COMPILE_CACHE_ENV, _default_inductor_cache, compile_cache

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, os, sys, torch
import torch._dynamo.utils as counters
from viscoin.utils.device import compile_cache
directory = sys.argv[1] if sys.argv[1] != "-" else None
with compile_cache(directory):
    inside = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    x = torch.randn(8, 8, requires_grad=True)
    torch.compile(lambda x: (x.sin() * 2 + 1).relu().sum())(x).backward()
print(json.dumps({"inside": inside, "after": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
                  "inductor": dict(counters.counters["inductor"])}))
"""


def _start(directory: str, env_dir: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != COMPILE_CACHE_ENV}
    env["PYTHONPATH"] = str(ROOT / "src")
    if env_dir is not None:
        env[COMPILE_CACHE_ENV] = env_dir
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, directory],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_second_start_loads_the_compiled_graphs_from_the_directory(tmp_path):
    cache = tmp_path / "run" / "compile-cache"
    first = _start(str(cache))
    assert first["inside"] == str(cache.resolve())
    assert first["after"] in (None, _default_inductor_cache())  # as it was
    assert first["inductor"].get("fxgraph_cache_miss", 0) > 0
    assert any(cache.rglob("*")), "nothing was written to the cache directory"
    second = _start(str(cache))
    assert second["inductor"].get("fxgraph_cache_hit", 0) > 0
    assert second["inductor"].get("fxgraph_cache_miss", 0) == 0


def test_the_users_cache_directory_wins_and_none_changes_nothing(tmp_path, monkeypatch):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(theirs))
    with compile_cache(ours):
        assert os.environ[COMPILE_CACHE_ENV] == str(theirs)
    assert not ours.exists()
    monkeypatch.delenv(COMPILE_CACHE_ENV)
    with compile_cache(None):
        assert COMPILE_CACHE_ENV not in os.environ
    with pytest.raises(RuntimeError), compile_cache(ours):  # restored after an error too
        assert os.environ[COMPILE_CACHE_ENV] == str(ours.resolve())
        raise RuntimeError
    assert COMPILE_CACHE_ENV not in os.environ
    # the default Inductor writes into the variable is not a user's choice
    monkeypatch.setenv(COMPILE_CACHE_ENV, _default_inductor_cache())
    with compile_cache(ours):
        assert os.environ[COMPILE_CACHE_ENV] == str(ours.resolve())
    assert os.environ[COMPILE_CACHE_ENV] == _default_inductor_cache()
