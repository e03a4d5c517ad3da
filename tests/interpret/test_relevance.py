"""Relevance r_k(x), class–concept relevance r_{k,c} and the concept selection rules."""

import numpy as np
import pytest
import torch

from viscoin.errors import UserError
from viscoin.interpret.relevance import (
    check_concept_indices,
    class_concept_relevance,
    image_relevance,
    select_concepts,
    selection_mask,
)


def test_image_relevance_follows_the_formula(tiny_model, tiny_dataset):
    images = tiny_dataset.tensors[0][:4]
    relevance, predicted = image_relevance(tiny_model, images)
    out = tiny_model(images)
    alpha = out.activations * tiny_model.head_weight[out.g_logits.argmax(1)]
    assert torch.equal(predicted, out.g_logits.argmax(1))
    assert torch.allclose(relevance, alpha / alpha.abs().amax(1, keepdim=True))
    assert torch.allclose(relevance.abs().amax(1), torch.ones(4))


def test_class_concept_relevance_is_mean_over_predicted_class():
    relevance = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 1.0], [0.2, 0.2]])
    predicted = np.array([0, 0, 2, 2])
    matrix, counts = class_concept_relevance(relevance, predicted, n_classes=4)
    assert counts.tolist() == [2, 0, 2, 0]
    np.testing.assert_allclose(matrix, [[0.75, -0.5], [0, 0], [0.1, 0.6], [0, 0]], atol=1e-6)
    torch_matrix, _ = class_concept_relevance(torch.tensor(relevance), torch.tensor(predicted), 4)
    np.testing.assert_allclose(torch_matrix, matrix)


def test_select_by_threshold_top_k_and_indices():
    relevance = torch.tensor([[0.1, 1.0, -0.3, 0.5], [-1.0, 0.05, 0.15, 0.1]])
    assert select_concepts(relevance) == [[1, 3], []]  # default threshold 0.2
    assert select_concepts(relevance, threshold=0.0) == [[1, 3, 0], [2, 3, 1]]
    assert select_concepts(relevance, top_k=2) == [[1, 3], [2, 3]]
    assert select_concepts(relevance, top_k=10) == [[1, 3, 0, 2], [2, 3, 1, 0]]
    assert select_concepts(relevance, concepts=[2, 0, 2]) == [[2, 0], [2, 0]]
    mask = selection_mask([[1, 3], []], 4)
    assert mask.tolist() == [[False, True, False, True], [False] * 4]


def test_selection_errors_are_user_errors():
    relevance = torch.zeros(1, 4)
    with pytest.raises(UserError, match="concept index 4 is out of range.*4 concepts"):
        select_concepts(relevance, concepts=[1, 4])
    with pytest.raises(UserError, match="choose one"):
        select_concepts(relevance, threshold=0.1, top_k=2)
    with pytest.raises(UserError, match="top-k"):
        select_concepts(relevance, top_k=0)
    with pytest.raises(UserError, match="no concept index"):
        check_concept_indices([], 4)
    with pytest.raises(UserError, match="-1"):
        check_concept_indices([-1], 4)
