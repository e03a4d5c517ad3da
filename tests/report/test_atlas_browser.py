"""The atlas in a real browser (headless Chromium driven by Playwright): it loads nothing but itself,
logs no error, every image decodes, the λ slider swaps the amplification shown, the class filter
hides the cards of other classes and a click on a tile enlarges it.

Skipped when Playwright or Chromium is missing, unless ``VISCOIN_REQUIRE_BROWSER=1`` (CI sets it):
then a missing browser fails the test.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.report.conftest import ATLAS_CLASSES
from tests.report.test_html import images_per_card
from viscoin.report.html import _start_frame, filter_classes

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """A Chromium or Chrome executable on PATH (or Debian's /usr/bin/chromium), else None."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)


def _unavailable(reason: str) -> None:
    if os.environ.get("VISCOIN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and VISCOIN_REQUIRE_BROWSER=1 asks for the browser test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    executable = find_chromium()
    if executable is None:
        _unavailable("no chromium executable found")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@dataclass
class Opened:
    """A page showing the atlas, with what it logged and requested since it was opened."""

    page: object
    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def opened(browser, atlas) -> Iterator[Opened]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    result = Opened(page, atlas.path.as_uri())
    page.on("console", lambda m: result.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: result.errors.append(str(error)))
    page.on("requestfailed", lambda r: result.errors.append(f"failed request {r.url}"))
    page.on("request", lambda r: result.requests.append(r.url))
    page.goto(result.url, wait_until="load")
    yield result
    context.close()


def test_loads_only_itself_without_errors(opened, atlas):
    page = opened.page
    assert opened.errors == []
    assert opened.requests and all(
        url == opened.url or url.startswith("data:") for url in opened.requests
    ), opened.requests
    cards = page.locator("article.concept-card")
    assert cards.count() == 3
    images = page.evaluate(
        "Array.from(document.images).map((i) => i.complete && i.naturalWidth > 0)"
    )
    assert len(images) == 5 + 3 + 3 * images_per_card(atlas.n_images, len(atlas.multipliers))
    assert all(images)
    # escaped class names come back exactly as given, and none became markup
    names = page.eval_on_selector_all("#class-names option", "(o) => o.map((e) => e.value)")
    assert names == ATLAS_CLASSES
    assert page.locator('img[src="x.png"]').count() == 0 and page.title() != "1"
    shot = Image.open(io.BytesIO(page.screenshot()))
    assert shot.size == (1400, 1000) and np.unique(np.asarray(shot.convert("L"))).size > 16


def test_slider_swaps_the_amplification(opened, atlas):
    page = opened.page
    card = page.locator("article.concept-card").first
    view, slider = card.locator("img.lambda-view"), card.locator("input.lambda-slider")
    frames = card.locator(".frame img")
    sources = [frames.nth(i).get_attribute("src") for i in range(frames.count())]
    assert len(sources) == len(atlas.multipliers) and len(set(sources)) == len(sources)
    start = _start_frame(atlas.multipliers)
    assert view.get_attribute("src") == sources[start]
    slider.focus()
    page.keyboard.press("Home")  # as a user moves it: input events from the range control
    assert slider.input_value() == "0" and view.get_attribute("src") == sources[0]
    assert card.locator(".lambda-value").inner_text() == "0"
    assert card.locator(".lambda-caption").inner_text().startswith("λ = 0 (removed)")
    page.keyboard.press("ArrowRight")
    assert view.get_attribute("src") == sources[1]
    page.keyboard.press("End")
    last = len(sources) - 1
    assert view.get_attribute("src") == sources[last]
    assert card.locator(".frame.active").count() == 1
    assert card.locator(".frame").nth(last).get_attribute("aria-pressed") == "true"
    # a frame of the strip is a shortcut to its step
    card.locator(".frame").nth(start).click()
    assert slider.input_value() == str(start) and view.get_attribute("src") == sources[start]
    assert opened.errors == []


def test_filter_hides_cards_of_other_classes(opened, atlas):
    page = opened.page
    shown = atlas.analytics.ordered_concepts(3)
    listed = {k: [name.lower() for name in filter_classes(atlas.analytics, k)] for k in shown}
    query = "QUOTED"  # part of one class name, in another case
    expected = [k for k in shown if any(query.lower() in name for name in listed[k])]
    assert 0 < len(expected) < len(shown)  # the query must both keep and hide cards

    def visible() -> list[int]:
        cards = page.locator("article.concept-card")
        return [shown[i] for i in range(cards.count()) if cards.nth(i).is_visible()]

    assert visible() == shown
    page.fill("#class-filter", query)
    assert visible() == expected
    assert page.locator("#filter-count").inner_text() == f"{len(expected)} of 3 concepts"
    page.fill("#class-filter", f"concept {shown[-1]}")
    assert visible() == [shown[-1]]
    page.fill("#class-filter", "no class is called this")
    assert visible() == [] and page.locator("#no-match").is_visible()
    page.fill("#class-filter", "")
    assert visible() == shown and not page.locator("#no-match").is_visible()
    assert opened.errors == []


def test_click_enlarges_a_tile(opened):
    page = opened.page
    assert not page.locator("#lightbox").is_visible()
    tile = page.locator("article.concept-card").nth(1).locator(".tile img").first
    tile.click()
    box = page.locator("#lightbox")
    assert box.is_visible()
    large = box.locator("img")
    assert large.get_attribute("src") == tile.get_attribute("src")
    assert box.locator("figcaption").text_content() == tile.get_attribute("data-caption")
    assert large.bounding_box()["width"] > 2 * tile.bounding_box()["width"]
    page.keyboard.press("Escape")
    assert not box.is_visible()
    # the slider's view enlarges too, showing the step it is on
    view = page.locator("article.concept-card").first.locator("img.lambda-view")
    view.click()
    assert box.is_visible() and large.get_attribute("src") == view.get_attribute("src")
    box.click()  # a click anywhere closes it
    assert not box.is_visible()
    assert opened.errors == []
