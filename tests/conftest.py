"""Shared fixtures: everything is seeded, tiny and generated here; nothing downloads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Under pytest-xdist (`-n auto`), the cores are shared by the workers: each worker, and every
# `python -m viscoin` it starts, gets its share of threads instead of one per core.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_threads = max(1, min(2, (os.cpu_count() or 1) // _workers))
if _workers > 1:
    os.environ["OMP_NUM_THREADS"] = str(_threads)
torch.set_num_threads(min(_threads, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def run_cli(
    *args: str, cwd: Path | None = None, check: bool = False, subprocess_: bool = False
) -> subprocess.CompletedProcess:
    """Run ``viscoin ARGS`` as a user would, capturing output and exit code.

    The command runs through the console script's own entry point, ``viscoin.cli.main``, in this
    process (a new interpreter would spend most of a short command importing torch); the run locks
    it takes are given back when it returns, as its process's end would. ``subprocess_``: in a new
    ``python -m viscoin`` process instead, for what needs one (signals, a second live process).
    """
    if subprocess_:
        proc = subprocess.run(
            [sys.executable, "-m", "viscoin", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            timeout=900,
        )
    else:
        proc = _run_in_process(list(args), cwd)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"viscoin {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _run_in_process(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess:
    import contextlib
    import io
    import traceback

    from viscoin.cli import main
    from viscoin.utils import lock

    out, err = io.StringIO(), io.StringIO()
    held = set(lock._HELD)
    threads = torch.get_num_threads()
    code: int = 0
    with contextlib.ExitStack() as stack:
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            main(args)
        except SystemExit as exc:  # sys.exit(text) prints the text and exits 1, as Python does
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # what an uncaught exception does to a process: traceback, exit 1
            traceback.print_exc()
            code = 1
        finally:
            for key in set(lock._HELD) - held:
                lock.release_run(key)
            torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["viscoin", *args], code, out.getvalue(), err.getvalue())


def save_tiny_models(root: Path) -> Path:
    """A random resnet18 classifier of 10 classes (it only has to be finite) and a tiny 32 px
    generator, saved in ``root`` as ``f.safetensors`` and ``G.safetensors``."""
    from viscoin.models import stylegan2
    from viscoin.models.classifier import build_classifier, save_classifier

    torch.manual_seed(0)
    save_classifier(build_classifier("resnet18", 10), root / "f.safetensors")
    generator = stylegan2.Generator(
        z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
        mapping_kwargs={"num_layers": 1}, channel_base=256, channel_max=16,
    )  # fmt: skip
    stylegan2.save_generator(generator, root / "G.safetensors")
    return root


@pytest.fixture
def cli():
    return run_cli


# A tiny run trained through the CLI: classifier and VisCoIN on `shapes` at 32 px with a random
# StyleGAN2; shared by the end-to-end command tests.
DATA = [
    "--config", "shapes", "--set", "data.resolution=32", "--set", "data.options.n_train=64",
    "--set", "data.options.n_test=32", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    torch.manual_seed(0)
    from viscoin.models import stylegan2

    generator = stylegan2.Generator(
        z_dim=16,
        c_dim=0,
        w_dim=16,
        img_resolution=32,
        img_channels=3,
        mapping_kwargs={"num_layers": 1},
        channel_base=256,
        channel_max=16,
    )
    stylegan2.save_generator(generator, root / "G.safetensors")
    run_cli(
        "train", "classifier", *DATA, "--set", "classifier.epochs=1",
        "--set", "classifier.arch=resnet18", "--runs-dir", str(root), "--name", "f", "--quiet",
        check=True,
    )  # fmt: skip
    run_cli(
        "train", "viscoin", *DATA, "--classifier", str(root / "f"),
        "--generator", str(root / "G.safetensors"),
        "--set", "viscoin.iterations=3", "--set", "viscoin.n_concepts=8",
        "--set", "viscoin.channels=16", "--set", "viscoin.real_batch=4",
        "--set", "viscoin.fake_batch=4", "--set", "viscoin.eval_every=0",
        "--set", "viscoin.lpips=none", "--runs-dir", str(root), "--name", "v", "--quiet",
        check=True,
    )  # fmt: skip
    run = root / "v"
    assert (run / "checkpoints" / "viscoin.safetensors").is_file()
    return run
