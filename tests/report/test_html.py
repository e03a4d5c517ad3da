"""The HTML concept atlas: self-contained, one card per shown concept with its λ slider, every image
a decodable PNG, everything from the data escaped, numbers formatted for reading. What the page
does in a browser: ``test_atlas_browser.py``."""

import base64
import io
import re

import numpy as np
from PIL import Image

from tests.report.conftest import ATLAS_CLASSES
from viscoin.interpret.analytics import ConceptAnalytics
from viscoin.report.headline import format_number
from viscoin.report.html import ATLAS_MULTIPLIERS, _start_frame, filter_classes, flatten_numbers

IMG_SRC = re.compile(r'<img [^>]*src="([^"]+)"')
SCRIPT = re.compile(r"<script[^>]*>", re.I)


def images_per_card(n_images: int, n_multipliers: int) -> int:
    """Top images, the input, the slider's view, one frame per λ, the heatmaps."""
    return n_images + 1 + 1 + n_multipliers + n_images


def test_report_is_self_contained(atlas):
    page = atlas.path.read_text()
    assert page.count('class="concept-card"') == 3
    shown = atlas.analytics.ordered_concepts(3)
    assert re.findall(r'id="concept-(\d+)"', page) == [str(k) for k in shown]
    # one inline script (slider, filter, lightbox), nothing loaded from anywhere
    assert SCRIPT.findall(page) == ["<script>"]
    assert "<link" not in page and "url(" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page and "//" not in IMG_SRC.pattern
    sources = IMG_SRC.findall(page)
    # 5 analytics figures + 3 curve groups + the cards
    per_card = images_per_card(atlas.n_images, len(atlas.multipliers))
    assert len(sources) == 5 + 3 + 3 * per_card
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.verify()
        assert image.format == "PNG" and image.width > 0
    assert "faithfulness.tau_0.1[1]" in page and "last test log (step 200)" in page
    # reconstructions per class: one compact table, not every per-class number in the flat one
    assert "recon_attributes.all_class_defining" in page and ".per_class." not in page
    assert "every class-defining attribute, per class" in page
    assert "red-bird" in page and "blue-bird" in page
    # the concepts come first; the full metrics are collapsed
    assert page.index('id="concepts"') < min(
        page.index('id="headline"'), page.index('id="metrics"')
    )
    assert '<details class="section" id="metrics">' in page


def test_cards_have_a_slider_over_every_multiplier(atlas):
    page = atlas.path.read_text()
    cards = page.split('<article class="concept-card"')[1:]
    start = _start_frame(atlas.multipliers)
    assert atlas.multipliers[start] == 1.0
    for card in cards:
        slider = re.search(r'<input type="range" class="lambda-slider"[^>]*>', card).group(0)
        assert f'max="{len(atlas.multipliers) - 1}"' in slider and f'value="{start}"' in slider
        frames = re.findall(
            r'<button type="button" class="frame[^"]*"\s+data-lambda="([^"]+)"', card
        )
        assert frames == [f"{m:g}" for m in atlas.multipliers]
        frame_srcs = re.findall(r'<button[^>]*>\s*<img src="([^"]+)"', card)
        view_src = re.search(r'<img class="lambda-view zoom" src="([^"]+)"', card).group(1)
        assert len(frame_srcs) == len(atlas.multipliers) and view_src == frame_srcs[start]
    assert _start_frame([0.0, 2.0, 4.0]) == 0 and _start_frame([0.5, 1.5, 3.0]) in (0, 1)
    assert 1.0 in ATLAS_MULTIPLIERS and 0.0 in ATLAS_MULTIPLIERS


def test_data_is_escaped(atlas):
    page = atlas.path.read_text()
    for name in ATLAS_CLASSES[1:]:
        assert name not in page  # never raw
    assert "&lt;img src=" in page  # as text (the browser test reads it back exactly)
    assert "</script> class" not in page and page.count("</script>") == 1
    assert "<key>" not in page and "&lt;key&gt;" in page
    # the filter's class lists are JSON in single-quoted attributes, with no raw quote or bracket
    for attribute in re.findall(r"data-classes='([^']*)'", page):
        assert "<" not in attribute and ">" not in attribute and "&" not in attribute


def test_filter_classes():
    """A card is listed under its five best supported classes, and under every class for which it
    is one of the three best supporting alive concepts (7 classes, so the two rules differ)."""
    relevance = np.array(
        [[0.9, 0.1, 0.1, 0.1, 0], [0.8, 0.1, 0.1, 0.1, 0], [0.7, 0.1, 0.1, 0.1, 0],
         [0.6, 0.1, 0.1, 0.1, 0], [0.5, 0.1, 0.1, 0.1, 0], [0.4, 0.1, 0.1, 0.1, 0],
         [0.05, 0.3, 0.3, 0.3, 0]], dtype=np.float32,
    )  # fmt: skip
    activations = np.ones_like(relevance)
    activations[:, 4] = 0  # concept 4 is dead
    classes = [f"c{c}" for c in range(7)]
    analytics = ConceptAnalytics(
        activations, relevance, np.arange(7), np.arange(7), np.arange(7), np.arange(7), classes
    )
    # concept 0: its five best classes c0..c4, then c5 (where it is the best concept), not c6
    # (where it is the fourth)
    assert filter_classes(analytics, 0) == ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert filter_classes(analytics, 1) == ["c6", "c0", "c1", "c2", "c3", "c4", "c5"]
    assert filter_classes(analytics, 4) == []


def test_numbers_read_as_numbers(atlas):
    assert [format_number(v) for v in (1.0, 0.12293, 52.5078, 1000, 0, 0.0, 12345.6)] == [
        "1.000", "0.1229", "52.51", "1000", "0", "0", "12346"
    ]  # fmt: skip
    assert format_number(4.5059636708735734e-26) == "4.51 × 10⁻²⁶"
    assert format_number(2.5e7) == "2.5 × 10⁷"
    assert [format_number(v) for v in (None, float("nan"), float("inf"))] == ["–"] * 3
    assert format_number(True) == "True" and format_number("n/a") == "n/a"
    page = atlas.path.read_text()
    assert "1.5 × 10⁻⁷" in page and "e-07" not in page


def test_flatten_numbers():
    nested = {"a": 1, "b": {"c": 2.5, "d": [3, {"e": 4}]}, "s": "x", "t": True, "n": None}
    assert flatten_numbers(nested) == {"a": 1, "b.c": 2.5, "b.d[0]": 3, "b.d[1].e": 4}
