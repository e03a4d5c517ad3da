"""Concept analytics over one dataset split (METHOD.md §3): which concepts are alive, how many an
image uses, which classes each concept matters for.

One batched, gradient-free pass in eval mode collects a(x) and r(x) for every image; everything else
is derived from those arrays. Results are cached in ``RUN/cache/`` under a key made from the SHA-256
of the model file and the dataset identity (name, split, root, resolution), never from names alone.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viscoin.interpret.common import evaluating, model_device
from viscoin.interpret.relevance import class_concept_relevance
from viscoin.models.viscoin import Viscoin, file_sha256
from viscoin.utils.io import atomic_write_text, save_npz

CACHE_VERSION = 1
DEAD_EPS = 1e-6
JSON_TOP_IMAGES = 8


@dataclass
class ConceptAnalytics:
    """Per-image arrays of one pass over a split, and the statistics derived from them.

    Per image (N images, K concepts): ``activations`` a(x) (N, K), ``relevance`` r(x) (N, K),
    ``predicted`` argmax g (N,), ``f_predicted`` argmax f (N,), ``labels`` (N,), ``indices`` (N,)
    (positions in the dataset). ``classes``: the C class names.
    """

    activations: np.ndarray
    relevance: np.ndarray
    predicted: np.ndarray
    f_predicted: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    classes: list[str]
    dead_eps: float = DEAD_EPS
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_concept, self.class_counts = class_concept_relevance(
            self.relevance, self.predicted, self.n_classes
        )

    # -- sizes ---------------------------------------------------------------------------------

    @property
    def n_images(self) -> int:
        return int(self.activations.shape[0])

    @property
    def n_concepts(self) -> int:
        return int(self.activations.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    # -- per concept ---------------------------------------------------------------------------

    @property
    def mean_activation(self) -> np.ndarray:
        """Mean of a_k(x) over the images, (K,)."""
        return self.activations.mean(axis=0) if self.n_images else np.zeros(self.n_concepts)

    @property
    def dead(self) -> np.ndarray:
        """(K,) bool: concepts whose mean activation is below ``dead_eps`` (never used)."""
        return self.mean_activation < self.dead_eps

    @property
    def alive(self) -> np.ndarray:
        """Indices of the concepts that are not dead."""
        return np.flatnonzero(~self.dead)

    @property
    def importance(self) -> np.ndarray:
        """(K,) mean over images of max(r_k(x), 0): how much a concept supports the predictions."""
        if not self.n_images:
            return np.zeros(self.n_concepts)
        return np.clip(self.relevance, 0, None).mean(axis=0)

    @property
    def concept_class(self) -> np.ndarray:
        """(K, C): per concept, its positive class importance max(r_{k,c}, 0) normalised to sum 1
        over classes. A concept that supports no class gets a row of zeros."""
        positive = np.clip(self.class_concept.T.astype(np.float64), 0, None)
        totals = positive.sum(axis=1, keepdims=True)
        return np.where(totals > 0, positive / np.where(totals > 0, totals, 1), 0).astype(
            np.float32
        )

    @property
    def class_entropy(self) -> np.ndarray:
        """(K,) entropy (nats) of each concept's class distribution ``concept_class``: 0 for a concept
        of one class, log C for one spread evenly. NaN for a concept that supports no class."""
        dist = self.concept_class.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(dist > 0, -dist * np.log(dist), 0.0)
        entropy = terms.sum(axis=1)
        entropy[dist.sum(axis=1) == 0] = np.nan
        return entropy

    @property
    def max_entropy(self) -> float:
        return math.log(self.n_classes) if self.n_classes > 1 else 0.0

    def ordered_concepts(self, limit: int | None = None) -> list[int]:
        """Alive concepts, most important first (ties: higher mean activation first)."""
        alive = self.alive
        order = np.lexsort((-self.mean_activation[alive], -self.importance[alive]))
        ranked = [int(k) for k in alive[order]]
        return ranked if limit is None else ranked[:limit]

    def top_images(self, concept: int, n: int = 8) -> list[tuple[int, float]]:
        """The ``n`` images where concept k is most active → ``[(dataset index, a_k), ...]``."""
        column = self.activations[:, concept]
        order = np.argsort(-column, kind="stable")[:n]
        return [(int(self.indices[i]), float(column[i])) for i in order]

    def top_classes(self, concept: int, n: int = 5) -> list[tuple[int, float]]:
        """Classes concept k matters most for → ``[(class index, r_{k,c}), ...]`` with r_{k,c} > 0."""
        column = self.class_concept[:, concept]
        order = np.argsort(-column, kind="stable")[:n]
        return [(int(c), float(column[c])) for c in order if column[c] > 0]

    # -- per image -----------------------------------------------------------------------------

    @property
    def activation_profile(self) -> np.ndarray:
        """(N, K): each image's activations sorted in decreasing order (how many concepts it uses)."""
        return -np.sort(-self.activations, axis=1)

    # -- files ---------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly statistics (no per-image arrays); NaN becomes null."""
        profile = self.activation_profile
        has_images = self.n_images > 0
        return {
            "version": CACHE_VERSION,
            "meta": self.meta,
            "n_images": self.n_images,
            "n_concepts": self.n_concepts,
            "classes": list(self.classes),
            "dead_eps": self.dead_eps,
            "dead": [int(k) for k in np.flatnonzero(self.dead)],
            "mean_activation": _list(self.mean_activation),
            "importance": _list(self.importance),
            "class_entropy": _list(self.class_entropy),
            "class_counts": _list(self.class_counts),
            "class_concept": _list(self.class_concept),
            "concept_class": _list(self.concept_class),
            "profile_mean": _list(profile.mean(axis=0) if has_images else profile.sum(axis=0)),
            "ordered_concepts": self.ordered_concepts(),
            "top_images": [
                [i for i, _ in self.top_images(k, JSON_TOP_IMAGES)] for k in range(self.n_concepts)
            ],
        }

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (JSON summary) and ``path`` with suffix ``.npz`` (per-image arrays).

        The arrays are written first, so a JSON file on disk always has its arrays beside it.
        """
        path = Path(path)
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        save_npz(path.with_suffix(".npz"), arrays)
        atomic_write_text(path, json.dumps(self.summary(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ConceptAnalytics:
        """Read what :meth:`save` wrote."""
        path = Path(path)
        summary = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as data:
            arrays = {name: data[name] for name in _ARRAYS}
        return cls(
            **arrays,
            classes=summary["classes"],
            dead_eps=summary["dead_eps"],
            meta=summary.get("meta", {}),
        )


_ARRAYS = ("activations", "relevance", "predicted", "f_predicted", "labels", "indices")


def _list(array: np.ndarray) -> list:
    """Nested lists of Python numbers, NaN as None (JSON has no NaN)."""
    array = np.asarray(array)
    if array.dtype.kind in "iub":
        return array.tolist()
    return np.where(np.isnan(array), None, np.round(array.astype(np.float64), 6)).tolist()


@torch.no_grad()
def compute_concept_analytics(
    model: Viscoin,
    batches: Iterable[Sequence[torch.Tensor]],
    classes: Sequence[str] | None = None,
    max_images: int | None = None,
    dead_eps: float = DEAD_EPS,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> ConceptAnalytics:
    """One pass over ``batches`` of ``(images (B, 3, R, R) in [−1, 1], labels (B,))`` in dataset
    order (an unshuffled loader), with the model in eval mode; at most ``max_images`` images.

    ``classes`` default to the model's class names, else ``class 0``, ``class 1``, ...
    """
    from tqdm import tqdm

    device = model_device(model)
    n_classes = model.head_weight.shape[0]
    classes = list(classes or model.classes or [f"class {c}" for c in range(n_classes)])
    collected: dict[str, list[np.ndarray]] = {name: [] for name in _ARRAYS if name != "indices"}
    seen = 0
    with evaluating(model):
        for images, labels, *_ in tqdm(batches, desc="concepts", disable=not progress):
            if max_images is not None and seen >= max_images:
                break
            if max_images is not None:
                images, labels = images[: max_images - seen], labels[: max_images - seen]
            out = model(images.to(device))
            collected["activations"].append(out.activations.float().cpu().numpy())
            collected["relevance"].append(model.relevance(out).float().cpu().numpy())
            collected["predicted"].append(out.g_logits.argmax(1).cpu().numpy())
            collected["f_predicted"].append(out.f_logits.argmax(1).cpu().numpy())
            collected["labels"].append(torch.as_tensor(labels).cpu().numpy())
            seen += images.shape[0]
    k = model.n_concepts
    empty = {"activations": (0, k), "relevance": (0, k)}
    arrays = {
        name: np.concatenate(parts) if parts else np.zeros(empty.get(name, (0,)))
        for name, parts in collected.items()
    }
    for name in ("predicted", "f_predicted", "labels"):
        arrays[name] = arrays[name].astype(np.int64)
    return ConceptAnalytics(
        **arrays,
        indices=np.arange(seen, dtype=np.int64),
        classes=classes,
        dead_eps=dead_eps,
        meta=dict(meta or {}),
    )


def analytics_cache_key(
    model_file: str | Path,
    dataset: str,
    split: str,
    root: str | Path | None,
    resolution: int,
    max_images: int | None = None,
) -> str:
    """A short hex key identifying (model file contents, dataset, split, root, resolution, limit)."""
    identity = {
        "version": CACHE_VERSION,
        "model_sha256": file_sha256(model_file),
        "dataset": dataset,
        "split": split,
        "root": str(Path(root).expanduser().resolve()) if root else None,
        "resolution": int(resolution),
        "max_images": max_images,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def cached_concept_analytics(
    cache_dir: str | Path,
    key: str,
    compute: Callable[[], ConceptAnalytics],
    force: bool = False,
) -> tuple[ConceptAnalytics, bool]:
    """``cache_dir/concepts-<key>.json`` (+ ``.npz``) if present, else ``compute()`` and store it.

    Returns ``(analytics, from_cache)``. ``force`` recomputes; an unreadable cache entry is
    recomputed too (it is a cache, not a record).
    """
    path = Path(cache_dir) / f"concepts-{key}.json"
    if not force and path.is_file() and path.with_suffix(".npz").is_file():
        try:
            return ConceptAnalytics.load(path), True
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            pass
    analytics = compute()
    analytics.meta.setdefault("cache_key", key)
    analytics.save(path)
    return analytics, False
