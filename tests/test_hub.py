"""Sharing a trained ensemble: save_pretrained → from_pretrained round trip, the model card,
the Hub path offline, and push_to_hub against a recording stand-in for the Hub's API."""

import json
import shutil

import pytest
import torch

import viscoin
from viscoin.errors import UserError
from viscoin.hub import CARD_FILE, MODEL_FILE


@pytest.fixture
def run_with_metrics(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    metrics = {
        "dataset": "shapes", "acc_f": 0.8125, "acc_g": 0.6875, "fidelity": 0.75,
        "nulls": {"accuracy": 0.1875, "fidelity": 0.1133},
    }  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_save_and_load_pretrained(run_with_metrics, tmp_path):
    folder = viscoin.save_pretrained(run_with_metrics, tmp_path / "shared")
    assert {p.name for p in folder.iterdir()} == {
        MODEL_FILE,
        CARD_FILE,
        "config.yaml",
        "metrics.json",
    }
    # the folder stands alone: the run (and its classifier and generator files) can go
    shutil.rmtree(run_with_metrics.parent / "run")
    loaded = viscoin.from_pretrained(folder, device="cpu")
    original = viscoin.load(tmp_path / "shared" / MODEL_FILE, device="cpu")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = loaded.explain(images), original.explain(images)
    assert torch.equal(a.g_logits, b.g_logits) and torch.equal(a.reconstructions, b.reconstructions)
    card = (folder / CARD_FILE).read_text()
    assert card.startswith("---\nlibrary_name: viscoin")
    assert "| accuracy of g | 0.6875 | 0.1875 |" in card
    assert "| fidelity (g agrees with f) | 0.7500 | 0.1133 |" in card
    assert "VisCoIN ensemble on shapes" in card and "## Settings" in card


def test_the_pretrained_model_is_the_trained_one(trained_run, tmp_path):
    folder = viscoin.save_pretrained(trained_run, tmp_path / "shared", repo_id="me/shapes")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    a = viscoin.from_pretrained(folder, device="cpu").explain(images)
    b = viscoin.load(trained_run, device="cpu").explain(images)
    assert torch.equal(a.f_logits, b.f_logits) and torch.equal(a.relevance, b.relevance)
    assert 'viscoin.from_pretrained("me/shapes")' in (folder / CARD_FILE).read_text()
    assert "Not evaluated" in (folder / CARD_FILE).read_text()  # the run has no metrics.json


def test_bad_names_and_offline_hub(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    with pytest.raises(UserError, match="no viscoin.safetensors"):
        viscoin.from_pretrained(tmp_path)
    with pytest.raises(UserError, match="neither a folder"):
        viscoin.from_pretrained("not/a/hub/name")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set and no copy is cached"):
        viscoin.from_pretrained("someone/viscoin-model", cache_dir=tmp_path / "cache")


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records what would be uploaded."""

    def __init__(self):
        self.calls, self.files = [], {}

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id):
        self.calls.append(("upload_folder", repo_id))
        from pathlib import Path

        self.files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}


def test_push_to_hub_uploads_the_pretrained_folder(run_with_metrics):
    api = RecordingApi()
    url = viscoin.push_to_hub(run_with_metrics, "me/shapes-viscoin", private=True, api=api)
    assert url == "https://huggingface.co/me/shapes-viscoin"
    assert api.calls == [
        ("create_repo", "me/shapes-viscoin", True, True), ("upload_folder", "me/shapes-viscoin")
    ]  # fmt: skip
    assert set(api.files) == {MODEL_FILE, CARD_FILE, "config.yaml", "metrics.json"}
    assert b'viscoin.from_pretrained("me/shapes-viscoin")' in api.files[CARD_FILE]
