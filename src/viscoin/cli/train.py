"""``viscoin train classifier|viscoin``, ``viscoin test classifier`` and ``viscoin export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from viscoin.cli import app, test_app, train_app
from viscoin.cli.common import (
    ConfigOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    NameOpt,
    QuietOpt,
    ResumeOpt,
    RunsDirOpt,
    SeedOpt,
    SetOpt,
    start_config,
)
from viscoin.errors import UserError

LayersOpt = Annotated[
    str | None,
    typer.Option(
        "--layers",
        help="Comma-separated module names of f whose outputs Ψ reads (classifier.layers), "
        "e.g. layer2,layer3,layer4; default: the last three stages of known families.",
    ),
]


@train_app.command("classifier")
def train_classifier_cmd(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    name: NameOpt = None,
    runs_dir: RunsDirOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    data_root: DataRootOpt = None,
    dataset: DatasetOpt = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Overrides classifier.epochs.")
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--learning-rate", "--lr", help="Overrides classifier.lr.")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights", help="none | imagenet | PATH to a state dict of the architecture."
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch",
            help="Overrides classifier.arch: resnet18|resnet34|resnet50, torchvision:NAME, timm:NAME.",
        ),
    ] = None,
    layers: LayersOpt = None,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune the classifier f. Example: viscoin train classifier --config cub --data-root data/cub

    Any torchvision or timm classifier: --arch torchvision:efficientnet_b0 (or timm:convnext_tiny,
    with the timm extra installed), weights from a local file with --weights PATH.
    """
    from viscoin.data import build_dataset
    from viscoin.train.classifier import check_config, summary_line, train_classifier
    from viscoin.utils.device import resolve_device, seed_everything
    from viscoin.utils.runs import new_run

    extra = [
        f"classifier.{k}={v}"
        for k, v in (
            ("epochs", epochs),
            ("lr", lr),
            ("weights", weights),
            ("arch", arch),
            ("layers", layers),
        )
        if v is not None
    ]
    cfg, note = start_config(
        config,
        [*(overrides or []), *extra],
        resume=resume,
        default_preset="shapes",
        name=name,
        runs_dir=runs_dir,
        device=device,
        seed=seed,
        data_root=data_root,
        dataset=dataset,
    )
    check_config(cfg)  # before the run directory is made
    dev = resolve_device(cfg.run.device)
    seed_everything(cfg.run.seed)
    run = new_run(
        cfg.run.runs_dir, cfg.run.name, prefix=f"{cfg.data.name}-classifier", resume=resume
    )
    if not resume:  # a resume writes it once its state has loaded (train_classifier)
        cfg.save(run.config)
    train_set, test_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "test")
    typer.echo(
        f"run directory: {run.path}  ({len(train_set)} train / {len(test_set)} test images, device {dev})"
    )
    result = train_classifier(
        cfg,
        run,
        train_set,
        test_set,
        dev,
        resume=resume,
        progress=not quiet,
        started=(lambda: typer.echo(note, err=True)) if note else None,
    )
    typer.echo(
        f"done: {result['epoch']} epochs, {summary_line(result)}; best model: {result['best']}"
    )


@test_app.command("classifier")
def test_classifier_cmd(
    run_or_model: Annotated[
        str, typer.Argument(help="A classifier run directory or a classifier .safetensors file.")
    ],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    dataset: DatasetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the results (default: the run directory)."),
    ] = None,
) -> None:
    """Test accuracy, loss, per-class accuracy and confusion matrix of a trained classifier.

    Example: viscoin test classifier runs/shapes-classifier
    """
    from viscoin.data import build_dataset, build_loader
    from viscoin.models.classifier import load_classifier
    from viscoin.train.classifier import confusion_figure, test_classifier
    from viscoin.train.viscoin import resolve_model_file
    from viscoin.utils.device import resolve_device
    from viscoin.utils.io import atomic_write_text

    path = Path(run_or_model)
    model_file = resolve_model_file(path, "best.safetensors", "classifier")
    run_dir = path if path.is_dir() else model_file.parent.parent
    cfg = _run_config(
        run_dir, config, overrides, device=device, data_root=data_root, dataset=dataset
    )
    dev = resolve_device(cfg.run.device)
    model = load_classifier(model_file, dev)
    test_set = build_dataset(cfg.data, "test")
    if len(test_set.classes) != model.num_classes:
        raise UserError(
            f"{model_file} predicts {model.num_classes} classes but dataset '{cfg.data.name}' has {len(test_set.classes)}."
        )
    loader = build_loader(cfg.data, "test", dataset=test_set, shuffle=False)
    result = test_classifier(model, loader, dev, model.num_classes)
    out = Path(out) if out else run_dir
    figure = confusion_figure(
        result["confusion"], list(test_set.classes), out / "figures" / "confusion.png"
    )
    summary = {"model": str(model_file), "dataset": cfg.data.name, **result}
    atomic_write_text(out / "test-metrics.json", json.dumps(summary, indent=1))
    typer.echo(
        f"test accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} on {result['count']} images"
    )
    worst = sorted(
        range(len(result["per_class_accuracy"])), key=lambda i: result["per_class_accuracy"][i]
    )[:5]
    typer.echo(
        "lowest per-class accuracy: "
        + ", ".join(f"{test_set.classes[i]} {result['per_class_accuracy'][i]:.2f}" for i in worst)
    )
    typer.echo(f"wrote {out / 'test-metrics.json'} and {figure}")


def _run_config(run_dir: Path, config, overrides, **flags):
    """The config saved in a run directory (or the given preset), with overrides applied."""
    from viscoin.cli.common import build_config

    if config is None and (run_dir / "config.yaml").is_file():
        config = str(run_dir / "config.yaml")
    return build_config(config, overrides, **flags)


@train_app.command("viscoin")
def train_viscoin_cmd(
    classifier: Annotated[
        str,
        typer.Option(
            "--classifier",
            help="Classifier .safetensors file or its run directory, or an architecture "
            "(torchvision:NAME, timm:NAME) with its weights in classifier.weights=PATH.",
        ),
    ],
    generator: Annotated[
        str, typer.Option("--generator", help="Generator .safetensors file or its run directory.")
    ],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    name: NameOpt = None,
    runs_dir: RunsDirOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    data_root: DataRootOpt = None,
    dataset: DatasetOpt = None,
    iterations: Annotated[
        int | None, typer.Option("--iterations", help="Overrides viscoin.iterations.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Real images per step (and as many generated)."),
    ] = None,
    layers: LayersOpt = None,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train Ψ, Θ, Ω of VisCoIN against a frozen classifier and generator.

    Example: viscoin train viscoin --config cub --classifier runs/cub-f --generator G.safetensors
    Any torchvision/timm classifier: --classifier timm:convnext_tiny --set classifier.weights=f.pt
    Under torchrun (torchrun --nproc-per-node 8 -m viscoin train viscoin ...) the global batch is kept.
    """
    from viscoin.data import build_dataset
    from viscoin.train.distributed import barrier, broadcast_object, init_distributed, shutdown
    from viscoin.train.viscoin import (
        ViscoinTrainer,
        classifier_file,
        format_summary,
        is_architecture,
        resolve_model_file,
        wrap_classifier,
    )
    from viscoin.utils.device import seed_everything
    from viscoin.utils.runs import RunDir, new_run

    extra = []
    if iterations is not None:
        extra.append(f"viscoin.iterations={iterations}")
    if batch_size is not None:
        extra += [f"viscoin.real_batch={batch_size}", f"viscoin.fake_batch={batch_size}"]
    if layers is not None:
        extra.append(f"classifier.layers={layers}")
    cfg, note = start_config(
        config,
        [*(overrides or []), *extra],
        resume=resume,
        default_preset="shapes",
        name=name,
        runs_dir=runs_dir,
        device=device,
        seed=seed,
        data_root=data_root,
        dataset=dataset,
    )
    named = is_architecture(classifier)
    if named:
        from viscoin.models.classifier import parse_arch

        parse_arch(classifier)
    else:
        f_file = classifier_file(classifier)
    generator_file = resolve_model_file(generator, "generator.safetensors", "generator")
    dist = init_distributed(cfg.run.device)
    try:
        seed_everything(cfg.run.seed)
        run_path = None
        if dist.is_main:
            run = new_run(
                cfg.run.runs_dir, cfg.run.name, prefix=f"{cfg.data.name}-viscoin", resume=resume
            )
            if not resume:  # a resume writes it once its state has loaded (ViscoinTrainer)
                cfg.save(run.config)
            run_path = str(run.path)
        run = RunDir(broadcast_object(run_path, dist))
        train_set, test_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "test")
        if named:  # the architecture and its weights, written into the run as a classifier file
            f_file = run.path / "classifier.safetensors"
            if dist.is_main:
                wrap_classifier(classifier, cfg, list(train_set.classes), f_file)
            barrier(dist)
        trainer = ViscoinTrainer(
            cfg, run, f_file, generator_file, train_set, test_set, dist, resume
        )
        if note and dist.is_main:  # once the resumed state and log have loaded
            typer.echo(note, err=True)
        if dist.is_main:
            step = trainer.compute.options  # viscoin.amp and viscoin.compile resolved
            wait = ": a few minutes of compiling first" if step.compile != "none" else ""
            typer.echo(
                f"run directory: {run.path}  (device {dist.device}, {dist.world} process(es), "
                f"step {step.describe()}{wait})"
            )
        result = trainer.fit(progress=not quiet)
        if dist.is_main:
            typer.echo("done: " + format_summary(result))
            typer.echo(f"model: {run.checkpoints / 'viscoin.safetensors'}")
    finally:
        shutdown(dist)


@app.command("export")
def export_cmd(
    run: Annotated[
        str, typer.Argument(help="A VisCoIN run directory (or its viscoin.safetensors).")
    ],
    out: Annotated[Path, typer.Argument(help="Output .safetensors file.")],
    embed: Annotated[
        bool,
        typer.Option(
            "--embed/--reference", help="Store f and G inside the file (default) or refer to them."
        ),
    ] = True,
) -> None:
    """Write one file holding Ψ, Θ, Ω, the classifier and the generator, loadable with viscoin.load().

    Example: viscoin export runs/shapes-viscoin viscoin-shapes.safetensors
    """
    from viscoin.models.viscoin import export_viscoin
    from viscoin.train.viscoin import resolve_model_file

    source = resolve_model_file(Path(run), "viscoin.safetensors", "VisCoIN model")
    if out.suffix != ".safetensors":
        raise UserError(f"output must end in .safetensors, got {out}")
    export_viscoin(source, out, embed=embed)
    typer.echo(
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, parts {'embedded' if embed else 'referenced'})"
    )


# The original implementation's command name; the output is safetensors, never a pickle.
app.command("to-pickle", help="Same as 'viscoin export' (writes .safetensors: no pickles).")(
    export_cmd
)
