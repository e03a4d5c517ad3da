"""The report tests reuse the tiny ensembles and datasets of the interpretation tests; ``atlas`` is
one atlas of them, built once, that the HTML and the browser tests both read."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.interpret.conftest import (  # noqa: F401
    _one_thread,
    loader,
    make_dataset,
    make_model,
    one_thread,
    tiny_dataset,
    tiny_model,
)
from tests.report.test_plots import VISCOIN_RECORDS
from viscoin.interpret.analytics import ConceptAnalytics, compute_concept_analytics
from viscoin.report.html import build_report

# Class names a page must escape: markup that would load a file if it were parsed, quotes of both
# kinds, an ampersand and the end of a script block.
ATLAS_CLASSES = [
    "circle",
    '<img src="x.png" onerror="document.title=1">',
    "a \"quoted\" & 'apostrophe' </script> class",
]
ATLAS_MULTIPLIERS = (0.0, 1.0, 2.0, 3.0, 4.0)
ATLAS_METRICS = {
    "acc_f": 0.75,
    "acc_g": 0.5,
    "fidelity": 0.625,
    "nulls": {"accuracy": 0.34, "fidelity": 0.3},
    "faithfulness": {"tau_0.1": [0.2, 0.03], "mean_ff_f@0.1": 0.41, "mean_null_f@0.1": 0.12},
    "consistency": {"consistency_concepts": 2, "consistency_mean": 0.9, "null_mean": 0.55},
    "name": "text is skipped",
    "<key>": 1.5e-7,
    "recon_attributes": {
        "all_class_defining": 0.375,
        "per_class": {
            "red-bird": {"body_colour": 1.0, "all_class_defining": 0.75},
            "blue-bird": {"body_colour": 0.5, "all_class_defining": 0.0},
        },
    },
}


@dataclass
class Atlas:
    """A written atlas and what it was made from."""

    path: Path
    analytics: ConceptAnalytics
    n_images: int
    multipliers: tuple[float, ...]


@pytest.fixture(scope="session")
def atlas(tmp_path_factory) -> Atlas:
    """The atlas of the tiny ensemble and dataset (``tiny_model``, ``tiny_dataset``) with
    :data:`ATLAS_CLASSES` as class names."""
    with one_thread():  # session-scoped: set up before the function-scoped thread fixture
        model, dataset = make_model(), make_dataset()
        batches = torch.utils.data.DataLoader(dataset, batch_size=6)
        analytics = compute_concept_analytics(model, batches, classes=ATLAS_CLASSES)
        path = build_report(
            model,
            dataset,
            analytics,
            tmp_path_factory.mktemp("report") / "report.html",
            info=[("run", "runs/tiny"), ("dataset", "tiny · test")],
            metrics=ATLAS_METRICS,
            records=VISCOIN_RECORDS,
            max_concepts=3,
            n_images=4,
            multipliers=ATLAS_MULTIPLIERS,
        )
    return Atlas(path, analytics, 4, ATLAS_MULTIPLIERS)
