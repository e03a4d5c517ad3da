"""Deterministic, resumable, rank-aware data order and random draws.

Training must resume bit-exactly and give the same result on one process or N: so the order of
images is a pure function of (seed, epoch), each global batch is split evenly across ranks, and
each image's augmentation is seeded by (seed, epoch, index) instead of a shared RNG stream. The
step's other draws (latent codes, Θ's dropout masks, G's noise images) are made for the whole
global batch from a generator seeded by (seed, step, stream); each rank keeps the rows of its
images, so image i of step s sees the same draws whatever the number of processes. The
validation part held out of a training split is likewise a pure function of (seed, labels).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix-style), stable across machines."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def validation_split(
    labels: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Stratified hold-out of a training split → (training indices, validation indices), ascending.

    Each class of ``n`` images gives ``fraction · n`` (rounded half up) to validation, at least one and
    at most ``n - 1`` (a class of one image stays in training). Which ones: the images of the class
    ordered by a splitmix hash of (seed, index) — integer arithmetic only, so the split is the same
    on every machine and every library version, and resuming a run rebuilds it exactly.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    held_out: list[int] = []
    if fraction > 0:
        for members in by_class.values():
            n = len(members)
            count = min(n - 1, max(1, int(fraction * n + 0.5)))
            held_out += sorted(members, key=lambda i: _mix(seed, 0x7A11D, i))[:count]
    held = set(held_out)
    return [i for i in range(len(labels)) if i not in held], sorted(held)


class SeededDataset(Dataset):
    """Wraps a dataset so item ``i`` at epoch ``e`` is augmented with the RNG seeded by (seed, e, i).

    The epoch is encoded in the index the sampler yields (``epoch * len + i``) so that worker
    processes need no shared state.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> Any:
        epoch, index = divmod(int(key), len(self.dataset))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, epoch, index))
            return self.dataset[index]


class ResumableBatchSampler(Sampler[list[int]]):
    """An endless stream of this rank's share of each global batch, starting at ``start_step``.

    Global batch ``s`` is taken from the permutation of epoch ``s // batches_per_epoch`` (seeded by
    (seed, epoch)); rank ``r`` of ``world`` gets the ``r``-th contiguous slice. Indices are encoded
    for :class:`SeededDataset` (``epoch * n + i``).
    """

    def __init__(
        self,
        n: int,
        global_batch: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} is not divisible by {world} processes")
        if n < global_batch:
            raise ValueError(f"dataset of {n} images is smaller than one batch of {global_batch}")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.start_step, self.rank, self.world = start_step, rank, world
        self.per_rank = global_batch // world
        self.batches_per_epoch = n // global_batch

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        epoch, perm = -1, None
        while True:
            e, b = divmod(step, self.batches_per_epoch)
            if e != epoch:
                epoch = e
                gen = torch.Generator().manual_seed(_mix(self.seed, epoch))
                perm = torch.randperm(self.n, generator=gen)
            batch = perm[b * self.global_batch : (b + 1) * self.global_batch]
            mine = batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]
            yield [epoch * self.n + int(i) for i in mine]
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs this for len(loader)
        return 2**62


# independent streams of a step's draws (the latent codes use the plain (seed, step) stream)
DROPOUT_STREAM, RECONSTRUCTION_NOISE_STREAM, SAMPLE_NOISE_STREAM = 1, 2, 3


def step_generator(
    seed: int, step: int, device: torch.device | str = "cpu", stream: int = 0
) -> torch.Generator:
    """A generator seeded by (seed, step[, stream]): a step's draws do not depend on history."""
    key = _mix(seed, 0x5EED, step) if stream == 0 else _mix(seed, 0x5EED, step, stream)
    return torch.Generator(device=device).manual_seed(key)


def dropout_masks(
    n: int, shape: tuple[int, ...], p: float, generator: torch.Generator
) -> torch.Tensor:
    """Inverted-dropout masks (n, *shape): 0 with probability p, else 1/(1 − p), as nn.Dropout."""
    keep = torch.rand((n, *shape), generator=generator, device=generator.device) >= p
    return keep.float() * (1.0 / (1.0 - p) if p < 1 else 0.0)


def noise_images(resolutions: list[int], n: int, generator: torch.Generator) -> list[torch.Tensor]:
    """N(0, 1) noise images (n, 1, r, r), one per resolution (``noise_resolutions()`` of G)."""
    return [
        torch.randn(n, 1, r, r, generator=generator, device=generator.device) for r in resolutions
    ]
