"""Each metric against an independent computation on inputs where the answer is known."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from torch import nn

from viscoin.data.transforms import to_uint8
from viscoin.errors import UserError
from viscoin.evaluate.alignment import (
    attribute_alignment,
    best_auc_from_ranks,
    roc_auc_per_column,
)
from viscoin.evaluate.consistency import (
    concept_consistency,
    concept_redirected,
    summarise_consistency,
)
from viscoin.evaluate.faithfulness import (
    faithfulness_scores,
    matched_active_mask,
    paired_summary,
    random_active_mask,
    summarise_faithfulness,
)
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
    decode_intervention = Viscoin.decode_intervention

    def __init__(self) -> None:
        super().__init__()
        self.head_weight = torch.tensor([[2.0, 0.0], [0.0, 0.0]])

    def forward(self, images: torch.Tensor) -> ViscoinOutput:
        pixels = images.flatten(1)  # (B, 2)
        maps = pixels[:, :, None, None].expand(-1, -1, 3, 3)
        logits = torch.stack([2 * pixels[:, 0], torch.zeros_like(pixels[:, 0])], dim=1)
        return ViscoinOutput(logits, logits, maps, pixels, pixels, pixels)

    def decode(self, concept_maps, support, noise_mode="const", reference=None) -> torch.Tensor:
        return concept_maps.amax(dim=(2, 3)).view(-1, 1, 1, 2)


class BlindToyViscoin(ToyViscoin):
    """The same model with a generator that ignores the concepts: it knows nothing, every
    faithfulness score and its null are 0."""

    def decode(self, concept_maps, support, noise_mode="const", reference=None) -> torch.Tensor:
        return torch.ones(concept_maps.shape[0], 1, 1, 2)


def test_faithfulness_on_a_known_model():
    images = torch.tensor([[1.0, 0.5], [1.0, 0.25], [1.0, 0.0]]).view(3, 1, 1, 2)
    independent = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():  # f' reads pixel 0 like f, twice as strongly
        independent[1].weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 0.0]]))
        independent[1].bias.zero_()
    scores = faithfulness_scores(
        ToyViscoin(), [images], thresholds=(0.1,), seed=0, independent=independent
    )
    expected = 1 / (1 + math.exp(-2)) - 0.5  # σ(2) − ½
    assert np.allclose(scores["ff_f@0.1"], expected) and np.allclose(scores["ff_g@0.1"], expected)
    assert np.allclose(scores["ff_fi@0.1"], 1 / (1 + math.exp(-4)) - 0.5)
    assert np.array_equal(scores["removed@0.1"], [1.0, 1.0, 1.0])
    assert np.array_equal(scores["active"], [2.0, 2.0, 1.0])
    # the null removes one active concept: the relevant one (same FF) or the inert one (0); in the
    # third image only concept 0 is active, so the null must remove it
    assert all(np.isclose(v, expected) or np.isclose(v, 0.0) for v in scores["null_f@0.1"])
    assert scores["null_f@0.1"][2] == pytest.approx(expected)
    # the matched null replaces the relevant concept by the other one, which is inert
    assert np.allclose(scores["matched_f@0.1"], 0.0) and np.allclose(scores["matched_fi@0.1"], 0)
    summary = summarise_faithfulness(scores)
    assert summary["median_ff_f@0.1"] == pytest.approx(expected)
    assert summary["mean_removed@0.1"] == 1.0
    assert summary["mean_ff_f@0.1"] == pytest.approx(expected)
    assert summary["mean_null_f@0.1"] == pytest.approx(np.mean(scores["null_f@0.1"]))
    paired = summary["paired_f@0.1"]
    diff = scores["ff_f@0.1"] - scores["null_f@0.1"]
    assert paired["diff_mean"] == pytest.approx(float(np.mean(diff)), abs=1e-7)
    assert paired["diff_ci_low"] <= paired["diff_mean"] <= paired["diff_ci_high"]
    matched = summary["paired_matched_f@0.1"]
    assert matched["diff_mean"] == pytest.approx(expected) and matched["wins"] == 1.0


def test_faithfulness_of_a_model_that_knows_nothing_equals_its_null():
    images = torch.rand(16, 1, 1, 2) + 0.1
    summary = summarise_faithfulness(
        faithfulness_scores(BlindToyViscoin(), [images], thresholds=(0.1,), seed=0)
    )
    assert summary["mean_ff_f@0.1"] == 0 and summary["mean_null_f@0.1"] == 0
    paired = summary["paired_f@0.1"]
    assert paired["diff_mean"] == 0 and paired["sign_p"] == 1.0 and paired["ratio"] is None
    assert paired["diff_ci_low"] == paired["diff_ci_high"] == 0


def test_null_removes_the_same_number_of_active_concepts():
    gen = torch.Generator().manual_seed(1)
    active = torch.tensor([[1, 1, 0, 0, 1], [0, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    counts = torch.tensor([2, 3, 0])
    mask = random_active_mask(active, counts, gen)
    assert mask.sum(1).tolist() == [2, 3, 0]
    assert not (mask[0] & ~active[0]).any()  # enough active concepts: only active ones
    assert mask[1, 1]  # fewer active than asked: every active one, then inactive ones
    # uniform among the active concepts
    many = torch.stack([random_active_mask(active[:1], counts[:1], gen)[0] for _ in range(3000)])
    freq = many.float().mean(0)
    assert torch.allclose(freq[[0, 1, 4]], torch.full((3,), 2 / 3), atol=0.04)


def test_matched_null_replaces_each_concept_by_one_of_similar_activation():
    acts = torch.tensor(
        [[0.9, 0.1, 0.85, 0.0, 0.5], [0.9, 0.1, 0.85, 0.0, 0.5], [1.0, 2.0, 0, 0, 0]]
    )
    remove = torch.tensor([[1, 0, 0, 0, 0], [1, 0, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    mask = matched_active_mask(acts, remove, gen, pool=1)
    # row 0: 0.9 → 0.85; row 1: 0.9 first → 0.5 (0.85 is removed too), then 0.85 → 0.1
    assert mask[0].nonzero().flatten().tolist() == [2]
    assert mask[1].nonzero().flatten().tolist() == [1, 4]
    assert mask[2].sum() == 2 and not (mask & remove).any()
    # with a pool of 3, uniform among the three nearest of 0.9: 0.85, 0.5, 0.1 (never 0.0)
    many = torch.stack([matched_active_mask(acts[:1], remove[:1], gen)[0] for _ in range(3000)])
    freq = many.float().mean(0)
    assert torch.allclose(freq[[1, 2, 4]], torch.full((3,), 1 / 3), atol=0.04)
    assert freq[0] == 0 and freq[3] == 0
    # fewer candidates than removed concepts: every candidate
    assert matched_active_mask(acts[:1], ~torch.eye(5, dtype=torch.bool)[:1], gen).sum() == 1


def test_paired_summary_by_hand():
    stats = paired_summary(np.array([3.0, 2.0, 1.0, 0.0]), np.ones(4), seed=0)
    assert stats["diff_mean"] == 0.5 and stats["diff_median"] == 0.5
    assert stats["wins"] == 0.5 and stats["ratio"] == 1.5
    assert stats["sign_p"] == pytest.approx(1.0)  # 2 up, 1 down: P(X ≥ 2 or ≤ 1 | n=3) = 1
    many = paired_summary(np.ones(12), np.zeros(12))
    assert many["sign_p"] == pytest.approx(2 * 0.5**12)  # all 12 up
    assert many["diff_ci_low"] == many["diff_ci_high"] == 1.0


# ---------------------------------------------------------------- consistency


class PatchViscoin(nn.Module):
    """A real classifier looks at decoded 32×32 images: concept 0 paints a bright top-left patch
    scaled by max(φ₀); concept 1 changes nothing. Consistency: ≈1 for concept 0, exactly ½ for 1."""

    n_concepts = 2
    decode_intervention = Viscoin.decode_intervention

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

    def decode(self, concept_maps, support, noise_mode="const", reference=None) -> torch.Tensor:
        images = support.view(-1, 3, 32, 32).clone()
        images[:, :, :12, :12] += concept_maps[:, 0].amax(dim=(1, 2))[:, None, None, None]
        return images.clamp(-1, 1)


def test_consistency_separates_an_effective_from_an_inert_concept():
    images = torch.rand(24, 3, 32, 32) * 0.6 - 0.8
    result = concept_consistency(PatchViscoin(), images, [0, 1], multiplier=4.0, batch_size=8)
    assert result[0]["accuracy"] >= 0.9
    assert result[1]["accuracy"] == pytest.approx(0.5)
    # shuffled labels: the probe learns nothing that carries to held-out pairs
    assert result[0]["null"] < 0.75 and result[0]["excess"] > 0.2
    summary = summarise_consistency(result)
    assert summary["consistency_mean"] == pytest.approx(
        (result[0]["accuracy"] + result[1]["accuracy"]) / 2
    )
    assert summary["null_mean"] == pytest.approx((result[0]["null"] + result[1]["null"]) / 2)


def test_consistency_of_an_untrained_ensemble_equals_its_random_direction_null():
    """Ω as initialised reads each concept through random weights: a random direction of the same
    strength is as consistent (the probe saturates or not alike); the unread concept is chance."""
    from tests.interpret.conftest import make_model

    model = make_model(seed=3)
    before = model.core.translator.net[0].weight.detach().clone()
    images = torch.rand(24, 3, 32, 32) * 2 - 1
    result = concept_consistency(
        model, images, [0, 1], multiplier=2.0, batch_size=12, shuffles=2, directions=3,
        unread_concepts=[0],
    )  # fmt: skip
    for entry in result.values():
        assert abs(entry["excess_direction"]) <= 0.1
        assert entry["excess_direction"] == pytest.approx(entry["accuracy"] - entry["direction"])
    assert result[0]["unread"] == pytest.approx(0.5)
    assert torch.equal(model.core.translator.net[0].weight, before)  # weights restored


def test_random_direction_keeps_each_rows_strength():
    from tests.interpret.conftest import make_model

    model = make_model(seed=0)
    translator = model.core.translator
    weight = translator.net[0].weight
    rows = translator.reads_concepts.nonzero().flatten()
    original = weight.detach()[rows, :, 9:18].clone()
    with concept_redirected(model, 1, torch.Generator().manual_seed(0)):
        inside = weight.detach()[rows, :, 9:18].clone()
        others = weight.detach()[rows, :, :9].clone()
    assert not torch.allclose(inside, original)
    assert torch.allclose(inside.flatten(1).norm(dim=1), original.flatten(1).norm(dim=1))
    assert torch.equal(others, weight.detach()[rows, :, :9])
    assert torch.equal(weight.detach()[rows, :, 9:18], original)


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
    assert best_auc_from_ranks(rankdata(scores, axis=0), labels) == pytest.approx(aucs.max())


def test_attribute_alignment_finds_the_detecting_concept():
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 3, 200)
    crest = rng.integers(0, 2, 200)
    activations = rng.random((200, 4))
    activations[:, 2] += 3 * (colour == 1)  # concept 2 detects colour 1 perfectly
    activations[:, 0] += 3 * crest  # concept 0 detects the crest
    result = attribute_alignment(
        activations, np.stack([colour, crest], 1), ["colour", "crest"], [True, False],
        permutations=50,
    )  # fmt: skip
    assert {k: result["colour"]["values"]["1"][k] for k in ("auc", "concept")} == {
        "auc": 1.0, "concept": 2,
    }  # fmt: skip
    assert result["crest"]["values"]["1"]["concept"] == 0
    assert result["crest"]["values"]["1"]["auc"] == 1.0
    assert result["crest"]["values"]["1"]["p_value"] == pytest.approx(1 / 51)  # none as high
    assert result["crest"]["class_defining"] is False
    assert result["colour"]["auc"] < 1.0  # colours 0 and 2 have no dedicated concept
    assert result["colour"]["best_auc"] == 1.0 and result["colour"]["min_auc"] < 0.8


def test_alignment_of_concepts_that_know_nothing_sits_on_its_null():
    """Best-of-K AUC of random activations is above 0.5; the permutation null says by how much."""
    rng = np.random.default_rng(2)
    attribute = rng.integers(0, 2, (300, 1))
    result = attribute_alignment(rng.random((300, 32)), attribute, ["crest"], permutations=200)
    crest = result["crest"]
    assert crest["auc"] > 0.53 and crest["null_mean"] > 0.53  # the best of 32 random AUCs
    assert abs(crest["auc"] - crest["null_mean"]) < 0.03 and crest["p_value"] > 0.05
    # the null by brute force: best-of-K AUC with the column permuted, via the reference AUC
    perm = np.random.default_rng(0)
    brute = [
        np.nanmax(roc_auc_per_column(rng.random((300, 32)), perm.permutation(attribute[:, 0]) == 1))
        for _ in range(100)
    ]
    assert crest["null_mean"] == pytest.approx(np.mean(brute), abs=0.01)


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


def test_inception_weights_load_from_a_local_state_dict(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    from viscoin.evaluate.fid import inception_features

    # a randomly initialised extractor's state dict, saved as a user's local copy would be
    with monkeypatch.context() as m:
        m.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *a: None)
        reference = tf_inception.FeatureExtractorInceptionV3("x", ["2048"]).eval()
    path = tmp_path / "inception.pth"
    torch.save(reference.state_dict(), path)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    features = inception_features(str(path), "cpu")(images)
    assert features.shape == (2, 2048)
    assert torch.equal(features, reference(images)[0])
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="do not fit torch-fidelity's Inception-v3"):
        inception_features(str(tmp_path / "other.pth"), "cpu")
