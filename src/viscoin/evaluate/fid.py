"""Fréchet distances between image sets: FID with the standard Inception-v3 features, and the same
statistic in any other feature space (e.g. the classifier's) when Inception weights are not at hand.

Images enter as uint8 (B, 3, H, W), as the standard implementation expects; :func:`viscoin.data.transforms.to_uint8`
converts from our [−1, 1] range the way StyleGAN2-ADA does. The feature extractor is built once
and reused (the Inception weights are loaded once per process, never per call).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from viscoin.errors import UserError

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, 3, H, W) → float (B, D)


class RunningStats:
    """Mean and covariance of feature vectors, accumulated in float64 batch by batch."""

    def __init__(self) -> None:
        self.n = 0
        self.sum: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def update(self, features: torch.Tensor) -> None:
        x = features.detach().double().cpu().numpy().reshape(features.shape[0], -1)
        if self.sum is None:
            self.sum = np.zeros(x.shape[1])
            self.outer = np.zeros((x.shape[1], x.shape[1]))
        self.n += x.shape[0]
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise UserError("a Fréchet distance needs at least 2 images per set")
        mean = self.sum / self.n
        cov = (self.outer - self.n * np.outer(mean, mean)) / (self.n - 1)
        return mean, cov


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), as in the standard FID code (with its ε fallback)."""
    diff = mu1 - mu2
    # Feature covariances are often singular (features that never fire, fewer images than
    # dimensions); sqrtm then warns on every call although its result is the one the standard
    # code uses, and non-finite results fall back to the ε offset below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * 1e-6
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_of(
    real: Iterable[torch.Tensor], fake: Iterable[torch.Tensor], features: FeatureFn
) -> float:
    """Fréchet distance between the feature statistics of two streams of uint8 image batches."""
    stats = []
    for stream in (real, fake):
        running = RunningStats()
        for batch in stream:
            with torch.no_grad():
                running.update(features(batch))
        stats.append(running.mean_cov())
    return frechet_distance(*stats[0], *stats[1])


@functools.lru_cache(maxsize=2)
def inception_features(weights: str | None = None, device: str = "cpu") -> FeatureFn:
    """The standard FID feature extractor (torch-fidelity's Inception-v3, 2048-d pool features).

    ``weights``: a local copy of ``pt_inception-2015-12-05`` weights; None downloads them (once,
    into torch's hub cache). Cached per (weights, device) so the network loads once per process.
    """
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise UserError(
            "FID needs the 'torch-fidelity' package: pip install 'viscoin[metrics]'."
        ) from None
    if weights is not None and not Path(weights).is_file():
        raise UserError(f"Inception weights file not found: {weights}")
    try:
        net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights, verbose=False
        )
    except Exception as exc:
        raise UserError(
            f"cannot load the FID Inception-v3 weights ({type(exc).__name__}). Offline, download "
            "pt_inception-2015-12-05-6726825d.pth elsewhere and pass --inception-weights PATH, "
            "or skip FID with --no-fid."
        ) from None
    net = net.eval().to(device)

    def extract(images: torch.Tensor) -> torch.Tensor:
        return net(images.to(device))[0]

    return extract


def classifier_features(classifier: torch.nn.Module) -> FeatureFn:
    """Pooled last-stage features of our classifier f (B, D): a Fréchet distance in f's own
    feature space, for when Inception weights are unavailable (reported as ``fd_classifier``)."""

    def extract(images: torch.Tensor) -> torch.Tensor:
        device = next(classifier.parameters()).device
        x = images.to(device).float() / 127.5 - 1
        _, maps = classifier.forward_features(x)
        return maps[-1].mean(dim=(2, 3))

    return extract
