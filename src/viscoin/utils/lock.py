"""The run lock: one training process per run directory.

A training command (new run or ``--resume``) holds an exclusive lock on ``RUN/.lock`` for as long
as it lives: ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows. Both are kernel locks, so
the lock goes away with its process however it ends (a kill, a crash, a reboot): a lock file left
by a dead process is stale by construction and the next start takes it over. The file holds the
holder's pid, host and start time, only to name it in the message a second start gets.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from viscoin.errors import UserError

LOCK_NAME = ".lock"

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

# locks this process holds, by resolved run directory: a process may reopen its own run (tests
# train and resume in one process) without locking itself out
_HELD: dict[str, int] = {}


class RunLocked(UserError):
    """Another live process holds the run directory's lock."""


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError (POSIX), PermissionError (Windows)
        return False
    return True


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {int(info['pid'])} on host {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def lock_run(folder: str | Path) -> Path:
    """Take ``folder``'s lock for the rest of this process (or until :func:`release_run`).

    Raises :class:`RunLocked` naming the holder if another live process has it. Returns the lock
    file's path.
    """
    folder = Path(folder)
    key = str(folder.resolve())
    path = folder / LOCK_NAME
    if key in _HELD:
        return path
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UserError(f"cannot create the run lock {path}: {exc.strerror or exc}") from None
    if not _try_lock(fd):
        os.close(fd)
        raise RunLocked(
            f"run directory {folder} is in use: {_holder(path)} holds its lock ({path}). Wait "
            "for that training to finish or stop it; two processes in one run would overwrite "
            "each other's checkpoints."
        )
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    with contextlib.suppress(OSError):  # the lock holds without the note
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
    _HELD[key] = fd
    return path


def release_run(folder: str | Path) -> None:
    """Give up this process's lock on ``folder`` (a no-op if it holds none)."""
    fd = _HELD.pop(str(Path(folder).resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases flock / msvcrt locks
