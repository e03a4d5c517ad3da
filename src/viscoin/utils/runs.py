"""Run directories: ``runs/<name>/`` with ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``,
``figures/``. Every command writes inside a run directory, never into the current directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from viscoin.errors import UserError


class RunDir:
    """Paths of one run directory (created on demand)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def create(self) -> RunDir:
        for sub in (self.path, self.checkpoints, self.figures):
            sub.mkdir(parents=True, exist_ok=True)
        return self

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def new_run(runs_dir: str | Path, name: str | None, prefix: str, resume: bool = False) -> RunDir:
    """Create (or reopen, with ``resume``) ``runs_dir/name``.

    Without a name, ``<prefix>-<YYYYmmdd-HHMMSS>`` is used. A non-empty existing run is only
    reopened with ``resume``; otherwise the user is told to resume or pick another name.
    """
    name = name or f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunDir(Path(runs_dir) / name)
    if run.path.exists() and any(run.path.iterdir()) and not resume:
        raise UserError(
            f"run directory {run.path} already exists. Pass --resume to continue it, "
            "or choose another --name."
        )
    if resume and not run.path.exists():
        raise UserError(f"cannot resume: run directory {run.path} does not exist.")
    return run.create()


def open_run(path: str | Path) -> RunDir:
    """An existing run directory (for evaluate / concepts / report ...)."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise UserError(
            f"run directory not found: {run.path}. Give the directory a training command made."
        )
    return run


class MetricsLogger:
    """Appends one JSON object per logged step to ``metrics.jsonl``.

    Each record carries ``step``, ``split`` (``train`` / ``test`` / ...), ``time`` and the values.
    Lines are flushed on every write so a crash loses at most the record being written.
    """

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tb = None

    def log(self, step: int, values: Mapping[str, Any], split: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, "time": round(time.time(), 3)}
        record.update({k: _jsonable(v) for k, v in values.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{split}/{key}", value, step)

    def enable_tensorboard(self, log_dir: str | Path) -> bool:
        """Mirror scalars to TensorBoard when it is installed; returns whether it is on."""
        if not self.enabled:
            return False
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed
            return False
        self._tb = SummaryWriter(str(log_dir))
        return True

    def truncate_after(self, step: int, drop_splits: tuple[str, ...] = ()) -> None:
        """Drop records past ``step`` and every record of ``drop_splits`` (used on resume so
        curves, and results written once at the end of training, are not duplicated)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [
            r
            for r in read_metrics(self.path)
            if r["step"] <= step and r.get("split") not in drop_splits
        ]
        from viscoin.utils.io import atomic_write_text

        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file; a torn last line (crash mid-write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
