"""The quality monitor of ``train gan``: FD and KID logged every ``gan.metric_every`` steps, the best
generator kept as ``generator-best.safetensors``."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.train.test_gan import train
from viscoin.config import load_config
from viscoin.errors import UserError
from viscoin.models.classifier import Classifier, save_classifier
from viscoin.models.stylegan2 import load_generator
from viscoin.report.logs import metric_group
from viscoin.train.gan_quality import check_quality_config
from viscoin.utils.checkpoint import read_metadata
from viscoin.utils.runs import read_metrics


def test_monitor_logs_metrics_and_keeps_the_best_generator(tmp_path):
    classifier = save_classifier(Classifier("resnet18", 2), tmp_path / "f.safetensors")
    monitor = ["gan.metric_every=2", "gan.metric_samples=8", f"gan.metric_classifier={classifier}"]
    # a high lr makes the generator (and its distance) move a lot in a few steps
    extra = [*monitor, "gan.lr=0.02", "gan.augment=none", "gan.ema_kimg=0.001"]
    run, _ = train(tmp_path, "q", 7, extra=extra)
    logged = [r for r in read_metrics(run / "metrics.jsonl") if "fd_classifier" in r]
    assert [r["step"] for r in logged] == [2, 4, 6, 7]  # every 2 steps and at the end
    assert all(r["fd_classifier"] >= 0 and isinstance(r["kid_classifier"], float) for r in logged)
    assert len({r["fd_classifier"] for r in logged}) == 4
    assert metric_group("fd_classifier") == metric_group("kid_classifier") == "metrics"

    best_file = run / "checkpoints" / "generator-best.safetensors"
    best = min(logged, key=lambda r: r["fd_classifier"])
    extra_saved = json.loads(read_metadata(best_file)["viscoin.extra"])
    assert extra_saved["step"] == best["step"]
    assert extra_saved["fd_classifier"] == pytest.approx(best["fd_classifier"])
    assert load_generator(best_file).img_resolution == 16
    # the same training stopped at the best step wrote exactly that generator
    shorter, _ = train(tmp_path, "to-best", best["step"], extra=extra)
    a, b = load_file(best_file), load_file(shorter / "checkpoints" / "generator.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_monitor_needs_a_feature_space():
    cfg = load_config(None, ["gan.metric_every=100"])
    with pytest.raises(UserError, match="gan.inception_weights=PATH"):
        check_quality_config(cfg.gan)
