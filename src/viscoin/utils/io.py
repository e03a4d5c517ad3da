"""Atomic file writes: a reader sees either the old file or the new one, never half of one.

Every file viscoin writes goes through :func:`atomic_path`: a temporary file beside the target
(``.<name>.<random>.tmp``), fsynced, then renamed onto it. A write that fails (disk full, a
read-only folder) leaves the previous file as it was and becomes one :class:`UserError`; files get
the mode an ordinary ``open()`` would give them (0666 less the umask), not ``mkstemp``'s 0600.
Temporary files a killed process left behind are removed by :func:`remove_stale_temporaries`
(called on a run directory once its lock is held).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from viscoin.errors import UserError

# .<target name>.<mkstemp's random part>.tmp
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def current_umask() -> int:
    """The process umask, read without changing it where the system tells (Linux), else set and
    restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_failure(path: Path, exc: OSError) -> UserError:
    """One clear error for a file that could not be written; the old file, if any, is intact."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device (or the disk quota is reached)"
        fix = "free some space and run the command again (a training run continues with --resume)"
    else:
        reason = exc.strerror or str(exc)
        fix = "check that the folder exists and is writable"
    return UserError(
        f"cannot write {path}: {reason}; {fix}. The previous {path.name}, if any, is left as it was."
    )


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    If the body raises (or the process dies), ``path`` is left untouched and the temporary file
    is removed (by :func:`remove_stale_temporaries` after a kill). An ``OSError`` while writing
    becomes a :class:`UserError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_failure(path, exc) from None
    tmp_path = Path(tmp)
    try:
        try:
            os.chmod(tmp_path, 0o666 & ~current_umask())
            yield tmp_path
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise write_failure(path, exc) from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (not atomic on its own: the body of :func:`atomic_path`)."""
    with open(path, "wb") as fh:
        fh.write(data)


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: write_bytes(tmp, data))


def remove_stale_temporaries(*folders: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes in ``folders`` (not recursive).

    Only call this while no other process writes there (a run directory whose lock is held).
    Returns the removed paths.
    """
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if _TEMPORARY.match(entry.name) and entry.is_file():
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def save_npz(path: str | Path, arrays: dict) -> None:
    """Write numpy arrays to a compressed ``.npz`` file atomically."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a bare name
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)
