"""The one error type users see.

Anything the user can fix (a bad path, a wrong checkpoint, a missing dataset file) is raised as a
:class:`UserError`; the CLI prints its message on one line and exits with code 2.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


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
