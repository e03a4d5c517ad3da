"""What an interpretation command works on: a VisCoIN run directory or an exported bundle file.

Resolves the model file, the config (the run's ``config.yaml``, or defaults plus ``--dataset`` and
``--data-root`` for a bundle) and where outputs go, with one clear error for each bad input, before
anything heavy is loaded. Then loads the model, the split's data and the (cached) concept analytics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from viscoin.config import Config, load_config
from viscoin.errors import UserError
from viscoin.interpret.analytics import (
    ConceptAnalytics,
    analytics_cache_key,
    cached_concept_analytics,
    compute_concept_analytics,
)
from viscoin.models.viscoin import Viscoin
from viscoin.utils.runs import RunDir, open_run

MODEL_FILE = "viscoin.safetensors"
BUNDLE_OUTPUTS = "viscoin-outputs"


@dataclass
class Target:
    """A resolved run or bundle. ``out_dir``: where outputs go (the run directory by default)."""

    model_file: Path
    cfg: Config
    out_dir: Path
    run: RunDir | None
    name: str

    @property
    def cache_dir(self) -> Path:
        return self.out_dir / "cache"


def resolve_target(
    target: str | Path,
    dataset: str | None = None,
    data_root: str | None = None,
    out: str | Path | None = None,
) -> Target:
    """A run directory (with ``config.yaml`` and ``checkpoints/viscoin.safetensors``) or a
    ``.safetensors`` bundle (then ``dataset`` names the data; outputs go to ``out`` or
    ``./viscoin-outputs/<stem>``). ``dataset``/``data_root`` override a run's data settings."""
    path = Path(target)
    run: RunDir | None = None
    inside = checkpoint_run(path)
    if path.is_file() and inside is not None:
        run = RunDir(inside)  # a checkpoint inside a run: use the run's config
    if path.is_dir() or (not path.exists() and path.suffix != ".safetensors"):
        run, model_file = _run_model_file(path)
    elif path.is_file():
        if path.suffix != ".safetensors":
            raise UserError(f"{path} is not a .safetensors model file or a run directory.")
        model_file = path
    else:
        raise UserError(f"model file not found: {path}")

    overrides = [] if dataset is None else [f"data.name={dataset}"]
    if run is not None:
        if not run.config.is_file():
            raise UserError(
                f"{run.path} has no config.yaml, so its dataset is unknown. "
                "Give a run directory made by 'viscoin train viscoin'."
            )
        cfg = load_config(run.config, overrides)
        out_dir = Path(out) if out else run.path
    else:
        if dataset is None:
            raise UserError(
                f"{path} is a bundle: say which dataset it explains with --dataset "
                "(and --data-root if the data is not in its default place)."
            )
        cfg = load_config(None, overrides)
        out_dir = Path(out) if out else Path.cwd() / BUNDLE_OUTPUTS / path.stem
    if data_root is not None:
        cfg.data.root = data_root
    name = run.path.name if run is not None else path.stem
    return Target(model_file=model_file, cfg=cfg, out_dir=out_dir, run=run, name=name)


def resolve_model_file(
    target: str | Path, out: str | Path | None = None, folder: str = "explain"
) -> tuple[Path, Path]:
    """The model file of a run directory or a bundle, and where outputs go, with no dataset
    needed: ``out``, else ``RUN/<folder>`` (also for a checkpoint inside a run), else
    ``<bundle stem>-<folder>`` beside a bundle file."""
    path = Path(target)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise UserError(f"{path} is not a .safetensors model file or a run directory.")
        inside = checkpoint_run(path)
        default = inside / folder if inside is not None else path.with_name(f"{path.stem}-{folder}")
        return path, Path(out) if out else default
    if not path.exists() and path.suffix == ".safetensors":
        raise UserError(f"model file not found: {path}")
    run, model_file = _run_model_file(path)
    return model_file, Path(out) if out else run.path / folder


def checkpoint_run(path: Path) -> Path | None:
    """The run directory of a ``RUN/checkpoints/<file>`` inside a run (one with ``config.yaml``),
    else None."""
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / "config.yaml").is_file():
        return run
    return None


def _run_model_file(path: Path) -> tuple[RunDir, Path]:
    """A run directory and its VisCoIN model file (which must exist)."""
    run = open_run(path)
    model_file = run.checkpoints / MODEL_FILE
    if not model_file.is_file():
        raise UserError(
            f"{run.path} has no checkpoints/{MODEL_FILE}. Give a VisCoIN run directory "
            "(made by 'viscoin train viscoin') or an exported .safetensors file."
        )
    return run, model_file


def load_target_model(target: Target, device: Any = "cpu") -> Viscoin:
    """The ensemble of ``target`` on ``device``, eval mode; a bundle's data resolution is taken
    from its generator."""
    from viscoin.models.viscoin import load_viscoin

    model = load_viscoin(target.model_file, device)
    resolution = int(getattr(model.generator, "img_resolution", target.cfg.data.resolution))
    if target.run is None:
        target.cfg.data.resolution = resolution
    elif resolution != target.cfg.data.resolution:
        raise UserError(
            f"{target.model_file} makes {resolution} px images but {target.run.config} says "
            f"data.resolution={target.cfg.data.resolution}. Check that the checkpoint belongs to this run."
        )
    return model


def load_split(target: Target, split: str) -> Any:
    """The dataset split of ``target``, without augmentation."""
    from viscoin.data import build_dataset

    return build_dataset(target.cfg.data, split, augment=False)


def check_split_classes(target: Target, model: Viscoin, dataset: Any) -> None:
    """A :class:`UserError` when ``dataset`` (a split of ``target``'s data) has another number of
    classes than ``model`` predicts."""
    classes = getattr(dataset, "classes", None)
    n_classes = model.head_weight.shape[0]
    if classes is not None and len(classes) != n_classes:
        raise UserError(
            f"{target.model_file} predicts {n_classes} classes but dataset "
            f"'{target.cfg.data.name}' has {len(classes)}. Pass the dataset the model was trained on."
        )


def split_loader(target: Target, split: str, dataset: Any, batch_size: int | None = None) -> Any:
    """An unshuffled loader over ``dataset`` (dataset order is what the analytics indices mean)."""
    from viscoin.data import build_loader

    return build_loader(
        target.cfg.data, split, dataset=dataset, shuffle=False, batch_size=batch_size
    )


def check_image_indices(indices: Sequence[int], n_images: int, split: str = "test") -> list[int]:
    """Image indices checked against the split's size; a :class:`UserError` names a bad one."""
    indices = [int(i) for i in indices]
    if not indices:
        raise UserError("no image index given. Pass e.g. --images 0,4,9.")
    for i in indices:
        if not 0 <= i < n_images:
            raise UserError(
                f"image index {i} is out of range: the {split} split has {n_images} images "
                f"(0..{n_images - 1})."
            )
    return indices


def target_analytics(
    target: Target,
    model: Viscoin,
    dataset: Any,
    split: str = "test",
    batch_size: int | None = None,
    max_images: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> tuple[ConceptAnalytics, bool]:
    """Concept analytics of ``split``, from ``target``'s cache when the model file and data are
    unchanged → ``(analytics, from_cache)``."""
    data = target.cfg.data
    key = analytics_cache_key(
        target.model_file, data.name, split, data.root, data.resolution, max_images
    )
    meta = {
        "model_file": str(target.model_file),
        "dataset": data.name,
        "split": split,
        "root": data.root,
        "resolution": data.resolution,
        "max_images": max_images,
    }

    def compute() -> ConceptAnalytics:
        loader = split_loader(target, split, dataset, batch_size)
        classes = getattr(dataset, "classes", None) or model.classes
        return compute_concept_analytics(
            model, loader, classes, max_images=max_images, progress=progress, meta=meta
        )

    return cached_concept_analytics(target.cache_dir, key, compute, force=force)
