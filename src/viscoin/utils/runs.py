"""Run directories: ``runs/<name>/`` with ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``,
``figures/``. Every command writes inside a run directory, never into the current directory.

A training command opens its run with :func:`new_run`, which checks the name (one folder name,
never a path), takes the run lock (:mod:`viscoin.utils.lock`) and removes the temporary files a
killed write left. ``metrics.jsonl`` is read strictly (:func:`read_metrics`): a torn last line
(a crash mid-write) is dropped with a warning, a damaged line before it is an error naming it.
"""

from __future__ import annotations

import json
import sys
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


def check_run_name(name: str) -> str:
    """A run name is one folder name inside ``runs_dir``: no path separator, not ``.``/``..``."""
    bad = (
        not name
        or name in (".", "..")
        or any(sep in name for sep in ("/", "\\", "\0"))
        or name != name.strip()
    )
    if bad:
        raise UserError(
            f"--name {name!r} is not a run name: give one folder name without '/', '\\' or "
            "'..' (the run goes to runs_dir/NAME; use --runs-dir to put it elsewhere)."
        )
    return name


def new_run(runs_dir: str | Path, name: str | None, prefix: str, resume: bool = False) -> RunDir:
    """Create (or reopen, with ``resume``) ``runs_dir/name`` and take its lock.

    Without a name, ``<prefix>-<YYYYmmdd-HHMMSS>`` is used. A non-empty existing run is only
    reopened with ``resume``; otherwise the user is told to resume or pick another name. The lock
    (:func:`viscoin.utils.lock.lock_run`) is held until the process ends; once it is held, the
    temporary files of writes a kill interrupted are removed.
    """
    from viscoin.utils.io import remove_stale_temporaries
    from viscoin.utils.lock import LOCK_NAME, lock_run

    name = check_run_name(name or f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}")
    run = RunDir(Path(runs_dir) / name)
    if not resume and run.path.exists() and any(p.name != LOCK_NAME for p in run.path.iterdir()):
        raise UserError(
            f"run directory {run.path} already exists. Pass --resume to continue it, "
            "or choose another --name."
        )
    if resume and not run.path.exists():
        raise UserError(f"cannot resume: run directory {run.path} does not exist.")
    run.path.mkdir(parents=True, exist_ok=True)
    lock_run(run.path)
    remove_stale_temporaries(run.path, run.checkpoints, run.figures)
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
                fh.flush()
        except OSError as exc:
            from viscoin.utils.io import write_failure

            raise write_failure(self.path, exc) from None
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
    """All records of a ``metrics.jsonl`` file.

    A torn last line (a crash or a full disk mid-write) is dropped with a warning on stderr; a line
    before it that is not a JSON record with an integer ``step`` is a :class:`UserError` naming
    the line: records after it cannot be trusted to be in order.
    """
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _record(line)
        if record is not None:
            records.append(record)
        elif number == len(lines):
            print(
                f"warning: {path} line {number} is an incomplete record (a write was cut "
                "short); it is ignored",
                file=sys.stderr,
            )
        else:
            raise UserError(
                f"{path} line {number} is not a metrics record ({line[:60]!r}); the file is "
                "damaged. Delete that line (or the lines from it on) and run again."
            )
    return records


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or type(record.get("step")) is not int:
        return None
    return record


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
