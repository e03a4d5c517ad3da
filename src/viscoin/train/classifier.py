"""Fine-tuning the classifier f on a dataset, and testing it.

Epoch loop with the per-dataset optimiser of METHOD.md §2 (Adam, or SGD with step decay). After each
epoch it evaluates on the test split, writes ``checkpoints/last.safetensors`` and, when the test
accuracy improves, a real copy ``checkpoints/best.safetensors``; ``classifier.state.pt`` resumes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from viscoin.config import Config
from viscoin.models.classifier import Classifier, build_classifier, save_classifier
from viscoin.train.sampling import ResumableBatchSampler, SeededDataset, step_generator
from viscoin.utils.checkpoint import load_state, rng_state, save_state, set_rng_state
from viscoin.utils.runs import MetricsLogger, RunDir

STATE_FILE = "classifier.state.pt"


def _optimizer(model: Classifier, cfg: Config) -> torch.optim.Optimizer:
    c = cfg.classifier
    if c.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    if c.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
        )
    from viscoin.errors import UserError

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
) -> dict[str, Any]:
    """Train; returns the final summary (best test accuracy, epochs, paths)."""
    from tqdm import tqdm

    from viscoin.data import build_loader

    c = cfg.classifier
    classes = list(train_set.classes)
    torch.manual_seed(cfg.run.seed)
    model = build_classifier(c.arch, len(classes), c.weights).to(device)
    optimizer = _optimizer(model, cfg)
    start_epoch, best_acc = 0, -1.0
    logger = MetricsLogger(run.metrics)
    logger.enable_tensorboard(run.path / "tensorboard")  # when tensorboard is installed
    batch = min(c.batch_size, len(train_set))
    steps_per_epoch = len(train_set) // batch
    if resume:
        state = load_state(run.checkpoints / STATE_FILE)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_acc = int(state["epoch"]), float(state["best_acc"])
        set_rng_state(state["rng"])
        logger.truncate_after(start_epoch * steps_per_epoch)
    test_loader = build_loader(
        cfg.data, "test", dataset=test_set, shuffle=False, batch_size=c.batch_size
    )
    end_epoch = (
        c.epochs if stop_after_epochs is None else min(c.epochs, start_epoch + stop_after_epochs)
    )
    result: dict[str, Any] = {}
    for epoch in range(start_epoch, end_epoch):
        for group in optimizer.param_groups:
            group["lr"] = _epoch_lr(epoch, cfg)
        sampler = ResumableBatchSampler(
            len(train_set), batch, cfg.run.seed, epoch * steps_per_epoch
        )
        loader = DataLoader(
            SeededDataset(train_set, cfg.run.seed),
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
        test = test_classifier(model, test_loader, device, len(classes))
        logger.log(
            step,
            {"epoch": epoch + 1, "loss": test["loss"], "accuracy": test["accuracy"]},
            split="test",
        )
        save_classifier(model, run.checkpoints / "last.safetensors", classes, {"epoch": epoch + 1})
        if test["accuracy"] > best_acc:
            best_acc = test["accuracy"]
            save_classifier(
                model,
                run.checkpoints / "best.safetensors",
                classes,
                {"epoch": epoch + 1, "test_accuracy": best_acc},
            )
        save_state(
            run.checkpoints / STATE_FILE,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "best_acc": best_acc,
                "rng": rng_state(),
            },
        )
        if progress:
            print(
                f"epoch {epoch + 1}: train loss {train_loss:.4f}, test accuracy {test['accuracy']:.4f}"
            )
        result = {
            "epoch": epoch + 1,
            "test_accuracy": test["accuracy"],
            "best_test_accuracy": best_acc,
        }
    logger.close()
    result["best"] = str(run.checkpoints / "best.safetensors")
    return result


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
