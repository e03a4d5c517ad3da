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

import numpy as np
import scipy.linalg
import torch

from viscoin.errors import UserError
from viscoin.utils.checkpoint import load_state_dict_file

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

    ``weights``: a local copy of ``pt_inception-2015-12-05`` weights (read without unpickling
    anything but tensors); None downloads them (once, into torch's hub cache). Cached per
    (weights, device) so the network loads once per process.
    """
    try:
        import torch_fidelity  # noqa: F401  (checked here, used by _build_inception)
    except ImportError:
        raise UserError(
            "FID needs the 'torch-fidelity' package: pip install 'viscoin[metrics]'."
        ) from None
    net = _build_inception(_inception_state_dict(weights))
    net = net.eval().to(device)

    def extract(images: torch.Tensor) -> torch.Tensor:
        return net(images.to(device))[0]

    return extract


_OFFLINE_HINT = (
    "Offline, download pt_inception-2015-12-05-6726825d.pth elsewhere and pass "
    "--inception-weights PATH, or skip FID with --fid off."
)


def _inception_state_dict(weights: str | None) -> dict[str, torch.Tensor]:
    """Inception-v3 weights read safely: a local file through :func:`load_state_dict_file`, or the
    download into torch's hub cache read with ``weights_only=True`` too."""
    if weights is not None:
        return load_state_dict_file(weights, "Inception weights", _OFFLINE_HINT)
    from torch.hub import load_state_dict_from_url
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    try:
        return load_state_dict_from_url(URL_INCEPTION_V3, progress=False, weights_only=True)
    except Exception as exc:
        raise UserError(
            f"cannot get the FID Inception-v3 weights ({type(exc).__name__}). {_OFFLINE_HINT}"
        ) from None


def _build_inception(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """torch-fidelity's extractor with the given weights. Its constructor reads a path with
    ``torch.load(weights_only=False)``, which runs any pickle; so no path is handed to it: the
    constructor's download helper is replaced, for this call only, by one returning ``state``."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: state):
        try:
            return tf_inception.FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], verbose=False
            )
        except RuntimeError:  # load_state_dict(strict=True): other names or shapes
            raise UserError(
                "the Inception weights do not fit torch-fidelity's Inception-v3 "
                f"(pt_inception-2015-12-05). {_OFFLINE_HINT}"
            ) from None


def classifier_features(classifier: torch.nn.Module) -> FeatureFn:
    """Pooled last-stage features of our classifier f (B, D): a Fréchet distance in f's own
    feature space, for when Inception weights are unavailable (reported as ``fd_classifier``)."""

    def extract(images: torch.Tensor) -> torch.Tensor:
        device = next(classifier.parameters()).device
        x = images.to(device).float() / 127.5 - 1
        _, maps = classifier.forward_features(x)
        return maps[-1].mean(dim=(2, 3))

    return extract
