"""``viscoin demo``: the whole pipeline on the built-in shapes dataset, on a laptop CPU.

Generates the data, trains a ResNet-18 classifier, trains VisCoIN against the StyleGAN2 generator
shipped with the package (trained on the same shapes), evaluates it and writes the HTML concept
atlas. LPIPS is off (its ImageNet VGG backbone cannot be assumed offline); in its place a perceptual
distance on the classifier's own stage maps (``viscoin.feature_weight``): the reconstruction loss is
MSE + L1 + that distance + the classifier term. Every setting is in the ``demo`` preset
(``viscoin config show --config demo``); ``--quick`` adds :data:`QUICK`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from viscoin.config import Config, load_config
from viscoin.errors import UserError

PRESET = "demo"  # the full demo's settings: src/viscoin/configs/demo.yaml
# Overrides of that preset for the smoke run (`viscoin demo --quick`).
QUICK: list[str] = [
    "data.options.n_train=256",
    "data.options.n_test=128",
    "classifier.epochs=1",
    "classifier.batch_size=32",
    "viscoin.iterations=20",
    "viscoin.warmup=5",
    "viscoin.gamma_start=10",
    "viscoin.checkpoint_every=0",
    "viscoin.log_every=5",
]
GENERATOR_ASSET = "shapes-generator.safetensors"


def shipped_generator() -> Path:
    """Path of the StyleGAN2 generator for the shapes dataset that ships inside the package."""
    path = Path(str(resources.files("viscoin") / "assets" / GENERATOR_ASSET))
    if not path.is_file():
        raise UserError(
            f"the shipped shapes generator is missing ({path}); reinstall viscoin, or train one with "
            "'viscoin train gan --config shapes' and pass it with --generator."
        )
    return path


@dataclass
class DemoResult:
    out: Path
    report: Path | None
    metrics: dict[str, Any]
    seconds: float


def demo_config(quick: bool, device: str, seed: int, extra: list[str] | None = None) -> Config:
    """The demo's configuration: the ``demo`` preset, then :data:`QUICK` for the smoke run, the
    device and seed, and ``extra`` overrides last."""
    overrides = [
        *(QUICK if quick else []),
        f"run.device={device}",
        f"run.seed={seed}",
        *(extra or []),
    ]
    return load_config(PRESET, overrides)


def run_demo(
    out: Path,
    quick: bool = False,
    device: str = "auto",
    seed: int = 0,
    generator: Path | None = None,
    overrides: list[str] | None = None,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> DemoResult:
    """Run every stage into ``out`` (``out/classifier``, ``out/viscoin`` with ``report.html``);
    ``quick``: the smoke run."""
    from viscoin.data import build_dataset
    from viscoin.utils.device import resolve_device, seed_everything

    start = time.time()
    cfg = demo_config(quick, device, seed, overrides)
    dev = resolve_device(cfg.run.device)
    generator = Path(generator) if generator else shipped_generator()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seed_everything(cfg.run.seed)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(
            f"{out} already exists and is not empty. Choose another --out or remove it."
        )

    began = [start]  # when the current stage began

    def stage(i: int, text: str | None) -> None:
        """Close the current stage with its duration; open stage ``i`` (None: the end)."""
        now = time.time()
        if i > 1:
            echo(f"      stage {i - 1} took {now - began[0]:.0f}s")
        began[0] = now
        if text is not None:
            echo(f"[{i}/5] {text}  (at {now - start:.0f}s)")

    stage(1, "generating the shapes dataset")
    train_set, test_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "test")
    echo(
        f"      {len(train_set)} train / {len(test_set)} test images, {len(train_set.classes)} classes, device {dev}"
    )

    stage(2, f"training the classifier ({cfg.classifier.arch}, {cfg.classifier.epochs} epochs)")
    classifier, f_result = train_demo_classifier(cfg, out, train_set, test_set, dev, progress)
    # A second classifier, trained apart from f (the next seed), reads the
    # reconstructions too: VisCoIN is trained so that f accepts them, f' was not.
    independent_cfg = demo_config(quick, device, seed + 1, overrides)
    independent, i_result = train_demo_classifier(
        independent_cfg, out, train_set, test_set, dev, progress, name="classifier-independent"
    )
    echo(
        f"      classifier test accuracy {f_result['test_accuracy']:.4f} "
        f"(independent classifier f': {i_result['test_accuracy']:.4f})"
    )

    stage(
        3,
        f"training VisCoIN ({cfg.viscoin.iterations} iterations, {cfg.viscoin.n_concepts} concepts)",
    )
    v_path = train_demo_viscoin(
        cfg, out, "viscoin", classifier, generator, train_set, test_set, dev, progress
    )

    stage(
        4, "evaluating (accuracy, fidelity, reconstruction, faithfulness, consistency, alignment)"
    )
    model, metrics = evaluate_demo_run(
        v_path, test_set, dev, quick, cfg.run.seed, progress, independent=independent
    )

    stage(5, "writing the HTML concept atlas")
    report = write_demo_report(v_path, model, test_set, quick, progress)
    stage(6, None)
    seconds = time.time() - start
    echo(f"done in {seconds:.0f}s")
    return DemoResult(out, report, metrics, seconds)


def train_demo_classifier(
    cfg: Config,
    out: Path,
    train_set: Any,
    test_set: Any,
    device: torch.device,
    progress: bool,
    name: str = "classifier",
) -> tuple[Path, dict[str, Any]]:
    """Stage 2: a classifier into ``out/name`` → (its best checkpoint, training summary)."""
    from viscoin.train.classifier import train_classifier
    from viscoin.utils.runs import new_run

    cfg.run.runs_dir, cfg.run.name = str(out), name
    run = new_run(out, name, prefix="classifier")
    cfg.save(run.config)
    result = train_classifier(cfg, run, train_set, test_set, device, progress=progress)
    return run.checkpoints / "best.safetensors", result


def train_demo_viscoin(
    cfg: Config,
    out: Path,
    name: str,
    classifier: Path,
    generator: Path,
    train_set: Any,
    test_set: Any,
    device: torch.device,
    progress: bool,
) -> Path:
    """Stage 3: VisCoIN against ``classifier`` and ``generator`` into ``out/name`` → that folder."""
    from viscoin.train.distributed import DistInfo
    from viscoin.train.viscoin import ViscoinTrainer
    from viscoin.utils.runs import new_run

    cfg.run.runs_dir, cfg.run.name = str(out), name
    run = new_run(out, name, prefix="viscoin")
    cfg.save(run.config)
    trainer = ViscoinTrainer(
        cfg, run, classifier, generator, train_set, test_set, DistInfo(0, 1, 0, device)
    )
    trainer.fit(progress=progress)
    return run.path


def evaluate_demo_run(
    run_path: Path,
    test_set: Any,
    device: torch.device,
    quick: bool,
    seed: int,
    progress: bool,
    independent: Path | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Stage 4: the trained model of ``run_path`` evaluated as the demo does (the reconstructions
    also scored by the ``independent`` classifier's checkpoint when given); ``metrics.json``
    written beside it → (model, metrics)."""
    from viscoin.evaluate.suite import evaluate_model, write_metrics
    from viscoin.models.classifier import load_classifier
    from viscoin.models.viscoin import load_viscoin

    model = load_viscoin(run_path / "checkpoints" / "viscoin.safetensors", device)
    options = demo_eval_options(quick, seed, progress)
    if independent is not None:
        options.independent = load_classifier(independent, device)
    metrics = evaluate_model(model, test_set, device, options)
    metrics["dataset"] = "shapes"
    if independent is not None:
        metrics["independent_classifier"] = str(independent)
    write_metrics(metrics, run_path)
    return model, metrics


def demo_eval_options(quick: bool, seed: int, progress: bool = False) -> Any:
    """The evaluation the demo runs (no FID: no Inception weights offline); ``quick``: subsets
    small enough for a smoke run (each number then has a wide interval)."""
    from viscoin.evaluate.suite import EvalOptions

    return EvalOptions(
        batch_size=64,
        faithfulness_images=64 if quick else 500,
        consistency_concepts=3 if quick else 8,
        consistency_images=24 if quick else 120,
        recon_attribute_images=64 if quick else 500,
        fid=False,
        seed=seed,
        progress=progress,
    )


def write_demo_report(
    run_path: Path, model: Any, test_set: Any, quick: bool, progress: bool
) -> Path:
    """The HTML atlas for the demo run (``run_path/report.html``)."""
    from viscoin.interpret.target import resolve_target
    from viscoin.report.html import write_run_report

    target = resolve_target(run_path)
    path, _ = write_run_report(
        target,
        model,
        test_set,
        "test",
        max_concepts=6 if quick else 12,
        images=6,
        progress=progress,
    )
    return path
