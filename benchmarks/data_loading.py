"""Data-loader throughput (images/s): file datasets on generated JPEGs, and the synthetic shapes.

Writes CUB-sized JPEGs (500×375) into a temporary folder laid out as ``folder`` and as CUB, then
times full passes of :func:`viscoin.data.build_loader` at 256 px with 0 and 2 workers, for the
training (RandomResizedCrop + flip) and test (Resize + CenterCrop) transforms. The first pass of
each loader warms up (worker start, page cache) and is not counted.

    python benchmarks/data_loading.py --images 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from viscoin.config import DataConfig
from viscoin.data import build_loader


def write_jpegs(root: Path, count: int, classes: int = 8) -> list[str]:
    """``root/<class>/<i>.jpg`` photo-sized JPEGs; returns the relative paths."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:375, 0:500]
    paths = []
    for i in range(count):
        base = rng.uniform(0, 255, 3)
        pixels = base + 0.3 * xs[..., None] + 0.2 * ys[..., None] + rng.normal(0, 12, (375, 500, 3))
        rel = f"{i % classes:03d}.class/{i:05d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels % 256).astype(np.uint8)).save(root / rel, quality=90)
        paths.append(rel)
    return paths


def write_cub_tables(base: Path, paths: list[str]) -> None:
    """The CUB_200_2011 text files over images already in ``base/images``."""
    rows = list(enumerate(paths, 1))
    tables = {
        "images.txt": [f"{i} {p}" for i, p in rows],
        "image_class_labels.txt": [f"{i} {int(p[:3]) + 1}" for i, p in rows],
        "train_test_split.txt": [f"{i} {i % 2}" for i, _ in rows],
        "bounding_boxes.txt": [f"{i} 50.0 40.0 300.0 250.0" for i, _ in rows],
        "classes.txt": [f"{c + 1} {c:03d}.class" for c in range(8)],
    }
    for name, lines in tables.items():
        (base / name).write_text("\n".join(lines) + "\n")


def throughput(cfg: DataConfig, split: str, augment: bool, passes: int = 2) -> tuple[float, float]:
    """Best images/s over the passes after the first: (wall clock, per CPU second of this process).

    The second number is only meaningful without workers; it does not move when other programs
    share the cores, the first does.
    """
    loader = build_loader(cfg, split, augment=augment, shuffle=True, drop_last=False)
    wall, cpu = [], []
    for _ in range(passes):
        start, start_cpu, count = time.perf_counter(), time.process_time(), 0
        for images, _ in loader:
            count += len(images)
        wall.append(count / (time.perf_counter() - start))
        cpu.append(count / max(time.process_time() - start_cpu, 1e-9))
    return max(wall[1:]), max(cpu[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="JPEGs to generate")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread per loader process, as in training

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "folder"
        paths = write_jpegs(folder, args.images)
        cub = Path(tmp) / "cub" / "CUB_200_2011"
        (cub).mkdir(parents=True)
        (cub / "images").symlink_to(folder, target_is_directory=True)
        write_cub_tables(cub, paths)
        cases = [
            ("folder", str(folder), {"test_fraction": 0.5}),
            ("cub", str(cub.parent), {}),
            ("cub", str(cub.parent), {"crop_bbox": True}),
        ]
        for workers in (0, 2):
            for name, root, options in cases:
                for augment, split in ((True, "train"), (False, "test")):
                    cfg = DataConfig(
                        name=name,
                        root=root,
                        resolution=args.resolution,
                        batch_size=args.batch_size,
                        num_workers=workers,
                        options=options,
                    )
                    label = name + (" crop_bbox" if options.get("crop_bbox") else "")
                    rate, per_cpu = throughput(cfg, split, augment)
                    transform = "train" if augment else "test"
                    rows.append((label, args.resolution, transform, workers, rate, per_cpu))
                    print(
                        f"{label} {args.resolution} {transform} {workers}: {rate:.0f}/s", flush=True
                    )
    for workers in (0, 2):
        for resolution in (64, args.resolution):
            cfg = DataConfig(
                name="shapes",
                resolution=resolution,
                batch_size=args.batch_size,
                num_workers=workers,
                options={"n_train": 2000, "n_test": 2000},
            )
            rate, per_cpu = throughput(cfg, "train", True)
            rows.append(("shapes", resolution, "train", workers, rate, per_cpu))
            print(f"shapes {resolution} train {workers}: {rate:.0f}/s", flush=True)

    print("\n| dataset | px | transform | workers | images/s (wall) | images per CPU-second |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, resolution, transform, workers, rate, per_cpu in rows:
        cpu_text = f"{per_cpu:.0f}" if workers == 0 else "–"
        print(f"| {label} | {resolution} | {transform} | {workers} | {rate:.0f} | {cpu_text} |")


if __name__ == "__main__":
    main()
