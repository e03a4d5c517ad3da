"""`train classifier`: the validation split held out of the train split, model selection on it, the
test split read once at the end, and exact resume."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import DATA, run_cli
from viscoin.config import load_config
from viscoin.data.shapes import Shapes
from viscoin.errors import UserError
from viscoin.models.classifier import load_classifier
from viscoin.train import classifier as classifier_training
from viscoin.train.classifier import classifier_split, train_classifier
from viscoin.train.classifier import test_classifier as evaluate  # not a test to collect
from viscoin.train.sampling import validation_split
from viscoin.utils.checkpoint import load_checkpoint
from viscoin.utils.runs import RunDir, read_metrics

# ---------------------------------------------------------------------------------------------
# The split itself


def test_validation_split_is_disjoint_stratified_and_sized():
    labels = [i % 7 for i in range(300)] + [3] * 40 + [6]  # unbalanced; class 6 has 43 images
    train, val = validation_split(labels, 0.1, seed=5)
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(len(labels)))
    assert train == sorted(train) and val == sorted(val)
    per_class = Counter(labels)
    held = Counter(labels[i] for i in val)
    # round(0.1 · n) per class: every class is in validation, sized by its own count
    assert held == {c: int(0.1 * n + 0.5) for c, n in per_class.items()}
    assert set(held) == set(per_class)


def test_validation_split_is_a_pure_function_of_seed_and_labels():
    labels = [i % 5 for i in range(200)]
    first = validation_split(labels, 0.2, seed=3)
    assert validation_split(list(labels), 0.2, seed=3) == first
    assert validation_split(labels, 0.2, seed=4)[1] != first[1]
    # pinned: the split is integer arithmetic only, the same on every machine and torch/numpy
    # version (a change here changes every run's training images)
    assert validation_split([0] * 6 + [1] * 6, 0.34, seed=0)[1] == [3, 4, 8, 10]


def test_validation_split_keeps_every_class_when_possible():
    labels = [0, 0, 1, 1, 1, 2]  # 10 % of 2 or 3 rounds to 0; class 2 has a single image
    train, val = validation_split(labels, 0.1, seed=0)
    assert sorted(labels[i] for i in val) == [0, 1]  # one each; the single image stays in training
    assert sorted({labels[i] for i in train}) == [0, 1, 2]  # no class leaves training
    assert validation_split(labels, 0.0, seed=0) == (list(range(6)), [])
    with pytest.raises(ValueError):
        validation_split(labels, 1.0, seed=0)


# ---------------------------------------------------------------------------------------------
# Training against the split


def tiny_config(*overrides: str):
    return load_config(
        "shapes",
        [
            "data.resolution=16",
            "data.num_workers=0",
            "data.options.n_train=80",
            "data.options.n_test=40",
            "classifier.arch=resnet18",
            "classifier.epochs=4",
            "classifier.batch_size=16",
            "classifier.lr=3e-3",
            "classifier.val_fraction=0.25",
            "run.device=cpu",
            *overrides,
        ],
    )


class RecordingShapes(Shapes):
    """Shapes that notes every image it is asked for, with whether it was augmented. The list is
    shared by its :meth:`without_augmentation` copy (a shallow copy)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[tuple[int, bool]] = []

    def __getitem__(self, index: int):
        self.reads.append((int(index), self.augment))
        return super().__getitem__(index)


def datasets(cfg):
    options = cfg.data.options
    train = RecordingShapes(None, "train", cfg.data.resolution, True, n_train=options["n_train"])
    test = Shapes(None, "test", cfg.data.resolution, False, n_test=options["n_test"])
    return train, test


def train(tmp_path, name, cfg, **kwargs):
    run = RunDir(tmp_path / name).create()
    train_set, test_set = datasets(cfg)
    result = train_classifier(
        cfg, run, train_set, test_set, torch.device("cpu"), progress=False, **kwargs
    )
    return run, result, train_set, test_set


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 4-epoch run: (cfg, run, result, train_set, test_set)."""
    cfg = tiny_config()
    run, result, train_set, test_set = train(tmp_path_factory.mktemp("f"), "f", cfg)
    return cfg, run, result, train_set, test_set


def without_times(records):
    return [{k: v for k, v in r.items() if k not in ("time", "epoch_time_s")} for r in records]


def test_training_never_reads_a_validation_image(trained):
    cfg, _, _, train_set, _ = trained
    fit, val = classifier_split(train_set, cfg)
    assert len(fit) + len(val) == 80 and {train_set.labels[i] for i in val.indices} == set(
        range(10)
    )
    augmented = {i for i, aug in train_set.reads if aug}
    plain = {i for i, aug in train_set.reads if not aug}
    assert augmented <= set(fit.indices) and not augmented & set(val.indices)
    # the validation images are read every epoch, all of them, and only with the test transform
    assert plain == set(val.indices)
    assert Counter(i for i, aug in train_set.reads if not aug) == {i: 4 for i in val.indices}


def test_best_checkpoint_is_chosen_on_validation(trained):
    cfg, run, result, train_set, _ = trained
    records = read_metrics(run.metrics)
    val = [r["accuracy"] for r in records if r["split"] == "val"]
    assert len(val) == cfg.classifier.epochs
    best_epoch = val.index(max(val)) + 1  # the earliest of equal accuracies
    _, _, extra = load_checkpoint(run.checkpoints / "best.safetensors", kind="classifier")
    assert extra["epoch"] == best_epoch == result["best_epoch"]
    assert extra["selected_by"] == result["selected_by"] == "val_accuracy"
    assert extra["val_accuracy"] == max(val) == result["val_accuracy"]
    # the file holds that epoch's weights: it scores the recorded accuracy on the held-out images
    _, held_out = classifier_split(train_set, cfg)
    loader = torch.utils.data.DataLoader(held_out, batch_size=16)
    model = load_classifier(run.checkpoints / "best.safetensors")
    assert evaluate(model, loader, torch.device("cpu"), 10)["accuracy"] == max(val)


def test_test_split_is_read_once_after_the_last_epoch(trained):
    cfg, run, result, train_set, test_set = trained
    records = read_metrics(run.metrics)
    tests = [r for r in records if r["split"] == "test"]
    assert len(tests) == 1 and records[-1] is tests[0]
    last_step = max(r["step"] for r in records if r["split"] == "train")
    assert tests[0]["step"] == last_step and tests[0]["epoch"] == result["best_epoch"]
    assert tests[0]["accuracy"] == result["test_accuracy"]
    assert tests[0]["last_epoch_accuracy"] == result["last_test_accuracy"]
    best = load_classifier(run.checkpoints / "best.safetensors")
    loader = torch.utils.data.DataLoader(test_set, batch_size=16)
    scores = evaluate(best, loader, torch.device("cpu"), 10)  # the best checkpoint, not the last
    assert (scores["accuracy"], scores["loss"]) == pytest.approx(
        (tests[0]["accuracy"], tests[0]["loss"]), rel=1e-6
    )
    assert (result["train_images"], result["val_images"]) == tuple(
        len(part) for part in classifier_split(train_set, cfg)
    )
    assert result["test_images"] == len(test_set)


def test_selection_follows_validation_and_keeps_the_earliest_tie(tmp_path, monkeypatch):
    """Scripted validation accuracies (the training is real): 0.2, 0.6, 0.6, 0.4 → epoch 2; the
    test split is evaluated only after the last epoch."""
    script = iter([0.2, 0.6, 0.6, 0.4])
    calls: list[str] = []
    real = classifier_training.test_classifier

    def scripted(model, loader, device, num_classes):
        out = real(model, loader, device, num_classes)
        is_val = isinstance(loader.dataset, torch.utils.data.Subset)
        calls.append("val" if is_val else "test")
        return {**out, "accuracy": next(script)} if is_val else out

    monkeypatch.setattr(classifier_training, "test_classifier", scripted)
    run, result, _, _ = train(tmp_path, "f", tiny_config())
    assert calls == ["val"] * 4 + ["test"] * 2  # the best (epoch 2) and the last (epoch 4) model
    assert result["best_epoch"] == 2 and result["val_accuracy"] == 0.6
    _, _, extra = load_checkpoint(run.checkpoints / "best.safetensors", kind="classifier")
    assert (extra["epoch"], extra["val_accuracy"]) == (2, 0.6)
    best = load_file(run.checkpoints / "best.safetensors")
    last = load_file(run.checkpoints / "last.safetensors")
    assert any(not torch.equal(best[k], last[k]) for k in best)


def test_no_validation_keeps_the_last_epoch(tmp_path):
    cfg = tiny_config("classifier.val_fraction=0", "classifier.epochs=2")
    run, result, train_set, _ = train(tmp_path, "f", cfg)
    records = read_metrics(run.metrics)
    assert not [r for r in records if r["split"] == "val"]
    assert [r["split"] for r in records].count("test") == 1 and records[-1]["split"] == "test"
    assert all(aug for _, aug in train_set.reads)  # nothing read without augmentation
    assert result["selected_by"] == "last_epoch" and result["val_accuracy"] is None
    assert result["best_epoch"] == 2 and result["train_images"] == 80
    assert result["test_accuracy"] == result["last_test_accuracy"]
    best = load_file(run.checkpoints / "best.safetensors")
    last = load_file(run.checkpoints / "last.safetensors")
    assert all(torch.equal(best[k], last[k]) for k in best)
    _, _, extra = load_checkpoint(run.checkpoints / "best.safetensors", kind="classifier")
    assert extra == {"epoch": 2, "selected_by": "last_epoch", "classes": extra["classes"]}
    assert "the last epoch" in classifier_training.summary_line(result)


def test_resume_is_exact(tmp_path, trained):
    """Interrupted after 2 of 4 epochs and resumed: the same log, checkpoints and summary as the
    uninterrupted run, one test record; resuming the finished run again adds none."""
    cfg, full_run, full_result, _, _ = trained
    run, partial, _, _ = train(tmp_path, "f", cfg, stop_after_epochs=2)
    assert "test_accuracy" not in partial and partial["epoch"] == 2
    assert "test" not in {r["split"] for r in read_metrics(run.metrics)}
    for _ in range(2):  # the second one resumes a finished run
        _, result, _, _ = train(tmp_path, "f", cfg, resume=True)
        assert result == {**full_result, "best": str(run.checkpoints / "best.safetensors")}
        assert without_times(read_metrics(run.metrics)) == without_times(
            read_metrics(full_run.metrics)
        )
    for name in ("best.safetensors", "last.safetensors"):
        ours, theirs = load_file(run.checkpoints / name), load_file(full_run.checkpoints / name)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
        assert (
            load_checkpoint(run.checkpoints / name)[2]
            == load_checkpoint(full_run.checkpoints / name)[2]
        )


def test_kill_between_model_files_and_state_resumes_exactly(tmp_path, trained, monkeypatch):
    """Killed after epoch 3's last/best.safetensors but before its state file: resume repairs the
    model files from epoch 2's state and ends as the uninterrupted run."""
    from tests.train.test_viscoin_training import _die_at_state_write
    from viscoin.utils.checkpoint import checkpoint_step

    cfg, full_run, full_result, _, _ = trained
    with monkeypatch.context() as patch:
        _die_at_state_write(patch, classifier_training, call=3)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path, "f", cfg)
    run = RunDir(tmp_path / "f")
    assert checkpoint_step(run.checkpoints / "last.safetensors", "epoch") == 3
    _, result, _, _ = train(tmp_path, "f", cfg, resume=True)
    assert result == {**full_result, "best": str(run.checkpoints / "best.safetensors")}
    assert without_times(read_metrics(run.metrics)) == without_times(read_metrics(full_run.metrics))
    for name in ("best.safetensors", "last.safetensors"):
        ours, theirs = (
            load_checkpoint(run.checkpoints / name),
            load_checkpoint(full_run.checkpoints / name),
        )
        assert (
            all(torch.equal(ours[0][k], theirs[0][k]) for k in theirs[0]) and ours[2] == theirs[2]
        )


def test_resume_repairs_model_files_ahead_of_the_state(tmp_path, monkeypatch):
    """Right after the resume, before any new epoch, last and best are the state's epoch."""
    from tests.train.test_viscoin_training import _die_at_state_write
    from viscoin.utils.checkpoint import checkpoint_step

    cfg = tiny_config("classifier.epochs=3", "classifier.val_fraction=0")
    with monkeypatch.context() as patch:
        _die_at_state_write(patch, classifier_training, call=2)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path, "f", cfg)
    run = RunDir(tmp_path / "f")
    assert checkpoint_step(run.checkpoints / "best.safetensors", "epoch") == 2
    _, result, _, _ = train(tmp_path, "f", cfg, resume=True, stop_after_epochs=0)
    assert result["epoch"] == 1
    for name in ("best.safetensors", "last.safetensors"):
        assert checkpoint_step(run.checkpoints / name, "epoch") == 1
    state = classifier_training.load_state(run.checkpoints / "classifier.state.pt")
    tensors = load_checkpoint(run.checkpoints / "last.safetensors")[0]
    assert all(torch.equal(tensors[k], state["model"][k]) for k in tensors)


def test_resume_refuses_another_val_fraction(tmp_path):
    cfg = tiny_config("classifier.epochs=2")
    train(tmp_path, "f", cfg, stop_after_epochs=1)
    with pytest.raises(UserError, match="val_fraction=0.25"):
        train(tmp_path, "f", tiny_config("classifier.epochs=2", "classifier.val_fraction=0.5"),
              resume=True)  # fmt: skip


@pytest.mark.parametrize("fraction", ["1", "1.5", "-0.1"])
def test_train_classifier_refuses_a_bad_val_fraction(tmp_path, fraction):
    with pytest.raises(UserError, match="val_fraction"):
        train(tmp_path, "f", tiny_config(f"classifier.val_fraction={fraction}"))


# ---------------------------------------------------------------------------------------------
# Through the command line


def test_cli_reports_validation_choice_and_test_accuracy(tmp_path):
    proc = run_cli(
        "train", "classifier", *DATA, "--set", "classifier.epochs=2",
        "--set", "classifier.arch=resnet18", "--runs-dir", str(tmp_path), "--name", "f",
        "--quiet", check=True,
    )  # fmt: skip
    done = proc.stdout.strip().splitlines()[-1]
    labels = Shapes(None, "train", 32, False, n_train=64).labels
    held_out = len(validation_split(labels, 0.1, seed=0)[1])  # the default fraction and seed
    assert done.startswith("done: 2 epochs, best epoch ")
    assert "by val accuracy" in done and f"({held_out} held-out train images)" in done
    assert "its test accuracy" in done and "best model:" in done


@pytest.mark.parametrize("fraction", ["1", "-0.5"])
def test_cli_refuses_a_bad_val_fraction(tmp_path, fraction):
    proc = run_cli(
        "train", "classifier", *DATA, "--set", f"classifier.val_fraction={fraction}",
        "--runs-dir", str(tmp_path), "--name", "f",
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: classifier.val_fraction must be at least 0 and below 1")
    assert not (tmp_path / "f").exists()  # refused before the run directory is made


@pytest.mark.parametrize(
    "arch, options",
    [
        ("torchvision:mobilenet_v3_small", []),
        ("timm:convnext_atto", ["classifier.options.dims=[8, 16, 24, 32]"]),
    ],
)
def test_any_architecture_trains_and_is_saved_by_name(tmp_path, arch, options):
    """classifier.arch names any torchvision or timm model; the file rebuilds it with the
    layers, normalisation and options it was trained with, and starts from a local state dict."""
    if arch.startswith("timm:"):
        pytest.importorskip("timm")
    cfg = tiny_config(
        f"classifier.arch={arch}", "classifier.epochs=1", "classifier.val_fraction=0",
        "data.resolution=32", "classifier.layers=[" + ("features.8" if "mobilenet" in arch else "stages.2") + "]",
        *options,
    )  # fmt: skip
    run, _, _, _ = train(tmp_path, "f", cfg)
    f = load_classifier(run.checkpoints / "best.safetensors")
    assert f.arch == arch and f.num_classes == 10 and len(f.layers) == 1
    assert f.config()["options"] == ({"dims": [8, 16, 24, 32]} if options else {})
    # its weights fine-tune a new run, the head replaced for another class count
    from viscoin.models.classifier import build_classifier, save_classifier

    g = build_classifier(arch, 4, str(run.checkpoints / "best.safetensors"), options=f.options)
    assert g.num_classes == 4
    kept = [k for k in f.backbone.state_dict() if not k.startswith(("classifier.3", "head.fc"))]
    assert all(torch.equal(f.backbone.state_dict()[k], g.backbone.state_dict()[k]) for k in kept)
    save_classifier(g, tmp_path / "g.safetensors")
