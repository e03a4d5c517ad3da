"""Concept analytics over a split: shapes, formulas, dead concepts, eval mode, save/load, cache."""

import json

import numpy as np
import torch

from tests.interpret.conftest import N_CLASSES, N_CONCEPTS, make_model
from viscoin.interpret.analytics import (
    ConceptAnalytics,
    analytics_cache_key,
    cached_concept_analytics,
    compute_concept_analytics,
)
from viscoin.interpret.relevance import image_relevance


def test_analytics_matches_direct_computation(tiny_model, tiny_dataset, loader):
    result = compute_concept_analytics(tiny_model, loader)
    images, labels = tiny_dataset.tensors
    relevance, predicted = image_relevance(tiny_model, images)
    assert result.n_images == 12 and result.n_concepts == N_CONCEPTS
    assert result.classes == tiny_dataset.classes  # taken from the model's classifier
    np.testing.assert_allclose(result.relevance, relevance.numpy(), atol=1e-5)
    np.testing.assert_array_equal(result.predicted, predicted.numpy())
    np.testing.assert_array_equal(result.labels, labels.numpy())
    np.testing.assert_array_equal(result.indices, np.arange(12))
    for c in range(N_CLASSES):
        chosen = predicted.numpy() == c
        expected = relevance.numpy()[chosen].mean(0) if chosen.any() else np.zeros(N_CONCEPTS)
        np.testing.assert_allclose(result.class_concept[c], expected, atol=1e-5)
    assert result.class_counts.sum() == 12
    profile = result.activation_profile
    assert (np.diff(profile, axis=1) <= 0).all()
    np.testing.assert_allclose(np.sort(profile, 1), np.sort(result.activations, 1))
    top = result.top_images(0, 3)
    assert [a for _, a in top] == sorted(result.activations[:, 0], reverse=True)[:3]


def test_concept_class_distribution_and_entropy():
    relevance = np.array([[1.0, 0.0, 0.6], [0.5, 0.0, 0.6], [-1.0, 0.0, 0.6]])
    activations = np.abs(relevance)
    analytics = ConceptAnalytics(
        activations=activations,
        relevance=relevance,
        predicted=np.array([0, 0, 1]),
        f_predicted=np.array([0, 0, 1]),
        labels=np.array([0, 0, 1]),
        indices=np.arange(3),
        classes=["a", "b"],
    )
    # concept 0 supports class a only, concept 1 nothing (dead), concept 2 both classes equally
    np.testing.assert_allclose(analytics.concept_class, [[1, 0], [0, 0], [0.5, 0.5]])
    entropy = analytics.class_entropy
    assert entropy[0] == 0 and np.isnan(entropy[1]) and np.isclose(entropy[2], np.log(2))
    assert analytics.dead.tolist() == [False, True, False]
    assert analytics.ordered_concepts() == [2, 0]  # importance 0.6 > 0.5
    assert analytics.top_classes(0) == [(0, 0.75)]
    summary = analytics.summary()
    assert summary["class_entropy"][1] is None and summary["dead"] == [1]
    json.dumps(summary, allow_nan=False)


def test_dead_concept_detected_and_bn_untouched(tiny_dataset, loader):
    model = make_model()
    with torch.no_grad():
        model.core.extractor.to_concepts.bias[2] = -1e4  # ReLU never opens: concept 2 is dead
    model.train()  # analysis must switch to eval mode itself (no BatchNorm update)
    running = model.classifier.backbone.bn1.running_mean.clone()
    result = compute_concept_analytics(model, loader, max_images=7)
    assert result.n_images == 7
    assert result.dead[2] and result.dead.sum() == 1
    assert 2 not in result.ordered_concepts()
    assert torch.equal(model.classifier.backbone.bn1.running_mean, running)
    assert model.training  # mode restored


def test_save_load_round_trip(tiny_model, loader, tmp_path):
    result = compute_concept_analytics(tiny_model, loader, meta={"split": "test"})
    path = result.save(tmp_path / "concepts.json")
    assert path.with_suffix(".npz").is_file()
    loaded = ConceptAnalytics.load(path)
    for name in ("activations", "relevance", "predicted", "labels", "class_concept"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert loaded.meta == {"split": "test"} and loaded.classes == result.classes
    summary = json.loads(path.read_text())
    assert len(summary["mean_activation"]) == N_CONCEPTS
    assert np.array(summary["class_concept"]).shape == (N_CLASSES, N_CONCEPTS)


def test_cache_key_depends_on_contents_not_names(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"model one")
    b.write_bytes(b"model one")
    key = analytics_cache_key(a, "shapes", "test", None, 32)
    assert key == analytics_cache_key(b, "shapes", "test", None, 32)  # same bytes, other name
    b.write_bytes(b"model two")
    others = {
        analytics_cache_key(b, "shapes", "test", None, 32),
        analytics_cache_key(a, "shapes", "train", None, 32),
        analytics_cache_key(a, "cub", "test", None, 32),
        analytics_cache_key(a, "shapes", "test", tmp_path, 32),
        analytics_cache_key(a, "shapes", "test", None, 64),
        analytics_cache_key(a, "shapes", "test", None, 32, max_images=5),
    }
    assert key not in others and len(others) == 6


def test_cache_hit_and_force(tiny_model, loader, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return compute_concept_analytics(tiny_model, loader, max_images=4)

    first, hit = cached_concept_analytics(tmp_path / "cache", "abc", compute)
    assert not hit and (tmp_path / "cache" / "concepts-abc.json").is_file()
    second, hit = cached_concept_analytics(tmp_path / "cache", "abc", compute)
    assert hit and len(calls) == 1
    np.testing.assert_array_equal(first.activations, second.activations)
    _, hit = cached_concept_analytics(tmp_path / "cache", "abc", compute, force=True)
    assert not hit and len(calls) == 2
    (tmp_path / "cache" / "concepts-abc.json").write_text("{ torn")
    _, hit = cached_concept_analytics(tmp_path / "cache", "abc", compute)
    assert not hit and len(calls) == 3
