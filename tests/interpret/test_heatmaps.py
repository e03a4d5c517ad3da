"""Concept heatmaps: a hand-built case with a known answer, dead concepts, shapes and overlays."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tests.interpret.conftest import CLASSES, StandInGenerator, make_model
from viscoin.interpret.heatmaps import (
    concept_heatmaps,
    concept_index_table,
    overlay_heatmap,
    save_heatmap_figures,
)
from viscoin.models.concepts import ConceptExtractor
from viscoin.models.head import ConceptHead
from viscoin.models.translator import ConceptTranslator
from viscoin.models.viscoin import Viscoin, ViscoinCore


class PoolingClassifier(nn.Module):
    """A classifier whose three stage maps are the image's brightness, average-pooled to 8, 4 and
    2 px (4 channels each): a stage map cell is non-zero only where the image is."""

    num_classes = 2

    def forward_features(self, images):
        brightness = F.relu(images.mean(1, keepdim=True)).expand(-1, 4, -1, -1)
        maps = [F.adaptive_avg_pool2d(brightness, s) for s in (8, 4, 2)]
        return torch.zeros(images.shape[0], 2), maps


def quadrant_model() -> Viscoin:
    extractor = ConceptExtractor([4, 4, 4], [8, 4, 2], n_concepts=2, channels=4)
    with torch.no_grad():  # all weights positive, no biases: every concept grows with brightness
        for module in extractor.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.uniform_(0.1, 1.0)
                if module.bias is not None:
                    module.bias.zero_()
        extractor.to_concepts.bias[1] = -1e6  # concept 1 never fires
    generator = StandInGenerator()
    core = ViscoinCore(
        extractor, ConceptHead(2, 2), ConceptTranslator(2, generator.num_ws, generator.w_dim)
    )
    return Viscoin(PoolingClassifier(), core, generator).eval().requires_grad_(False)


def test_heatmap_lights_only_the_bright_quadrant():
    images = -torch.ones(1, 3, 32, 32)
    images[:, :, :16, :16] = 1.0  # only the top-left quadrant can move any concept
    heat = concept_heatmaps(quadrant_model(), images, [0, 1])
    assert heat.shape == (1, 2, 32, 32)
    concept = heat[0, 0]
    assert concept.max() == 1.0 and concept.min() >= 0
    assert concept[:12, :12].min() > 0.5  # well inside the bright quadrant
    # where the stage maps are zero, ReLU(Σ w A) is zero; bilinear upsampling of the coarsest
    # (2×2, 16 px cells) map only blends up to the next cell centre, 8 px past the quadrant
    assert concept[24:, :].max() == 0 and concept[:, 24:].max() == 0
    assert concept[16:, 16:].mean() < 0.1 * concept[:16, :16].mean()
    assert torch.equal(heat[0, 1], torch.zeros(32, 32))  # a dead concept has no gradient: zeros


def test_heatmaps_on_a_resnet(tiny_model, tiny_dataset):
    images = tiny_dataset.tensors[0][:3]
    table = torch.tensor([[0, 1], [2, 3], [4, 5]])
    heat = concept_heatmaps(tiny_model, images, table)
    assert heat.shape == (3, 2, 32, 32) and not heat.requires_grad
    assert heat.min() >= 0 and heat.max() <= 1
    assert torch.isfinite(heat).all()
    # per-image tables give each image its own concept: same as asking for that concept alone
    alone = concept_heatmaps(tiny_model, images[1:2], [3])
    assert torch.allclose(alone[0, 0], heat[1, 1], atol=1e-5)
    model = make_model()
    with torch.no_grad():
        model.core.extractor.to_concepts.bias[5] = -1e6
    assert concept_heatmaps(model, images, [5]).abs().max() == 0
    assert concept_index_table([1, 2], 3).shape == (3, 2)


def test_overlay_and_figures(tiny_model, tiny_dataset, tmp_path):
    image = torch.zeros(3, 8, 8)
    assert overlay_heatmap(image, torch.zeros(8, 8)).dtype == np.uint8
    hot = overlay_heatmap(image, torch.ones(8, 8), alpha=1.0, cmap="gray")
    assert (hot == 255).all()
    images = tiny_dataset.tensors[0][:2]
    concepts = torch.tensor([[0, 1, 2], [3, 4, 5]])
    heat = concept_heatmaps(tiny_model, images, concepts)
    paths = save_heatmap_figures(images, heat, concepts, tmp_path, indices=[3, 7])
    assert [p.name for p in paths] == ["heatmaps-3.png", "heatmaps-7.png"]
    with np.load(tmp_path / "heatmaps.npz") as saved:
        assert saved["heatmaps"].shape == (2, 3, 32, 32) and saved["indices"].tolist() == [3, 7]
    assert CLASSES
