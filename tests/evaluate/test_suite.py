"""``evaluate_model`` end to end on a tiny ensemble: every number beside its null, and the
reconstructions scored by an independent classifier, each checked against a recomputation."""

import numpy as np
import pytest
import torch

from tests.interpret.conftest import (
    N_CLASSES,
    LabelledImages,
    make_dataset,
    make_model,
    one_thread,
)
from viscoin.evaluate.alignment import attribute_alignment
from viscoin.evaluate.suite import (
    EvalOptions,
    _fresh_extractor,
    evaluate_model,
    headline,
    metrics_markdown,
)
from viscoin.models.classifier import Classifier
from viscoin.models.head import ConceptHead


@pytest.fixture(scope="module")
def evaluated():
    with one_thread():
        model, data = make_model(), make_dataset(n=12)
        torch.manual_seed(5)
        independent = Classifier("resnet18", N_CLASSES).eval()
        options = EvalOptions(
            batch_size=6, faithfulness_images=8, consistency_concepts=2, consistency_images=8,
            fid=False, independent=independent, consistency_shuffles=2, alignment_permutations=0,
        )  # fmt: skip
        metrics = evaluate_model(model, data, torch.device("cpu"), options)
        return model, data, independent, metrics


def test_prediction_nulls_by_hand(evaluated):
    model, data, _, metrics = evaluated
    images, labels = data.tensors
    with torch.no_grad():
        out = model(images)
    f, g = out.f_logits.argmax(1), out.g_logits.argmax(1)
    assert metrics["nulls"]["accuracy"] == pytest.approx(
        torch.bincount(labels).max().item() / len(labels)
    )
    pf = torch.bincount(f, minlength=N_CLASSES).double() / len(f)
    pg = torch.bincount(g, minlength=N_CLASSES).double() / len(g)
    assert metrics["nulls"]["fidelity"] == pytest.approx(float((pf * pg).sum()))
    assert metrics["sparsity"]["relevant_fraction"] == pytest.approx(
        metrics["sparsity"]["relevant_concepts_per_image"] / model.n_concepts
    )


def test_reconstructions_scored_by_an_independent_classifier(evaluated):
    model, data, independent, metrics = evaluated
    images = data.tensors[0]
    with torch.no_grad():
        f = model(images).f_logits.argmax(1)
        recon = model.reconstruct(images).float().clamp(-1, 1)
        fi, fi_recon = independent(images).argmax(1), independent(recon).argmax(1)
        f_recon = model.classifier(recon).argmax(1)
    scores = metrics["independent"]
    assert scores["agrees_with_f"] == pytest.approx((fi == f).double().mean().item())
    assert scores["recon_agrees_with_f"] == pytest.approx((fi_recon == f).double().mean().item())
    assert scores["recon_consistent"] == pytest.approx((fi_recon == fi).double().mean().item())
    assert scores["f_recon_agrees"] == pytest.approx((f_recon == f).double().mean().item())
    assert scores["fooling_gap"] == pytest.approx(
        scores["f_recon_agrees"] - scores["recon_agrees_with_f"]
    )
    # faithfulness with f' beside f's, each with its paired null
    ff = metrics["faithfulness"]
    assert {"mean_ff_fi@0.1", "mean_null_fi@0.1", "paired_fi@0.1", "paired_f@0.1"} <= set(ff)


def test_consistency_reports_its_nulls(evaluated):
    consistency = evaluated[3]["consistency"]
    assert consistency["consistency_concepts"] == 2
    first = next(iter(consistency["per_concept"].values()))
    assert first["unread"] == 0.5  # Ω blind to the concept: identical images
    assert 0.0 <= consistency["null_mean"] <= 1.0
    assert consistency["excess_mean"] == pytest.approx(
        consistency["consistency_mean"] - consistency["null_mean"]
    )
    assert consistency["excess_direction_mean"] == pytest.approx(
        consistency["consistency_mean"] - consistency["direction_mean"]
    )


def test_headline_and_table_show_the_nulls(evaluated):
    metrics = evaluated[3]
    line = headline(metrics)
    assert "(null" in line and "random active concepts" in line and "f' agrees" in line
    assert "matched activation" in line and "random direction" in line
    table = metrics_markdown(metrics)
    assert "| nulls/fidelity |" in table and "| independent/fooling_gap |" in table


class AttributeImages(LabelledImages):
    """The tiny dataset with two known attributes per image (one binary, one with three values)."""

    attribute_names = ("bright", "parity")
    attribute_is_class_defining = (True, False)

    def all_attributes(self) -> np.ndarray:
        images = self.tensors[0]
        bright = (images.mean(dim=(1, 2, 3)) > images.mean()).long()
        return np.stack([bright.numpy(), np.arange(len(images)) % 3], axis=1)


def test_alignment_beside_a_freshly_initialised_extractor():
    with one_thread():
        model, data = make_model(), make_dataset(n=18)
        data = AttributeImages(*data.tensors, data.classes)
        options = EvalOptions(
            batch_size=6, faithfulness_images=0, consistency_concepts=0, fid=False,
            alignment_permutations=0, seed=3,
        )  # fmt: skip
        metrics = evaluate_model(model, data, torch.device("cpu"), options)
        fresh = _fresh_extractor(model, 3)
        with torch.no_grad():
            _, maps = model.classifier.forward_features(data.tensors[0])
            acts = ConceptHead.activations(fresh(maps)[0]).numpy()
    expected = attribute_alignment(acts, data.all_attributes(), data.attribute_names)
    for name in data.attribute_names:
        entry = metrics["attribute_alignment"][name]
        assert entry["untrained_auc"] == pytest.approx(expected[name]["auc"])
        assert entry["untrained_best_auc"] == pytest.approx(expected[name]["best_auc"])
    # a different Ψ from the model's (whose concept biases were moved), the same architecture
    assert not torch.equal(fresh.to_concepts.bias, model.core.extractor.to_concepts.bias)
    assert fresh.config() == model.core.extractor.config()
