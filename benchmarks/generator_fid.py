"""How close a shapes generator's images are to the real shapes images.

Fréchet distances between N generated images (truncation 1) and N real test images: with the
standard Inception-v3 features when ``--inception-weights`` is given (FID), and always in the
feature space of a trained shapes classifier (``fd_classifier``). For scale, the same distance
between two disjoint sets of real images is printed too.

    python benchmarks/generator_fid.py --classifier runs/demo/classifier --n 1000
"""

from __future__ import annotations

import argparse

import torch

from viscoin.config import load_config
from viscoin.data import build_dataset
from viscoin.data.transforms import to_uint8
from viscoin.demo import shipped_generator
from viscoin.evaluate.fid import classifier_features, frechet_distance_of, inception_features
from viscoin.models.classifier import load_classifier
from viscoin.models.stylegan2 import load_generator
from viscoin.train.viscoin import resolve_model_file


def real_batches(split: str, n: int, offset: int, batch: int = 100):
    cfg = load_config("shapes", [f"data.options.n_{split}={n + offset}"])
    data = build_dataset(cfg.data, split, augment=False)
    for start in range(offset, offset + n, batch):
        images = torch.stack([data[i][0] for i in range(start, min(start + batch, offset + n))])
        yield to_uint8(images)


@torch.no_grad()
def fake_batches(G, n: int, batch: int = 100, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), G.z_dim, generator=gen)
        yield to_uint8(G(z, None, noise_mode="const"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generator", default=None, help="default: the shipped shapes generator")
    parser.add_argument(
        "--classifier", required=True, help="a shapes classifier file or run directory"
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--inception-weights", default=None)
    args = parser.parse_args()
    G = load_generator(args.generator or shipped_generator())
    f = load_classifier(resolve_model_file(args.classifier, "best.safetensors", "classifier"))
    features = {"fd_classifier": classifier_features(f)}
    if args.inception_weights:
        features["fid"] = inception_features(args.inception_weights)
    for name, fn in features.items():
        fake = frechet_distance_of(real_batches("test", args.n, 0), fake_batches(G, args.n), fn)
        real = frechet_distance_of(
            real_batches("test", args.n, 0), real_batches("train", args.n, 0), fn
        )
        print(
            f"{name}: generated vs real {fake:.2f}; real vs real (another split) {real:.2f}  (N = {args.n})"
        )


if __name__ == "__main__":
    main()
