"""The explorer's tests: the tiny in-process ensemble and dataset of the interpretation tests, and a
tiny run saved to disk (a random ResNet-18 for the shapes classes, a small StyleGAN2, Ψ, Θ, Ω) for
the command and the browser."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.interpret.conftest import _one_thread, make_dataset, make_model, one_thread  # noqa: F401

RUN_RESOLUTION = 32
RUN_CONCEPTS = 6
RUN_TEST_IMAGES = 20


def smooth_png(width: int, height: int, seed: int = 0) -> bytes:
    """A smooth random RGB image of ``width`` × ``height`` as PNG bytes (small, and with structure at
    every scale a crop could cut)."""
    low = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(seed))
    image = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear")
    pixels = (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_pixels(data: bytes) -> np.ndarray:
    """PNG bytes (or a ``data:image/png;base64,`` URI) → uint8 (H, W, 3)."""
    import base64

    if isinstance(data, str):
        prefix = "data:image/png;base64,"
        assert data.startswith(prefix), data[:40]
        data = base64.b64decode(data[len(prefix) :])
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def write_run(folder: Path) -> Path:
    """A VisCoIN run directory (``config.yaml`` naming the shapes dataset at 32 px with
    :data:`RUN_TEST_IMAGES` test images, ``checkpoints/viscoin.safetensors``) of random weights."""
    from viscoin.config import load_config
    from viscoin.data.shapes import CLASS_NAMES
    from viscoin.models.classifier import Classifier, load_classifier, save_classifier
    from viscoin.models.stylegan2 import Generator, load_generator, save_generator
    from viscoin.models.viscoin import build_core, save_viscoin

    torch.manual_seed(0)
    f_path = save_classifier(
        Classifier("resnet18", len(CLASS_NAMES)), folder / "f.safetensors", list(CLASS_NAMES)
    )
    generator = Generator(
        16, 0, 16, RUN_RESOLUTION, 3, mapping_kwargs={"num_layers": 1}, channel_base=256,
        channel_max=16,
    )  # fmt: skip
    g_path = save_generator(generator, folder / "G.safetensors")
    core = build_core(
        load_classifier(f_path), load_generator(g_path), RUN_RESOLUTION, RUN_CONCEPTS, channels=8
    )
    with torch.no_grad():  # every concept fires a little
        core.extractor.to_concepts.bias.fill_(0.05)
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_viscoin(run / "checkpoints" / "viscoin.safetensors", core, f_path, g_path)
    config = load_config(
        "shapes",
        [
            f"data.resolution={RUN_RESOLUTION}",
            f"data.options.n_test={RUN_TEST_IMAGES}",
            "data.options.n_train=8",
            "data.num_workers=0",
            "run.device=cpu",
        ],
    )
    config.save(run / "config.yaml")
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    with one_thread():
        return write_run(tmp_path_factory.mktemp("explore-run"))
