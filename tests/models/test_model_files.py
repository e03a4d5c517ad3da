"""Hand-edited or future model files: the metadata is checked against the tensors (and bounded)
before any module is built, so a wrong file is one error and never a huge allocation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from viscoin.errors import UserError
from viscoin.models.classifier import Classifier, load_classifier, save_classifier
from viscoin.models.stylegan2 import Generator, load_generator, save_generator


def _rewrite(path, config=None, tensors=None, **metadata):
    """Re-save ``path`` with its config / tensors / raw metadata entries replaced."""
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
        weights = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (not a dict)
    if config is not None:
        meta["viscoin.config"] = json.dumps(config(json.loads(meta["viscoin.config"])))
    if tensors is not None:
        weights = tensors(weights)
    meta.update(metadata)
    save_file(weights, str(path), metadata=meta)
    return path


@pytest.fixture
def classifier_file(tmp_path):
    return save_classifier(Classifier("resnet18", 3), tmp_path / "f.safetensors", ["a", "b", "c"])


@pytest.fixture
def generator_file(tmp_path):
    G = Generator(
        16, 0, 16, 16, 3, mapping_kwargs={"num_layers": 1}, channel_base=64, channel_max=16
    )
    return save_generator(G, tmp_path / "G.safetensors")


def _transpose_fc(weights):
    weights["backbone.fc.weight"] = weights["backbone.fc.weight"].t().contiguous()
    return weights


CLASSIFIER_EDITS = [
    (dict(config=lambda c: {**c, "num_classes": 10**12}), r"num_classes=1000000000000 is out of range"),
    (dict(config=lambda c: {**c, "num_classes": 5}),
     r"backbone\.fc\.weight is \(3, 512\), the config needs \(5, 512\)"),
    (dict(config=lambda c: {**c, "dropout": 0.5}), r"config keys dropout are unknown"),
    (dict(tensors=_transpose_fc), r"backbone\.fc\.weight is \(512, 3\), the config needs \(3, 512\)"),
    (dict(tensors=lambda w: {k: v for k, v in w.items() if k != "backbone.fc.bias"}),
     r"missing backbone\.fc\.bias"),
    (dict(**{"viscoin.config": "{arch: resnet18"}), r"'viscoin\.config' metadata is not a JSON object"),
    (dict(**{"viscoin.extra": "[1, 2]"}), r"'viscoin\.extra' metadata is not a JSON object"),
    (dict(**{"viscoin.version": "2"}), r"model format 2, written by a newer viscoin"),
    (dict(**{"viscoin.version": "one"}), r"format version 'one' is not a number"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "message"), CLASSIFIER_EDITS)
def test_edited_classifier_files_are_refused_before_building(classifier_file, edit, message):
    _rewrite(classifier_file, **edit)
    with pytest.raises(UserError, match=message):
        load_classifier(classifier_file)


GENERATOR_EDITS = [
    (lambda c: {**c, "img_resolution": 3}, r"cannot rebuild Generator from its config"),
    (lambda c: {**c, "img_resolution": 2**40}, r"img_resolution=1099511627776 is out of range"),
    (lambda c: {**c, "z_dim": 50_000}, r"mapping\.fc0\.weight is \(16, 16\), the config needs \(16, 50000\)"),
    (lambda c: {**c, "mapping_kwargs": {"num_layers": 10**9}}, r"num_layers=1000000000 is out of range"),
    (lambda c: {**c, "z_dim": "x"}, r"cannot rebuild Generator"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "message"), GENERATOR_EDITS)
def test_edited_generator_files_are_refused_before_building(generator_file, edit, message):
    _rewrite(generator_file, config=edit)
    with pytest.raises(UserError, match=message) as info:
        load_generator(generator_file)
    assert "\n" not in str(info.value)


def test_a_future_file_through_the_cli_is_one_line(generator_file, tmp_path, cli):
    _rewrite(generator_file, **{"viscoin.version": "7"})
    proc = cli(
        "gan", "sample", "-g", str(generator_file), "--out", str(tmp_path / "s"), "--seeds", "0"
    )
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "newer viscoin" in proc.stderr and not (tmp_path / "s").exists()


def test_unedited_files_still_load(classifier_file, generator_file):
    assert load_classifier(classifier_file).num_classes == 3
    assert load_generator(generator_file).z_dim == 16
    torch.testing.assert_close(
        load_classifier(classifier_file).backbone.fc.weight,
        safe_open(str(classifier_file), "pt").get_tensor("backbone.fc.weight"),
    )
