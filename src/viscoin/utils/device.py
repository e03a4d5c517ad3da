"""Device selection and seeding."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from viscoin.errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` are checked."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {spec} was asked for but no CUDA GPU is available. Use --device cpu."
            )
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
        return device
    raise UserError(f"unknown device '{spec}'. Use auto, cpu, cuda or cuda:N.")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


@contextlib.contextmanager
def compile_cache(directory: str | Path | None) -> Iterator[None]:
    """Within the block, ``torch.compile`` keeps its on-disk caches (Inductor's compiled graphs,
    AOTAutograd's, Triton's kernels) in ``directory``, so that a second start with the same
    shapes (a resumed run) loads what the first one compiled instead of compiling it again.

    ``None`` changes nothing, and neither does a ``TORCHINDUCTOR_CACHE_DIR`` the user has set.
    The graph caches are switched on for the block (torch 2.4 has them off by default).
    """
    before = os.environ.get(COMPILE_CACHE_ENV)
    # Inductor writes its default directory into the variable itself once it has looked it up:
    # only another value is the user's
    if directory is None or before not in (None, _default_inductor_cache()):
        yield
        return
    import torch._inductor.config as inductor_config

    Path(directory).mkdir(parents=True, exist_ok=True)
    os.environ[COMPILE_CACHE_ENV] = str(Path(directory).resolve())
    previous = inductor_config.fx_graph_cache
    inductor_config.fx_graph_cache = True
    try:
        yield
    finally:
        inductor_config.fx_graph_cache = previous
        if before is None:
            os.environ.pop(COMPILE_CACHE_ENV, None)
        else:
            os.environ[COMPILE_CACHE_ENV] = before


def _default_inductor_cache() -> str:
    """Inductor's cache directory when nothing is set: ``<tmp>/torchinductor_<user>``."""
    import getpass
    import re
    import tempfile

    try:
        user = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):
        user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    user = re.sub(r'[\\/:*?"<>|]', "_", user)
    return os.path.abspath(os.path.join(tempfile.gettempdir(), f"torchinductor_{user}"))


@contextlib.contextmanager
def out_of_memory_as_user_error(advice: str) -> Iterator[None]:
    """Within the block, CUDA running out of memory becomes a :class:`UserError`: one line with
    torch's own first line and ``advice`` (what to lower), instead of a traceback. Files written
    before stay as they are (checkpoints are written atomically)."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        first = (str(exc).strip().splitlines() or ["CUDA out of memory"])[0]
        if len(first) > 160:
            first = first[:157] + "..."
        raise UserError(f"GPU out of memory ({first}): {advice}") from None
