"""Tiny VisCoIN ensembles and datasets for the interpretation and report tests.

The ensemble uses a real random ResNet-18 classifier and real Ψ, Θ, Ω; the generator is a small
stand-in with StyleGAN2's interface (``mapping.w_avg``, ``synthesis(ws, noise_mode)``), so these
tests do not depend on the StyleGAN2 implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from viscoin.models.classifier import Classifier
from viscoin.models.viscoin import Viscoin, build_core

RESOLUTION = 32
N_CLASSES = 3
N_CONCEPTS = 6
CLASSES = ["circle", "square", "a triangle with a rather long class name"]


class _Mapping(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, num_ws: int) -> None:
        super().__init__()
        self.num_ws = num_ws
        self.register_buffer("w_avg", torch.randn(w_dim) * 0.1)
        self.register_buffer("matrix", torch.randn(z_dim, w_dim) / z_dim**0.5)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return (z @ self.matrix + self.w_avg)[:, None].expand(-1, self.num_ws, -1)


class StandInGenerator(nn.Module):
    """G with StyleGAN2's interface: a fixed random linear map from flattened w⁺ to pixels, tanh."""

    def __init__(
        self, resolution: int = RESOLUTION, num_ws: int = 8, w_dim: int = 8, z_dim: int = 8
    ) -> None:
        super().__init__()
        self.num_ws, self.w_dim, self.z_dim, self.c_dim = num_ws, w_dim, z_dim, 0
        self.img_resolution, self.img_channels = resolution, 3
        self.mapping = _Mapping(z_dim, w_dim, num_ws)
        self.register_buffer(
            "pixels",
            torch.randn(num_ws * w_dim, 3 * resolution * resolution) / (num_ws * w_dim) ** 0.5,
        )

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        assert noise_mode in ("const", "random", "none")
        flat = ws.flatten(1).float() @ self.pixels
        return torch.tanh(flat).view(-1, 3, self.img_resolution, self.img_resolution)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesis(self.mapping(z, c))


class LabelledImages(TensorDataset):
    """A TensorDataset of (image, label) with class names, like the real datasets."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> None:
        super().__init__(images, labels)
        self.classes = classes


def make_model(seed: int = 0, n_concepts: int = N_CONCEPTS) -> Viscoin:
    torch.manual_seed(seed)
    classifier = Classifier("resnet18", N_CLASSES).eval()
    classifier.classes = list(CLASSES)
    generator = StandInGenerator()
    core = build_core(classifier, generator, RESOLUTION, n_concepts=n_concepts, channels=8)
    with torch.no_grad():  # make every concept fire a little, so none is dead by accident
        core.extractor.to_concepts.bias.fill_(0.05)
    return Viscoin(classifier, core, generator).eval().requires_grad_(False)


def make_dataset(n: int = 12, seed: int = 1) -> LabelledImages:
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, RESOLUTION, RESOLUTION, generator=gen) * 2 - 1
    labels = torch.arange(n) % N_CLASSES
    return LabelledImages(images, labels, list(CLASSES))


@contextmanager
def one_thread() -> Iterator[None]:
    """These models are tiny: a second OpenMP thread only adds synchronisation, which on a busy
    machine costs far more than the work itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_model() -> Viscoin:
    return make_model()


@pytest.fixture(scope="session")
def tiny_dataset() -> LabelledImages:
    return make_dataset()


@pytest.fixture
def loader(tiny_dataset):
    return torch.utils.data.DataLoader(tiny_dataset, batch_size=5, shuffle=False)
