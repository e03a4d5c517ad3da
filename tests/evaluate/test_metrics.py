"""Each metric against an independent computation on inputs where the answer is known."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from viscoin.data.transforms import to_uint8
from viscoin.evaluate.alignment import attribute_alignment, roc_auc_per_column
from viscoin.evaluate.consistency import concept_consistency
from viscoin.evaluate.faithfulness import faithfulness_scores, summarise_faithfulness
from viscoin.evaluate.fid import RunningStats, frechet_distance, frechet_distance_of
from viscoin.models.classifier import Classifier
from viscoin.models.viscoin import Viscoin, ViscoinOutput

# ---------------------------------------------------------------- a hand-built two-concept model


class ToyViscoin(nn.Module):
    """Images (B, 1, 1, 2): concept k's map is pixel k everywhere; g = f = logits (2·x₀, 0);
    decoding writes max(φ_k) back into pixel k. Removing concept 0 of x = (1, ·) moves p₀ from
    σ(2) to 1/2; concept 1 has no effect on the prediction."""

    n_concepts = 2
    relevance = Viscoin.relevance

    def __init__(self) -> None:
        super().__init__()
        self.head_weight = torch.tensor([[2.0, 0.0], [0.0, 0.0]])

    def forward(self, images: torch.Tensor) -> ViscoinOutput:
        pixels = images.flatten(1)  # (B, 2)
        maps = pixels[:, :, None, None].expand(-1, -1, 3, 3)
        logits = torch.stack([2 * pixels[:, 0], torch.zeros_like(pixels[:, 0])], dim=1)
        return ViscoinOutput(logits, logits, maps, pixels, pixels, pixels)

    def decode(self, concept_maps: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        return concept_maps.amax(dim=(2, 3)).view(-1, 1, 1, 2)


def test_faithfulness_on_a_known_model():
    images = torch.tensor([[1.0, 0.5], [1.0, 0.25]]).view(2, 1, 1, 2)
    scores = faithfulness_scores(ToyViscoin(), [images], thresholds=(0.1,), seed=0)
    expected = 1 / (1 + math.exp(-2)) - 0.5  # σ(2) − ½
    assert np.allclose(scores["ff_f@0.1"], expected) and np.allclose(scores["ff_g@0.1"], expected)
    assert np.array_equal(scores["removed@0.1"], [1.0, 1.0])
    # the random baseline removes one concept: either the relevant one (same FF) or the inert one (0)
    assert all(np.isclose(v, expected) or np.isclose(v, 0.0) for v in scores["random_f@0.1"])
    summary = summarise_faithfulness(scores)
    assert summary["median_ff_f@0.1"] == pytest.approx(expected)
    assert summary["mean_removed@0.1"] == 1.0
    assert summary["mean_ff_f@0.1"] == pytest.approx(expected)
    assert summary["mean_random_f@0.1"] == pytest.approx(np.mean(scores["random_f@0.1"]))
    assert summary["median_random_f@0.1"] == pytest.approx(np.median(scores["random_f@0.1"]))


def test_random_baseline_removes_the_same_number():
    from viscoin.evaluate.faithfulness import _random_mask

    counts = torch.tensor([0, 3, 5])
    mask = _random_mask(counts, 5, torch.Generator().manual_seed(1))
    assert mask.sum(1).tolist() == [0, 3, 5]


# ---------------------------------------------------------------- consistency


class PatchViscoin(nn.Module):
    """A real classifier looks at decoded 32×32 images: concept 0 paints a bright top-left patch
    scaled by max(φ₀); concept 1 changes nothing. Consistency: ≈1 for concept 0, exactly ½ for 1."""

    n_concepts = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.classifier = Classifier("resnet18", 2).eval()

    def forward(self, images: torch.Tensor) -> ViscoinOutput:
        b = images.shape[0]
        maps = torch.zeros(b, 2, 3, 3)
        maps[:, 0, 0, 0] = images[:, 0, 0, 0].abs() + 0.1
        maps[:, 1] = 0.5
        support = images.flatten(1)
        zeros = torch.zeros(b, 2)
        return ViscoinOutput(zeros, zeros, maps, support, maps.amax(dim=(2, 3)), support)

    def decode(self, concept_maps: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        images = support.view(-1, 3, 32, 32).clone()
        images[:, :, :12, :12] += concept_maps[:, 0].amax(dim=(1, 2))[:, None, None, None]
        return images.clamp(-1, 1)


def test_consistency_separates_an_effective_from_an_inert_concept():
    images = torch.rand(24, 3, 32, 32) * 0.6 - 0.8
    result = concept_consistency(PatchViscoin(), images, [0, 1], multiplier=4.0, batch_size=8)
    assert result[0] >= 0.9
    assert result[1] == pytest.approx(0.5)


# ---------------------------------------------------------------- alignment


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(40, 3)).astype(float)  # ties on purpose
    labels = rng.random(40) < 0.4
    aucs = roc_auc_per_column(scores, labels)
    for k in range(3):
        pos, neg = scores[labels, k], scores[~labels, k]
        wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        assert aucs[k] == pytest.approx(wins / (len(pos) * len(neg)))
    assert np.isnan(roc_auc_per_column(scores, np.zeros(40, bool))).all()


def test_attribute_alignment_finds_the_detecting_concept():
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 3, 200)
    crest = rng.integers(0, 2, 200)
    activations = rng.random((200, 4))
    activations[:, 2] += 3 * (colour == 1)  # concept 2 detects colour 1 perfectly
    activations[:, 0] += 3 * crest  # concept 0 detects the crest
    result = attribute_alignment(
        activations, np.stack([colour, crest], 1), ["colour", "crest"], [True, False]
    )
    assert result["colour"]["values"]["1"] == {"auc": 1.0, "concept": 2}
    assert result["crest"]["values"] == {"1": {"auc": 1.0, "concept": 0}}
    assert result["crest"]["class_defining"] is False
    assert result["colour"]["auc"] < 1.0  # colours 0 and 2 have no dedicated concept
    assert result["colour"]["best_auc"] == 1.0 and result["colour"]["min_auc"] < 0.8


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    assert frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_singular_covariances_is_quiet_and_right():
    """Features that never fire give zero-variance dimensions: same closed form, no warning."""
    import warnings

    mu1, mu2 = np.array([0.0, 1.0, 0.0]), np.array([2.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 0.0, 0.0]), np.array([4.0, 0.0, 0.0])
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert value == pytest.approx(expected, abs=1e-5)


def test_frechet_distance_of_streams_with_a_stand_in_extractor():
    torch.manual_seed(0)
    real = [torch.randint(0, 256, (16, 3, 2, 2), dtype=torch.uint8) for _ in range(3)]
    fake = [torch.randint(0, 200, (16, 3, 2, 2), dtype=torch.uint8) for _ in range(3)]

    def features(batch):  # a small stand-in feature extractor: mean colour per channel
        return batch.float().mean(dim=(2, 3))

    got = frechet_distance_of(real, fake, features)
    r = torch.cat([features(b) for b in real]).double().numpy()
    f = torch.cat([features(b) for b in fake]).double().numpy()
    expected = frechet_distance(
        r.mean(0), np.cov(r, rowvar=False), f.mean(0), np.cov(f, rowvar=False)
    )
    assert got == pytest.approx(expected, rel=1e-9)
    stats = RunningStats()
    stats.update(torch.from_numpy(r))
    _mean, cov = stats.mean_cov()
    assert np.allclose(cov, np.cov(r, rowvar=False))


def test_to_uint8_matches_stylegan_conversion():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6)
    assert to_uint8(x).flatten().tolist() == [0, 64, 128, 255, 255, 255]
