"""Tiny, seeded parts for VisCoIN training tests: a random ResNet-18, a small StyleGAN2 and images."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from viscoin.config import Config, load_config
from viscoin.models.classifier import Classifier, save_classifier
from viscoin.models.stylegan2 import Generator, save_generator

RES = 32
CLASSES = ["a", "b", "c"]


class TinyImages(Dataset):
    """Random smooth images in [−1, 1] with labels; ``classes`` like the real datasets."""

    classes = CLASSES

    def __init__(self, n: int, seed: int, res: int = RES) -> None:
        gen = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 3, 4, 4, generator=gen) * 2 - 1
        self.images = torch.nn.functional.interpolate(
            low, size=res, mode="bilinear", align_corners=False
        )
        self.labels = torch.randint(len(CLASSES), (n,), generator=gen)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        # a tiny random flip exercises the seeded augmentation path
        image = self.images[i]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, int(self.labels[i])


def make_parts(folder: Path, res: int = RES) -> tuple[Path, Path]:
    """Save a random classifier and a ``res`` px generator; returns their paths.

    The generator's noise strengths are set non-zero (trained networks have them; at 0, as
    initialised, the noise would not reach the images and no test could see it).
    """
    torch.manual_seed(0)
    f = Classifier("resnet18", len(CLASSES))
    classifier_path = save_classifier(f, folder / "f.safetensors", CLASSES)
    G = Generator(
        16, 0, 16, res, 3, mapping_kwargs={"num_layers": 1}, channel_base=8 * res, channel_max=16
    )
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    generator_path = save_generator(G, folder / "G.safetensors")
    return classifier_path, generator_path


def tiny_config(runs_dir: Path, iterations: int = 4, res: int = RES, **viscoin: object) -> Config:
    overrides = [
        f"run.runs_dir={runs_dir}",
        "run.device=cpu",
        f"data.resolution={res}",
        "data.batch_size=8",
        "data.num_workers=0",
        "viscoin.n_concepts=6",
        "viscoin.channels=8",
        "viscoin.lpips=none",
        f"viscoin.iterations={iterations}",
        "viscoin.real_batch=4",
        "viscoin.fake_batch=4",
        "viscoin.warmup=1",
        "viscoin.eval_every=0",
        "viscoin.checkpoint_every=0",
        "viscoin.log_every=1",
        "viscoin.lr=1e-3",
    ]
    overrides += [f"viscoin.{k}={v}" for k, v in viscoin.items()]
    return load_config("shapes", overrides)
