"""The HTML concept atlas: self-contained, one card per shown concept, every image decodes and
loads in a real browser (headless Chromium, when installed)."""

import base64
import io
import re
import shutil
import subprocess

import pytest
from PIL import Image

from tests.interpret.conftest import one_thread
from tests.report.test_plots import VISCOIN_RECORDS
from viscoin.interpret.analytics import compute_concept_analytics
from viscoin.report.html import build_report, flatten_numbers

IMG_SRC = re.compile(r'<img [^>]*src="([^"]+)"')


@pytest.fixture(scope="module")
def report(tiny_model, tiny_dataset, tmp_path_factory):
    import torch

    loader = torch.utils.data.DataLoader(tiny_dataset, batch_size=6)
    with one_thread():  # module-scoped: set up before the function-scoped thread fixture
        return _build(tiny_model, tiny_dataset, loader, tmp_path_factory)


def _build(tiny_model, tiny_dataset, loader, tmp_path_factory):
    analytics = compute_concept_analytics(tiny_model, loader)
    path = build_report(
        tiny_model,
        tiny_dataset,
        analytics,
        tmp_path_factory.mktemp("report") / "report.html",
        info=[("run", "runs/tiny"), ("dataset", "tiny · test")],
        metrics={
            "acc_g": 0.5,
            "faithfulness": {"tau_0.1": [0.2, 0.03]},
            "name": "text is skipped",
            "recon_attributes": {
                "all_class_defining": 0.375,
                "per_class": {
                    "red-bird": {"body_colour": 1.0, "all_class_defining": 0.75},
                    "blue-bird": {"body_colour": 0.5, "all_class_defining": 0.0},
                },
            },
        },
        records=VISCOIN_RECORDS,
        max_concepts=3,
        n_images=4,
    )
    return path, analytics


def test_report_is_self_contained(report):
    path, analytics = report
    page = path.read_text()
    assert page.count('class="concept-card"') == 3
    shown = analytics.ordered_concepts(3)
    assert re.findall(r'id="concept-(\d+)"', page) == [str(k) for k in shown]
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page
    sources = IMG_SRC.findall(page)
    # 5 analytics figures + 3 curve groups + per card 4 top images, 1 + 4 strip images, 4 heatmaps
    assert len(sources) == 5 + 3 + 3 * (4 + 5 + 4)
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


def test_flatten_numbers():
    nested = {"a": 1, "b": {"c": 2.5, "d": [3, {"e": 4}]}, "s": "x", "t": True, "n": None}
    assert flatten_numbers(nested) == {"a": 1, "b.c": 2.5, "b.d[0]": 3, "b.d[1].e": 4}


CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if shutil.os.path.exists("/usr/bin/chromium") else None
)
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const out = document.createElement("div");
  out.id = "check";
  out.dataset.images = images.length;
  out.dataset.loaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  out.dataset.cards = document.querySelectorAll("article.concept-card").length;
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args, user_data_dir):
    return subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={user_data_dir}", *args,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_chromium(report, tmp_path):
    path, _ = report
    # the page itself has no script: a copy gets one that counts the loaded images
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    proc = _chromium(
        "--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), user_data_dir=tmp_path / "u"
    )
    match = re.search(
        r'id="check" data-images="(\d+)" data-loaded="(\d+)" data-cards="(\d+)"', proc.stdout
    )
    assert match, proc.stderr[-2000:]
    images, loaded, cards = map(int, match.groups())
    assert cards == 3 and images == 5 + 3 + 3 * 13 and loaded == images
    shot = tmp_path / "shot.png"
    _chromium(
        "--window-size=1200,2400",
        f"--screenshot={shot}",
        path.as_uri(),
        user_data_dir=tmp_path / "u",
    )
    assert Image.open(shot).size == (1200, 2400)
