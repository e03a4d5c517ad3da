"""``viscoin evaluate``: the paper's metrics for a trained ensemble, written to metrics.json/.md."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from viscoin.cli import app
from viscoin.cli.common import ConfigOpt, DataRootOpt, DatasetOpt, DeviceOpt, SetOpt


@app.command("evaluate")
def evaluate_cmd(
    target: Annotated[
        str, typer.Argument(help="VisCoIN run directory or exported .safetensors file.")
    ],
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = None,
    out: Annotated[
        str | None, typer.Option("--out", help="Output folder (default: the run directory).")
    ] = None,
    max_images: Annotated[
        int, typer.Option("--max-images", help="Evaluate on at most N test images (0: all).")
    ] = 0,
    faithfulness_images: Annotated[
        int, typer.Option("--faithfulness-images", help="Images for faithfulness.")
    ] = 1000,
    consistency_concepts: Annotated[
        int,
        typer.Option("--consistency-concepts", help="Most active concepts tested for consistency."),
    ] = 10,
    consistency_images: Annotated[
        int, typer.Option("--consistency-images", help="Images per concept.")
    ] = 200,
    consistency_multiplier: Annotated[
        float,
        typer.Option(
            "--consistency-multiplier",
            help="x⁺ sets φ_k to λ × its strongest map in the test images (the paper: 4; above 1 "
            "the images leave the generator's range and any direction saturates the probe).",
        ),
    ] = 1.0,
    fid: Annotated[
        str, typer.Option("--fid", help="auto (when Inception weights load) | on | off.")
    ] = "auto",
    inception_weights: Annotated[
        str | None,
        typer.Option("--inception-weights", help="Local pt_inception-2015-12-05 weights for FID."),
    ] = None,
    lpips: Annotated[
        str | None, typer.Option("--lpips", help="vgg | none | PATH to VGG-16 weights.")
    ] = None,
    independent_classifier: Annotated[
        str | None,
        typer.Option(
            "--independent-classifier",
            help="A second classifier (run directory or .safetensors) trained on the same data "
            "independently of f (another seed or architecture): it scores the reconstructions too, "
            "which f may accept without their looking right.",
        ),
    ] = None,
    intervention: Annotated[
        str,
        typer.Option(
            "--intervention",
            help="isolated: removing or amplifying a concept changes only that concept (Ω's input "
            "scale from the unmodified maps); literal: the paper code's rescaling of all of them.",
        ),
    ] = "isolated",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
) -> None:
    """Accuracy of f and g, fidelity, MSE/L1/LPIPS, FID, faithfulness, consistency, sparsity and
    (on data with known attributes) attribute alignment.

    Example: viscoin evaluate runs/shapes-viscoin --max-images 500
    """
    from viscoin.data import build_dataset
    from viscoin.errors import UserError
    from viscoin.evaluate.fid import inception_features
    from viscoin.evaluate.suite import EvalOptions, evaluate_model, headline, write_metrics
    from viscoin.models.viscoin import load_viscoin
    from viscoin.train.losses import build_lpips
    from viscoin.utils.device import resolve_device

    if fid not in ("auto", "on", "off"):
        raise UserError(f"--fid must be auto, on or off, not '{fid}'")
    from viscoin.models.viscoin import INTERVENTIONS

    if intervention not in INTERVENTIONS:
        raise UserError(f"--intervention must be isolated or literal, not '{intervention}'")
    if not math.isfinite(consistency_multiplier) or consistency_multiplier <= 0:
        raise UserError(
            f"--consistency-multiplier must be a positive number, not {consistency_multiplier}"
        )
    from viscoin.config import apply_overrides, load_config
    from viscoin.interpret.target import resolve_target

    resolved = resolve_target(target, dataset=dataset, data_root=data_root, out=out)
    cfg = load_config(config) if config else resolved.cfg
    cfg = apply_overrides(cfg, [*(overrides or []), *([f"run.device={device}"] if device else [])])
    model_file, out_dir = resolved.model_file, resolved.out_dir
    dev = resolve_device(cfg.run.device)
    # the weights files given on the command line are read first: a bad one fails at once
    use_fid = fid == "on"
    if fid == "on":
        inception_features(inception_weights, str(dev))  # cached: evaluate_model reuses it
    elif fid == "auto":
        try:
            inception_features(inception_weights, str(dev))
            use_fid = True
        except UserError as exc:
            typer.echo(f"note: FID skipped ({exc})", err=True)
    lpips_model = build_lpips(lpips if lpips is not None else cfg.viscoin.lpips)
    model = load_viscoin(model_file, dev)
    independent = None
    if independent_classifier is not None:
        from viscoin.models.classifier import load_classifier
        from viscoin.train.viscoin import resolve_model_file

        independent_file = resolve_model_file(
            independent_classifier, "best.safetensors", "independent classifier"
        )
        independent = load_classifier(independent_file, dev)
        if independent.num_classes != model.classifier.num_classes:
            raise UserError(
                f"the independent classifier {independent_file} has {independent.num_classes} "
                f"classes, f has {model.classifier.num_classes}: train it on the same dataset."
            )
    test_set = build_dataset(cfg.data, "test", augment=False)
    options = EvalOptions(
        batch_size=batch_size,
        max_images=max_images,
        faithfulness_images=faithfulness_images,
        consistency_concepts=consistency_concepts,
        consistency_images=consistency_images,
        consistency_multiplier=consistency_multiplier,
        fid=use_fid,
        inception_weights=inception_weights,
        lpips=lpips_model,
        independent=independent,
        intervention=intervention,
        seed=cfg.run.seed,
        progress=True,
    )
    if options.lpips is not None:
        options.lpips.to(dev)
    metrics = evaluate_model(model, test_set, dev, options)
    metrics["model"] = str(model_file)
    metrics["dataset"] = cfg.data.name
    if independent is not None:
        metrics["independent_classifier"] = str(independent_file)
    json_path, md_path = write_metrics(metrics, out_dir)
    typer.echo(headline(metrics))
    typer.echo(f"wrote {json_path} and {md_path}")
