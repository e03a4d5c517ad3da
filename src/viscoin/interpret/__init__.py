"""Interpretation of a trained VisCoIN ensemble (METHOD.md §3).

``relevance`` (r_k(x), r_{k,c}, concept selection), ``analytics`` (one pass over a split, cached),
``amplify`` (concept strips), ``heatmaps`` (per-concept Grad-CAM), ``target`` (run directories and
bundles for the commands). Every function takes a :class:`~viscoin.models.viscoin.Viscoin` and
images or a loader, so it runs without a run directory.
"""
