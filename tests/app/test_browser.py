"""``viscoin explore`` in a real browser: the command serves a tiny run saved to disk on a free
loopback port, headless Chromium (Playwright) drives the page. It loads nothing from elsewhere and
logs no error; a slider move regenerates the image and updates the predictions, and after several
moves the page shows the last state; a bad upload shows a message, a good one is explored; a
concept's page shows the atlas's cards; Ctrl-C stops the server.

Skipped when Playwright or Chromium is missing, unless ``VISCOIN_REQUIRE_BROWSER=1`` (CI sets it),
as the atlas's browser test (whose ``browser`` fixture this reuses).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

from tests.app.conftest import RUN_TEST_IMAGES, smooth_png
from tests.report.test_atlas_browser import browser  # noqa: F401

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
START_SECONDS = 120


@dataclass
class Served:
    """The command's process, the address it serves and what it printed."""

    proc: subprocess.Popen
    url: str
    lines: list[str]

    def api(self, path: str, body: dict | None = None) -> dict:
        """A JSON request to the server, as the page makes it."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path.lstrip("/"), data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def served(tiny_run) -> Iterator[Served]:
    command = [
        sys.executable, "-m", "viscoin", "explore", str(tiny_run), "--port", "0",
        "--device", "cpu", "--top-k", "3",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    deadline = time.monotonic() + START_SECONDS
    while not any(line.startswith("serving ") for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            reader.join()
            pytest.fail("viscoin explore did not start:\n" + "".join(lines))
        time.sleep(0.05)
    url = next(line for line in lines if line.startswith("serving ")).split()[1]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    yield Served(proc, url, lines)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    reader.join(timeout=30)


@dataclass
class Opened:
    """The explorer in a browser tab, with what every page of its context logged and requested."""

    page: object
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def opened(browser, served) -> Iterator[Opened]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    result = Opened(context.new_page())
    context.on("console", lambda m: result.errors.append(m.text) if m.type == "error" else None)
    context.on("weberror", lambda error: result.errors.append(str(error.error)))
    context.on("requestfailed", lambda r: result.errors.append(f"failed request {r.url}"))
    context.on("request", lambda r: result.requests.append(r.url))
    result.page.goto(served.url, wait_until="load")
    yield result
    context.close()


def _only_local(opened: Opened, served: Served) -> None:
    assert opened.requests and all(
        url.startswith((served.url, "data:")) for url in opened.requests
    ), opened.requests


def _all_images_decoded(page) -> None:
    # a function, not an expression: Playwright polls an expression through eval, which the
    # page's Content-Security-Policy forbids
    page.wait_for_function(
        "() => Array.from(document.images).filter((i) => i.src)"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def _prediction_text(prediction: dict) -> str:
    return f"{prediction['name']} {prediction['prob']:.2f}"


def test_pick_move_and_upload(opened, served, tmp_path):
    from playwright.sync_api import expect

    page = opened.page
    thumbs = page.locator("#grid .thumb")
    expect(thumbs).to_have_count(RUN_TEST_IMAGES)
    _all_images_decoded(page)
    assert opened.errors == []
    # the class filter keeps the images of one class
    label = served.api("/api/images")["items"][3]["label"]
    of_class = served.api(f"/api/images?label={label}")["items"]
    page.select_option("#class-filter", str(label))
    expect(thumbs).to_have_count(len(of_class))
    assert [thumbs.nth(i).get_attribute("data-index") for i in range(len(of_class))] == [
        str(item["index"]) for item in of_class
    ]
    page.select_option("#class-filter", "")
    expect(thumbs).to_have_count(RUN_TEST_IMAGES)

    thumbs.nth(3).click()
    expect(page.locator("#image-name")).to_have_text("test image 3")
    rows = page.locator("#sliders .concept-row")
    expect(rows).to_have_count(3)
    selected = served.api("/api/select", {"index": 3})
    view = page.locator("#generated-view")
    assert view.get_attribute("src") == selected["reconstruction"]
    assert _text(page, "#pred-g") == _prediction_text(selected["prediction"]["g"])
    assert _text(page, "#input-f") == _prediction_text(selected["input_prediction"]["f"])
    before = (view.get_attribute("src"), _text(page, "#pred-f"), _text(page, "#pred-g"))

    # one slider, moved from the keyboard as a user moves it
    first, second = (rows.nth(i).get_attribute("data-concept") for i in range(2))
    rows.nth(0).locator("input").focus()
    page.keyboard.press("End")
    expect(rows.nth(0).locator("output")).to_have_text("4")
    page.wait_for_function(
        "(old) => document.getElementById('generated-view').src !== old", arg=before[0]
    )
    page.wait_for_function(
        "([f, g]) => document.getElementById('pred-f').textContent !== f "
        "|| document.getElementById('pred-g').textContent !== g",
        arg=list(before[1:]),
    )
    # several moves in a row: the page ends on the sliders' last state
    rows.nth(1).locator("input").focus()
    for key in ("Home", "ArrowRight", "ArrowRight"):
        page.keyboard.press(key)
    expected = served.api("/api/regenerate", {"image": "d3", "lambdas": {first: 4, second: 0.5}})
    lambdas = sorted([(int(first), "4"), (int(second), "0.5")])
    caption = "regenerated with " + ", ".join(f"φ{k} × {lam}" for k, lam in lambdas)
    expect(page.locator("#generated-caption")).to_have_text(caption)
    expect(view).to_have_attribute("src", expected["image"])
    assert _text(page, "#pred-f") == _prediction_text(expected["prediction"]["f"])
    assert _text(page, "#pred-g") == _prediction_text(expected["prediction"]["g"])
    assert "regenerated in" in _text(page, "#timing")

    # an answer that comes late, after the answer to a newer state, is dropped
    held: list = []

    def reorder(route) -> None:
        if not held:  # the first move's answer waits for the second's
            held.append((route, route.fetch()))
            return
        route.fulfill(response=route.fetch())
        late, response = held.pop()
        late.fulfill(response=response)
        held.append(None)

    page.route("**/api/regenerate", reorder)
    rows.nth(0).locator("input").focus()
    page.keyboard.press("ArrowLeft")  # λ 3.75: its answer is held back
    page.wait_for_timeout(300)
    page.keyboard.press("ArrowLeft")  # λ 3.5
    expected = served.api("/api/regenerate", {"image": "d3", "lambdas": {first: 3.5, second: 0.5}})
    expect(view).to_have_attribute("src", expected["image"])
    for _ in range(200):
        if held == [None]:
            break
        page.wait_for_timeout(50)
    assert held == [None], "the two moves did not make two requests"
    page.wait_for_timeout(300)  # the late answer has reached the page
    assert view.get_attribute("src") == expected["image"]
    assert "× 3.5" in _text(page, "#generated-caption")
    assert _text(page, "#pred-g") == _prediction_text(expected["prediction"]["g"])
    page.unroute("**/api/regenerate")
    assert opened.errors == []

    # a file that is no image: a message, and the image explored stays
    page.set_input_files(
        "#upload", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}]
    )
    message = page.locator("#upload-message")
    expect(message).to_contain_text("cannot decode notes.png as an image")
    expect(message).to_have_class("error")
    assert _text(page, "#image-name") == "test image 3"
    # Chromium logs the refused request (415) as a console error; nothing else may appear
    assert len(opened.errors) == 1 and "415" in opened.errors[0], opened.errors

    # a real image of another size: resized and center-cropped, and explored
    page.set_input_files(
        "#upload",
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": smooth_png(48, 40)}],
    )
    expect(page.locator("#image-name")).to_have_text("photo.png")
    expect(page.locator("#image-note")).to_contain_text("resized from 48×40")
    expect(message).to_contain_text("photo.png: resized from 48×40")
    expect(message).not_to_have_class("error")
    expect(rows).to_have_count(3)
    recon = view.get_attribute("src")
    rows.nth(2).locator("input").focus()
    page.keyboard.press("Home")
    page.wait_for_function(
        "(old) => document.getElementById('generated-view').src !== old", arg=recon
    )
    _all_images_decoded(page)

    shot_path = tmp_path / "explorer.png"
    page.screenshot(path=str(shot_path))
    shot = Image.open(io.BytesIO(shot_path.read_bytes()))
    assert shot.size == (1280, 900) and np.unique(np.asarray(shot.convert("L"))).size > 16
    assert len(opened.errors) == 1
    _only_local(opened, served)


def test_concept_page(opened, served):
    from playwright.sync_api import expect

    page = opened.page
    page.locator("#grid .thumb").nth(0).click()
    expect(page.locator("#image-name")).to_have_text("test image 0")
    link = page.locator("#sliders .concept-row a").first
    concept = link.inner_text().split()[-1]
    with page.context.expect_page() as opening:
        link.click()
    card_page = opening.value
    card_page.wait_for_load_state("load")
    cards = card_page.locator("article.concept-card")
    expect(cards).to_have_count(2)  # over the split, and on the image explored
    assert card_page.title().startswith(f"Concept {concept}")
    _all_images_decoded(card_page)
    # the atlas's script works here too: the slider swaps the frame shown
    card = cards.first
    frames = card.locator(".frame img")
    card.locator("input.lambda-slider").focus()
    card_page.keyboard.press("End")
    last = frames.nth(frames.count() - 1).get_attribute("src")
    expect(card.locator("img.lambda-view")).to_have_attribute("src", last)
    expect(cards.nth(1).locator(":scope > .tiles .tile")).to_have_count(1)  # the image itself
    assert opened.errors == []
    _only_local(opened, served)


def test_ctrl_c_stops_the_server(served):
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(timeout=30) == 0
    time.sleep(0.2)
    assert served.lines[-1].strip() == "stopped", served.lines
    assert not any("Traceback" in line for line in served.lines), served.lines
