"""Fine-tuning the classifier f on a dataset, and testing it.

Epoch loop with the per-dataset optimiser of METHOD.md §2 (Adam, or SGD with step decay). A
validation part of the train split (``classifier.val_fraction``, per class, seeded by ``run.seed``,
read with the test transform) is held out of training. After each epoch it evaluates on that part
(``split="val"`` in metrics.jsonl), writes ``checkpoints/last.safetensors`` and, when the validation
accuracy improves (ties keep the earlier epoch), a real copy ``checkpoints/best.safetensors``;
``classifier.state.pt`` resumes. The test split is read once, when the last epoch is done: the best
checkpoint's test accuracy (and the last epoch's) is one ``split="test"`` record. With
``val_fraction = 0`` nothing is held out and the best checkpoint is the last epoch's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from viscoin.config import Config
from viscoin.errors import TrainingDiverged, UserError
from viscoin.models.classifier import (
    Classifier,
    build_classifier,
    build_configured_classifier,
    load_classifier,
    parse_arch,
    save_classifier,
)
from viscoin.train.sampling import (
    ResumableBatchSampler,
    SeededDataset,
    step_generator,
    validation_split,
)
from viscoin.utils.checkpoint import (
    checkpoint_step,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
)
from viscoin.utils.runs import MetricsLogger, RunDir

STATE_FILE = "classifier.state.pt"


def check_config(cfg: Config) -> None:
    """The classifier settings that are wrong before any data is read: a :class:`UserError`."""
    c = cfg.classifier
    if not 0.0 <= c.val_fraction < 1.0:
        raise UserError(
            f"classifier.val_fraction must be at least 0 and below 1 (the share of the train split "
            f"held out for validation; 0: none), got {c.val_fraction}"
        )
    if c.epochs < 1:
        raise UserError(f"classifier.epochs must be at least 1, got {c.epochs}")
    parse_arch(c.arch)  # an unknown architecture string, before the run directory is made


def classifier_split(train_set: Any, cfg: Config) -> tuple[Subset, Subset | None]:
    """``train_set`` → (the part trained on, the held-out validation part or None).

    The validation part reads ``train_set.without_augmentation()``: the same images, test
    transform. Both are :class:`Subset` s; their ``indices`` are positions in ``train_set``.
    """
    fraction = cfg.classifier.val_fraction
    train_idx, val_idx = validation_split(train_set.labels, fraction, cfg.run.seed)
    if fraction > 0 and not val_idx:
        raise UserError(
            f"classifier.val_fraction={fraction} holds out no image: every class of the train split "
            "has a single image, which training needs. Set classifier.val_fraction=0."
        )
    val = Subset(train_set.without_augmentation(), val_idx) if val_idx else None
    return Subset(train_set, train_idx), val


def _optimizer(model: Classifier, cfg: Config) -> torch.optim.Optimizer:
    c = cfg.classifier
    if c.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    if c.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
        )
    raise UserError(f"unknown classifier.optimizer '{c.optimizer}'. Use adam or sgd.")


def _epoch_lr(epoch: int, cfg: Config) -> float:
    c = cfg.classifier
    return c.lr * (c.lr_gamma ** (epoch // c.lr_step) if c.lr_step else 1.0)


@torch.no_grad()
def test_classifier(
    model: Classifier, loader: DataLoader, device: torch.device, num_classes: int
) -> dict[str, Any]:
    """Accuracy, mean CE loss, per-class accuracy and the confusion matrix (rows: true class)."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, count = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
        pred = logits.argmax(1)
        confusion += torch.bincount(
            (labels * num_classes + pred).cpu(), minlength=num_classes**2
        ).view(num_classes, num_classes)
        count += labels.numel()
    per_class = confusion.diag().float() / confusion.sum(1).clamp_min(1).float()
    return {
        "accuracy": (confusion.diag().sum() / max(count, 1)).item(),
        "loss": loss_sum / max(count, 1),
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion.tolist(),
        "count": count,
    }


def train_classifier(
    cfg: Config,
    run: RunDir,
    train_set: Dataset,
    test_set: Dataset,
    device: torch.device,
    resume: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    started: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train on ``train_set`` less its validation part, keep the best epoch by validation accuracy,
    then test that checkpoint once.

    Returns the summary: ``epoch`` (epochs done), ``best_epoch``, ``selected_by``
    (``"val_accuracy"``, or ``"last_epoch"`` when ``val_fraction = 0``), ``val_accuracy`` (the best
    epoch's; None without validation), ``train_images``, ``val_images``, ``best`` (its path) and,
    once the last epoch is done, ``test_accuracy`` / ``test_loss`` of the best checkpoint and
    ``last_test_accuracy`` of the last epoch's model. ``stop_after_epochs`` stops early (as an
    interruption would): no test then. ``started`` is called once the run has started (a resume:
    its state and log loaded).
    """
    from tqdm import tqdm

    from viscoin.data import build_loader

    check_config(cfg)
    c = cfg.classifier
    classes = list(train_set.classes)
    fit_set, val_set = classifier_split(train_set, cfg)
    torch.manual_seed(cfg.run.seed)
    model = build_configured_classifier(c, len(classes)).to(device)
    # the forward runs at this resolution (and the layers give maps), before any epoch is spent
    model.feature_shapes(cfg.data.resolution, for_concepts=False)
    optimizer = _optimizer(model, cfg)
    # best_val: the best epoch's validation accuracy (None: no validation, or no epoch yet)
    start_epoch, best_epoch, best_val = 0, 0, None
    best: tuple[dict | None, dict | None] = (None, None)  # the best epoch's weights and metadata
    logger = MetricsLogger(run.metrics)
    logger.enable_tensorboard(run.path / "tensorboard")  # when tensorboard is installed
    batch = min(c.batch_size, len(fit_set))
    steps_per_epoch = len(fit_set) // batch
    if resume:
        state = load_state(run.checkpoints / STATE_FILE)
        if "best_epoch" not in state:
            raise UserError(
                f"{run.checkpoints / STATE_FILE} was written by a version that trained on the whole "
                "train split and chose the best epoch on the test split; it cannot be resumed. "
                "Start a new run."
            )
        if float(state["val_fraction"]) != c.val_fraction:
            raise UserError(
                f"this run holds out classifier.val_fraction={state['val_fraction']} of the train "
                f"split, not {c.val_fraction}; resume it with --set "
                f"classifier.val_fraction={state['val_fraction']}."
            )
        _load(model, optimizer, state, run)
        start_epoch, best_epoch = int(state["epoch"]), int(state["best_epoch"])
        best_val = state["best_val_acc"]
        best = (state.get("best_model"), state.get("best_info"))
        set_rng_state(state["rng"])
        _repair_checkpoints(run, model, classes, start_epoch, best)
        # the test record is written once, after the last epoch: a resumed run writes it anew
        logger.truncate_after(start_epoch * steps_per_epoch, drop_splits=("test",))
        cfg.save(run.config)  # the resumed run's settings, once its state and log have loaded
    if started is not None:
        started()
    val_loader = (
        build_loader(
            cfg.data,
            "val",
            dataset=val_set,
            shuffle=False,
            drop_last=False,
            batch_size=c.batch_size,
        )
        if val_set is not None
        else None
    )
    end_epoch = (
        c.epochs if stop_after_epochs is None else min(c.epochs, start_epoch + stop_after_epochs)
    )
    for epoch in range(start_epoch, end_epoch):
        for group in optimizer.param_groups:
            group["lr"] = _epoch_lr(epoch, cfg)
        sampler = ResumableBatchSampler(len(fit_set), batch, cfg.run.seed, epoch * steps_per_epoch)
        loader = DataLoader(
            SeededDataset(fit_set, cfg.run.seed),
            batch_sampler=sampler,
            num_workers=cfg.data.num_workers,
            pin_memory=device.type == "cuda",
            generator=step_generator(cfg.run.seed, epoch),  # keeps the global RNG stream untouched
        )
        model.train()
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{c.epochs}",
            disable=not progress,
            dynamic_ncols=True,
        )
        losses, correct, seen = [], 0, 0
        t0 = time.time()
        for i, (images, labels) in enumerate(loader):
            if i >= steps_per_epoch:
                break
            images, labels = (
                images.to(device, non_blocking=True),
                labels.to(device, non_blocking=True),
            )
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            # checked every step: the accuracy count below syncs with the device each step anyway
            if not torch.isfinite(loss):
                _diverged(run, epoch * steps_per_epoch + i + 1, f"loss is {loss.item()}", epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            correct += (logits.argmax(1) == labels).sum().item()
            seen += labels.numel()
            bar.update(1)
            if (i + 1) % 20 == 0:
                bar.set_postfix(
                    loss=f"{torch.stack(losses[-20:]).mean().item():.3f}",
                    acc=f"{correct / seen:.3f}",
                )
        bar.close()
        step = (epoch + 1) * steps_per_epoch
        train_loss = torch.stack(losses).mean().item()
        logger.log(
            step,
            {
                "epoch": epoch + 1,
                "loss": train_loss,
                "accuracy": correct / max(seen, 1),
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_time_s": time.time() - t0,
            },
        )
        line = f"epoch {epoch + 1}: train loss {train_loss:.4f}"
        if not all(bool(t.isfinite().all()) for t in model.state_dict().values()):
            _diverged(run, step, "weights are not finite", epoch)
        save_classifier(model, run.checkpoints / "last.safetensors", classes, {"epoch": epoch + 1})
        if val_loader is None:  # no validation: the best checkpoint is the last one
            best_epoch = epoch + 1
            info: dict[str, Any] = {"epoch": best_epoch, "selected_by": "last_epoch"}
        else:
            val = test_classifier(model, val_loader, device, len(classes))
            logger.log(
                step,
                {"epoch": epoch + 1, "loss": val["loss"], "accuracy": val["accuracy"]},
                split="val",
            )
            line += f", val accuracy {val['accuracy']:.4f}"
            if best_val is None or val["accuracy"] > best_val:  # strict: ties keep the earlier
                best_epoch, best_val = epoch + 1, val["accuracy"]
            info = {
                "epoch": best_epoch,
                "selected_by": "val_accuracy",
                "val_accuracy": best_val,
                "val_images": len(val_set),
            }
        if best_epoch == epoch + 1:
            save_classifier(model, run.checkpoints / "best.safetensors", classes, info)
            best = ({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, info)
        # the state file is written last, the commit record of the epoch: it holds every weight
        # the files above hold, so a kill between the writes is repaired on resume
        save_state(
            run.checkpoints / STATE_FILE,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "best_epoch": best_epoch,
                "best_val_acc": best_val,
                "best_model": best[0],
                "best_info": best[1],
                "val_fraction": c.val_fraction,
                "rng": rng_state(),
            },
        )
        if progress:
            print(line)
    final_step = max(end_epoch, start_epoch) * steps_per_epoch
    result: dict[str, Any] = {
        "epoch": max(end_epoch, start_epoch),
        "best_epoch": best_epoch,
        "selected_by": "last_epoch" if val_set is None else "val_accuracy",
        "val_accuracy": best_val,
        "train_images": len(fit_set),
        "val_images": 0 if val_set is None else len(val_set),
        "best": str(run.checkpoints / "best.safetensors"),
    }
    if result["epoch"] >= c.epochs:
        result.update(_final_test(model, run, test_set, cfg, device, best_epoch, result["epoch"]))
        logger.log(
            final_step,
            {
                "epoch": best_epoch,
                "checkpoint": "best",
                "loss": result["test_loss"],
                "accuracy": result["test_accuracy"],
                "last_epoch_accuracy": result["last_test_accuracy"],
            },
            split="test",
        )
        if progress:
            print(summary_line(result))
    logger.close()
    return result


def _load(model: Classifier, optimizer: torch.optim.Optimizer, state: dict, run: RunDir) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(
            f"cannot resume from {run.checkpoints / STATE_FILE}: it does not match this "
            f"configuration's classifier ({str(exc).strip().splitlines()[0][:200]}). Resume with "
            "the run's own config (config.yaml)."
        ) from None


def _repair_checkpoints(
    run: RunDir,
    model: Classifier,
    classes: list[str],
    epoch: int,
    best: tuple[dict | None, dict | None],
) -> None:
    """Rewrite ``last``/``best.safetensors`` from the resume state when they are not the state's
    (a run stopped between an epoch's model files and its state file): the files on disk are
    then those of the epoch training continues from."""
    if checkpoint_step(run.checkpoints / "last.safetensors", "epoch") != epoch:
        save_classifier(model, run.checkpoints / "last.safetensors", classes, {"epoch": epoch})
    weights, info = best
    path = run.checkpoints / "best.safetensors"
    if weights is not None and info is not None and checkpoint_step(path, "epoch") != info["epoch"]:
        best_model = build_classifier(model.arch, len(classes), "none")
        best_model.load_state_dict(weights)
        save_classifier(best_model, path, classes, info)


def _diverged(run: RunDir, step: int, quantity: str, epochs_saved: int) -> None:
    """Stop a diverged run before anything of it is written: the checkpoints of epoch
    ``epochs_saved`` (the last finite one, 0: none) stay as they are."""
    kept = None
    if epochs_saved > 0:
        kept = (
            f"epoch {epochs_saved}, in {run.checkpoints / 'last.safetensors'} and best.safetensors"
        )
    raise TrainingDiverged(
        "classifier training",
        step,
        quantity,
        kept,
        "lower classifier.lr (or resume from the kept checkpoint with a lower lr)",
    )


def _final_test(
    last_model: Classifier,
    run: RunDir,
    test_set: Dataset,
    cfg: Config,
    device: torch.device,
    best_epoch: int,
    last_epoch: int,
) -> dict[str, Any]:
    """The one look at the test split: the best checkpoint as saved, and the last epoch's model."""
    from viscoin.data import build_loader

    loader = build_loader(
        cfg.data, "test", dataset=test_set, shuffle=False, batch_size=cfg.classifier.batch_size
    )
    n = len(test_set.classes)
    best = test_classifier(
        load_classifier(run.checkpoints / "best.safetensors", device), loader, device, n
    )
    last = best if best_epoch == last_epoch else test_classifier(last_model, loader, device, n)
    return {
        "test_accuracy": best["accuracy"],
        "test_loss": best["loss"],
        "last_test_accuracy": last["accuracy"],
        "test_images": best["count"],
    }


def summary_line(result: dict[str, Any]) -> str:
    """One line: which epoch was kept and why, and its test accuracy."""
    if result["selected_by"] == "val_accuracy":
        chosen = (
            f"best epoch {result['best_epoch']} of {result['epoch']} by val accuracy "
            f"{result['val_accuracy']:.4f} ({result['val_images']} held-out train images)"
        )
    else:
        chosen = f"best = the last epoch, {result['best_epoch']} (classifier.val_fraction=0: no validation)"
    if "test_accuracy" not in result:
        return f"{chosen}; not tested yet (training stopped before the last epoch)"
    text = f"{chosen}; its test accuracy {result['test_accuracy']:.4f}"
    if result["best_epoch"] != result["epoch"]:
        text += f" (last epoch's: {result['last_test_accuracy']:.4f})"
    return text


def confusion_figure(confusion: list[list[int]], classes: list[str], path: Path) -> Path:
    """Save the row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from viscoin.utils.io import atomic_path

    matrix = np.asarray(confusion, dtype=float)
    matrix = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    n = len(classes)
    size = min(12, 3 + 0.35 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Classifier confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
