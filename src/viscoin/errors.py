"""The one error type users see.

Anything the user can fix (a bad path, a wrong checkpoint, a missing dataset file) is raised as a
:class:`UserError`; the CLI prints its message on one line and exits with code 2.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""
