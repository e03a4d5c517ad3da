"""A screenshot of ``viscoin explore`` on a run, for the documentation: the command serves the run
on a free loopback port, headless Chromium (Playwright) picks a test image, moves the slider of one
of its concepts and saves the page as a PNG.

    python benchmarks/explore_screenshot.py runs/demo/viscoin docs/explorer.png
    python benchmarks/explore_screenshot.py RUN out.png --image 7 --slider 1 --lambda 3 --device cpu

Needs the app extra and Playwright (``pip install -e '.[dev]'``) and a Chromium or Chrome
executable (``--chromium``, else the first on PATH, else Debian's /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium(given: str | None) -> str:
    found = given or next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    if found is None:
        sys.exit("no Chromium or Chrome executable found: pass --chromium PATH")
    return found


def start(run: str, device: str, timeout: float) -> tuple[subprocess.Popen, str]:
    """``viscoin explore RUN --port 0`` in a subprocess → (the process, the URL it serves)."""
    command = [sys.executable, "-m", "viscoin", "explore", run, "--port", "0", "--device", device]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    threading.Thread(
        target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True
    ).start()
    deadline = time.monotonic() + timeout
    while not any(line.startswith("serving ") for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit("viscoin explore did not start:\n" + "".join(lines))
        time.sleep(0.05)
    return proc, next(line for line in lines if line.startswith("serving ")).split()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a VisCoIN run directory (with its dataset)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--image", type=int, default=0, help="test image to explore")
    parser.add_argument(
        "--slider", type=int, default=0, help="which shown concept to move (0: most relevant)"
    )
    parser.add_argument("--lambda", dest="lam", type=float, default=0.0, help="λ to set it to")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=860)
    parser.add_argument("--chromium", default=None, help="the browser executable")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    executable = chromium(args.chromium)
    proc, url = start(args.run, args.device, args.start_timeout)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(url, wait_until="load")
            thumb = page.locator(f'#grid .thumb[data-index="{args.image}"]')
            page.locator("#grid .thumb").first.wait_for()
            while thumb.count() == 0:  # page through the split to the image
                if page.locator("#next").is_disabled():
                    sys.exit(f"the split has no image {args.image}")
                first = page.locator("#grid .thumb").first.get_attribute("data-index")
                page.click("#next")
                page.wait_for_function(
                    "(old) => document.querySelector('#grid .thumb').dataset.index !== old",
                    arg=first,
                )
            thumb.click()
            expect(page.locator("#image-name")).to_contain_text(f"image {args.image}")
            row = page.locator("#sliders .concept-row").nth(args.slider)
            slider = row.locator("input")
            step = float(slider.get_attribute("step"))
            slider.focus()
            page.keyboard.press("Home")
            for _ in range(round(args.lam / step)):
                page.keyboard.press("ArrowRight")
            if args.lam != 1.0:
                expect(page.locator("#generated-caption")).to_contain_text("regenerated with")
            page.wait_for_function(
                "() => document.getElementById('timing').textContent !== ''"
                " && Array.from(document.images).filter((i) => i.src)"
                ".every((i) => i.complete && i.naturalWidth > 0)"
            )
            page.wait_for_timeout(300)  # the debounce: no answer still on its way
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            concept = row.get_attribute("data-concept")
            browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    print(f"wrote {args.out}: {url} with image {args.image}, concept {concept} × {args.lam:g}")


if __name__ == "__main__":
    main()
