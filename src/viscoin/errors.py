"""The one error type users see.

Anything the user can fix (a bad path, a wrong checkpoint, a missing dataset file) is raised as a
:class:`UserError`; the CLI prints its message on one line and exits with code 2.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class UserNotice(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it as one
    ``warning:`` line)."""


class TrainingDiverged(UserError):
    """Training produced a non-finite loss or weights; nothing from that point was written.

    ``step`` is the first step (1-based, as logged) where ``quantity`` (e.g. ``"loss is nan"``)
    was seen; ``kept`` names the last finite checkpoint left on disk (None: none was written yet).
    """

    def __init__(self, what: str, step: int, quantity: str, kept: str | None, fix: str) -> None:
        self.step, self.quantity = step, quantity
        where = (
            f"the last finite checkpoint ({kept}) is kept"
            if kept
            else "no checkpoint had been written yet"
        )
        super().__init__(f"{what} diverged at step {step} ({quantity}); {where}; {fix}")


_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def user_message(exc: UserError) -> str:
    """The message to print for ``exc``: its own text, also when a DataLoader worker raised it.

    PyTorch re-raises a worker's exception in the main process as the same type with a message of
    ``Caught UserError in DataLoader worker process N.`` plus the worker's whole traceback; the
    original message is what follows the traceback's last ``module.Class: `` line.
    """
    text = str(exc)
    if not (text.startswith("Caught ") and _WORKER_TRACEBACK in text):
        return text
    lines = text.splitlines()
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(prefix):
            return "\n".join([lines[i][len(prefix) :], *lines[i + 1 :]]).strip()
    return lines[-1].strip()
