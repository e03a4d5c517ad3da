"""KID: the subset formula equals the unbiased MMD² written out pair by pair; its null is ≈ 0."""

import numpy as np
import pytest

from viscoin.evaluate.kid import kernel_distance


def brute_force_mmd2(x, y):
    """Unbiased MMD² = mean_{i≠j} k(xi, xj) + mean_{i≠j} k(yi, yj) − 2 mean_{i,j} k(xi, yj)."""
    d, m = x.shape[1], x.shape[0]

    def k(a, b):
        return (sum(ai * bi for ai, bi in zip(a, b, strict=True)) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd():
    rng = np.random.RandomState(0)
    real, fake = rng.randn(12, 5), rng.randn(12, 5) + 0.3
    # one subset of every row: the subset draw only permutes, which MMD² ignores
    assert kernel_distance(real, fake, num_subsets=1) == pytest.approx(brute_force_mmd2(fake, real))


def test_kid_null_and_shift():
    rng = np.random.RandomState(1)
    a, b = rng.randn(400, 16), rng.randn(400, 16)
    null = kernel_distance(a, b, num_subsets=20, max_subset_size=200)
    shifted = kernel_distance(a, b + 0.5, num_subsets=20, max_subset_size=200)
    assert abs(null) < 0.01 < shifted
    with pytest.raises(ValueError, match="at least 2"):
        kernel_distance(a[:1], b)
