"""The quality monitor of ``viscoin train gan``: every ``gan.metric_every`` steps, the Fréchet
distance and KID between ``gan.metric_samples`` images of G_ema (fixed latents, constant noise)
and as many real training images (a fixed seeded subset), in Inception-v3 features (the standard
FID, ``gan.inception_weights``) or in the features of a viscoin classifier (``gan.metric_classifier``).

The extractors are :mod:`viscoin.evaluate.fid`'s; KID is :mod:`viscoin.evaluate.kid`'s. The real
features are computed once per run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from viscoin.config import GanConfig
from viscoin.data.transforms import to_uint8
from viscoin.errors import UserError
from viscoin.evaluate.fid import (
    FeatureFn,
    RunningStats,
    classifier_features,
    frechet_distance,
    inception_features,
)
from viscoin.evaluate.kid import kernel_distance
from viscoin.models.stylegan2 import Generator

BATCH = 64  # images per feature-extraction batch


def check_quality_config(g: GanConfig) -> None:
    """``gan.metric_*``: a feature space is named when the monitor is on, sizes make sense."""
    if g.metric_every < 0:
        raise UserError(f"gan.metric_every={g.metric_every}: give a number of steps, or 0 (off).")
    if g.metric_every and not (g.inception_weights or g.metric_classifier):
        raise UserError(
            f"gan.metric_every={g.metric_every} needs a feature space: set "
            "gan.inception_weights=PATH (local Inception-v3 weights, the standard FID) or "
            "gan.metric_classifier=PATH (a viscoin classifier file or run directory)."
        )
    if g.metric_every and g.metric_samples < 2:
        raise UserError(f"gan.metric_samples={g.metric_samples}: the metrics need at least 2.")


def metric_features(g: GanConfig, device: torch.device) -> tuple[FeatureFn, str]:
    """The feature extractor and the key suffix of the logged metrics (``""``: Inception)."""
    if g.inception_weights:
        return inception_features(str(g.inception_weights), str(device)), ""
    from viscoin.models.classifier import load_classifier
    from viscoin.train.viscoin import resolve_model_file

    path = resolve_model_file(g.metric_classifier, "best.safetensors", "gan.metric_classifier")
    return classifier_features(load_classifier(path, device)), "_classifier"


class QualityMonitor:
    """Measures G_ema against a fixed set of real images; logged keys ``fid``/``kid`` (Inception)
    or ``fd_classifier``/``kid_classifier`` (classifier features)."""

    def __init__(
        self, g: GanConfig, dataset: Dataset, G: Generator, device: torch.device, seed: int
    ) -> None:
        self.features, suffix = metric_features(g, device)
        self.fd_key = "fid" if not suffix else f"fd{suffix}"
        self.kid_key = f"kid{suffix}"
        self.n = min(g.metric_samples, len(dataset))
        # Seeded with numpy so the training RNG is untouched (resume stays exact).
        indices = np.random.RandomState(seed).permutation(len(dataset))[: self.n]
        real = []
        for start in range(0, self.n, BATCH):
            batch = torch.stack([dataset[int(i)][0] for i in indices[start : start + BATCH]])
            real.append(self._extract(to_uint8(batch)))
        self.real = np.concatenate(real)
        self.real_stats = self._stats(self.real)
        self.z = torch.from_numpy(np.random.RandomState(seed + 1).randn(self.n, G.z_dim)).float()
        self.c = torch.zeros([self.n, G.c_dim])
        if G.c_dim:
            self.c[torch.arange(self.n), torch.arange(self.n) % G.c_dim] = 1
        self.device = device

    def _extract(self, images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.features(images).double().cpu().numpy().reshape(images.shape[0], -1)

    @staticmethod
    def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        running = RunningStats()
        running.update(torch.from_numpy(features))
        return running.mean_cov()

    def measure(self, G: Generator) -> dict[str, float]:
        """``{fd_key: Fréchet distance, kid_key: KID}`` of ``G`` (images from constant noise)."""
        fake = []
        with torch.no_grad():
            for start in range(0, self.n, BATCH):
                z = self.z[start : start + BATCH].to(self.device)
                c = self.c[start : start + BATCH].to(self.device)
                fake.append(self._extract(to_uint8(G(z, c, noise_mode="const"))))
        fake = np.concatenate(fake)
        return {
            self.fd_key: frechet_distance(*self.real_stats, *self._stats(fake)),
            self.kid_key: kernel_distance(self.real, fake),
        }
