"""A griffe extension for the API pages: Sphinx roles in docstrings shown as inline code.

The docstrings name other objects the Sphinx way (``:class:`~viscoin.errors.UserError```,
``:meth:`Viscoin.relevance```); Markdown has no roles, so each becomes the code span of the name
(the last part only after ``~``, as Sphinx shows it).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`]+)`")


def _as_code(match: re.Match) -> str:
    name = match[2].split(".")[-1] if match[1] else match[2]
    return f"`{name}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite ``:role:`target``` as ```target``` in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_as_code, obj.docstring.value)
