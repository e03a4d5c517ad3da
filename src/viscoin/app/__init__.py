"""``viscoin explore``: a local web app over a trained ensemble.

Pick an image of a dataset split (a paged grid, filtered by class) or upload one; see f's and g's
predictions, the reconstruction and the most relevant concepts; move one λ slider per concept to
regenerate the image with φ_k × λ (all sliders in one intervention) and see both predictions
follow; open a concept's page (its top images, heatmaps and λ strip, the atlas's card).

:mod:`viscoin.app.state` holds the model and the images being looked at and does the work
(no web framework); :mod:`viscoin.app.server` is the Starlette app around it and the uvicorn
server. Both need the ``app`` extra (``pip install 'viscoin[app]'``), which
:func:`require_app_extra` checks.
"""

from __future__ import annotations

from viscoin.errors import UserError

EXTRA_MESSAGE = "viscoin explore needs the app extra: pip install 'viscoin[app]'"


def require_app_extra() -> None:
    """Raise a :class:`UserError` naming the extra when Starlette or uvicorn is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError(EXTRA_MESSAGE) from None
