"""Name → dataset registry, dataset roots, and the two entry points the rest of the package uses:
:func:`build_dataset` and :func:`build_loader`.

A dataset module registers its class with ``@register_dataset("name")``. ``build_dataset`` looks
the class up, validates ``cfg.options`` against the class's ``default_options``, finds the root
(``cfg.root``, else ``$VISCOIN_DATA/<name>`` or ``~/.cache/viscoin/data/<name>``, else a kagglehub
download already in its cache) and builds the split.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader

from viscoin.config import DataConfig
from viscoin.data.base import SPLITS, VisionDataset
from viscoin.data.download import download_hint, kagglehub_candidates
from viscoin.errors import UserError

_REGISTRY: dict[str, type[VisionDataset]] = {}
D = TypeVar("D", bound=type[VisionDataset])


def register_dataset(name: str) -> Callable[[D], D]:
    """Class decorator: make a :class:`VisionDataset` subclass buildable as ``data.name=name``."""

    def decorate(cls: D) -> D:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"dataset name '{name}' is already registered by {_REGISTRY[name]}")
        cls.name = name
        # data.options = the constructor's keyword-only parameters; a default's type is the
        # type the option must have.
        cls.default_options = {
            p.name: p.default
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def dataset_class(name: str) -> type[VisionDataset]:
    """The class registered as ``name``; a :class:`UserError` listing the known names otherwise."""
    if name not in _REGISTRY:
        raise UserError(f"unknown dataset '{name}'. Available: {', '.join(available_datasets())}")
    return _REGISTRY[name]


def validate_options(cls: type[VisionDataset], options: dict[str, Any]) -> dict[str, Any]:
    """``cls.default_options`` updated with ``options``; unknown keys and wrong types refused."""
    known = cls.default_options
    listing = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
    resolved = dict(known)
    for key, value in (options or {}).items():
        if key not in known:
            raise UserError(
                f"unknown option '{key}' for dataset '{cls.name}'. Known options: {listing}"
            )
        resolved[key] = _coerce_option(cls.name, key, value, known[key])
    return resolved


def _coerce_option(dataset: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if kind is float and isinstance(value, str):  # YAML reads "1e-3" as a string
        try:
            value, ok = float(value), True
        except ValueError:
            ok = False
    if not ok:
        raise UserError(
            f"option '{key}' of dataset '{dataset}' must be a {kind.__name__}, got {value!r}"
        )
    return value


def data_home() -> Path:
    """Parent of the default dataset roots: ``$VISCOIN_DATA`` or ``~/.cache/viscoin/data``."""
    env = os.environ.get("VISCOIN_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "viscoin" / "data"


def default_root(name: str) -> Path:
    """Where dataset ``name`` is looked for when ``data.root`` is not set."""
    return data_home() / name


def find_layout_root(cls: type[VisionDataset], base: Path, depth: int = 2) -> Path | None:
    """The first folder at or below ``base`` (``depth`` levels) that ``cls.locate`` accepts."""
    level = [base] if base.is_dir() else []
    for _ in range(depth + 1):
        following = []
        for folder in level:
            try:
                return cls.locate(folder)
            except UserError:
                pass
            try:
                following.extend(sorted(p for p in folder.iterdir() if p.is_dir()))
            except OSError:
                continue
        level = following
    return None


def resolve_root(name: str, root: str | Path | None) -> Path:
    """The folder the dataset class reads (its ``locate`` may step into a subfolder).

    With ``root`` given, it must hold the dataset. Without, the default root is tried, then a
    kagglehub download of the dataset already in the kagglehub cache.
    """
    cls = dataset_class(name)

    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise UserError(
                f"{name}: data root {path} is not a folder. Expected layout: {cls.layout}"
            )
        # find_layout_root also looks one or two folders down (an extracted archive's wrapper
        # folder); if nothing matches, locate() raises naming the first missing file.
        return find_layout_root(cls, path) or cls.locate(path)
    default = default_root(name)
    for candidate in [default, *kagglehub_candidates(name)]:
        found = find_layout_root(cls, candidate)
        if found is not None:
            return found
    if default.is_dir():
        return cls.locate(default)  # raises, naming the missing file
    raise UserError(
        f"{name}: dataset not found at {default} (default root: $VISCOIN_DATA/{name} or "
        f"~/.cache/viscoin/data/{name}). Expected layout: {cls.layout}. {download_hint(name)}"
    )


def build_dataset(cfg: DataConfig, split: str, augment: bool | None = None) -> VisionDataset:
    """Build one split of the dataset ``cfg.name``.

    Args:
        cfg: the ``data`` section of the config (name, root, resolution, options).
        split: "train" or "test".
        augment: random crops/flips; default ``split == "train"``.

    Returns:
        A dataset of ``(image, label)``: image float32 ``(3, R, R)`` in [-1, 1],
        R = ``cfg.resolution``, label an int in [0, num_classes).
    """
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'. Use one of: {', '.join(SPLITS)}")
    if cfg.resolution < 8:
        raise UserError(f"data.resolution must be at least 8 pixels, got {cfg.resolution}")
    cls = dataset_class(cfg.name)
    options = validate_options(cls, cfg.options)
    root = resolve_root(cfg.name, cfg.root) if cls.needs_root else None
    augment = split == "train" if augment is None else augment
    return cls(root, split, cfg.resolution, augment, **options)


def build_loader(
    cfg: DataConfig,
    split: str,
    *,
    shuffle: bool | None = None,
    batch_size: int | None = None,
    drop_last: bool | None = None,
    augment: bool | None = None,
    dataset: VisionDataset | None = None,
) -> DataLoader:
    """A DataLoader over ``build_dataset(cfg, split, augment)`` (or over ``dataset`` if given).

    ``shuffle`` and ``drop_last`` default to ``split == "train"``; ``batch_size`` to
    ``cfg.batch_size``. Workers: ``cfg.num_workers``, kept alive between epochs; memory is pinned
    when CUDA is present. Batches: images ``(B, 3, R, R)`` float32, labels ``(B,)`` int64.
    """
    dataset = dataset if dataset is not None else build_dataset(cfg, split, augment)
    is_train = split == "train"
    workers = max(0, int(cfg.num_workers))
    return DataLoader(
        dataset,
        batch_size=batch_size or cfg.batch_size,
        shuffle=is_train if shuffle is None else shuffle,
        drop_last=is_train if drop_last is None else drop_last,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
