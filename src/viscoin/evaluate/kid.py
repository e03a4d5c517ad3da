"""Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD² between two feature sets
under the polynomial kernel k(x, y) = (x·y / d + 1)³, averaged over random subsets, as
StyleGAN2-ADA's ``metrics/kernel_inception_distance.py`` computes it. Unlike the Fréchet distance
it is unbiased, so small sample sizes (a quality monitor during training) can be compared."""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, D), (M, D) → (N, M): (x·y / D + 1)³."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def kernel_distance(
    real: np.ndarray,
    fake: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """KID between features ``real`` (N, D) and ``fake`` (M, D).

    Each of ``num_subsets`` draws m = min(N, M, max_subset_size) rows of each set without
    replacement and takes the unbiased MMD² (kernel sums without the diagonal over m(m − 1), cross
    term over m²); the mean over subsets is returned. Needs m ≥ 2.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(real.shape[0], fake.shape[0], max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 feature vectors per set")
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(fake.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        within = polynomial_kernel(x, x) + polynomial_kernel(y, y)
        cross = polynomial_kernel(x, y)
        total += (within.sum() - np.diag(within).sum()) / (m - 1) - cross.sum() * 2 / m
    return float(total / num_subsets / m)
