"""How learnable the built-in ``shapes`` dataset is: a ResNet-18 trained from scratch on it.

The synthetic birds must be easy for a small classifier (the class-defining parts are visible at
64 px) so that the rest of the pipeline has a good classifier to explain. This trains
torchvision's ResNet-18 (random init) with Adam and prints the test accuracy after each epoch.

    python benchmarks/shapes_classifier.py --epochs 4 --device auto
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

from viscoin.config import DataConfig
from viscoin.data import build_loader
from viscoin.utils.device import resolve_device, seed_everything


def evaluate(model: torch.nn.Module, loader, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            logits = model(images.to(device, non_blocking=True))
            correct += int((logits.argmax(1).cpu() == labels).sum())
            total += len(labels)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    seed_everything(0)
    device = resolve_device(args.device)
    cfg = DataConfig(
        name="shapes",
        resolution=args.resolution,
        batch_size=args.batch_size,
        num_workers=args.workers,
        options={"n_train": args.n_train, "n_test": args.n_test},
    )
    train, test = build_loader(cfg, "train"), build_loader(cfg, "test")
    model = torchvision.models.resnet18(num_classes=train.dataset.num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"device {device}, {len(train.dataset)} train / {len(test.dataset)} test images")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.train()
        for images, labels in train:
            loss = torch.nn.functional.cross_entropy(
                model(images.to(device, non_blocking=True)), labels.to(device)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = evaluate(model, test, device)
        elapsed = time.perf_counter() - start
        print(
            f"epoch {epoch}: loss {loss.item():.3f}  test accuracy {accuracy:.2%}  ({elapsed:.0f} s)"
        )


if __name__ == "__main__":
    main()
