"""``viscoin concepts | amplify | heatmaps | logs | report``: look inside a trained VisCoIN run.

Each command resolves its run (or exported bundle) first, so a bad path fails at once with one
line, then loads the model and the test split and calls :mod:`viscoin.interpret` and
:mod:`viscoin.report`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from viscoin.cli import app
from viscoin.cli.common import DataRootOpt, DatasetOpt, DeviceOpt, QuietOpt
from viscoin.errors import UserError

TargetArg = Annotated[
    str,
    typer.Argument(
        help="A VisCoIN run directory (config.yaml + checkpoints/viscoin.safetensors) or an "
        "exported .safetensors bundle."
    ),
]
SplitOpt = Annotated[str, typer.Option("--split", help="Dataset split to look at.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Images per batch.")]
ImagesOpt = Annotated[
    str | None,
    typer.Option("--images", help="Comma-separated image indices of the split, e.g. 0,4,9."),
]
ConceptsOpt = Annotated[
    str | None, typer.Option("--concepts", help="Explicit concept indices, e.g. 3,17.")
]
TopKOpt = Annotated[
    int | None, typer.Option("--top-k", help="The k most relevant concepts of each image.")
]


def parse_int_list(text: str, option: str) -> list[int]:
    """``"0,4,9"`` or ``"0-3,7"`` → ``[0, 4, 9]`` / ``[0, 1, 2, 3, 7]``."""
    values: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            low, sep, high = part.partition("-")
            if sep and low:
                values.extend(range(int(low), int(high) + 1))
            else:
                values.append(int(part))
    except ValueError:
        raise UserError(f"{option} '{text}' is not a list of integers like 0,4,9.") from None
    if not values:
        raise UserError(f"{option} is empty: give integers like 0,4,9.")
    return values


def parse_float_list(text: str, option: str) -> list[float]:
    """``"0,1,2,4"`` → ``[0.0, 1.0, 2.0, 4.0]``."""
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"{option} '{text}' is not a list of numbers like 0,1,2,4.") from None
    if not values:
        raise UserError(f"{option} is empty: give numbers like 0,1,2,4.")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise UserError(f"{option} must hold finite numbers, got {', '.join(map(str, bad))}.")
    return values


def _prepare(target_path: str, dataset: str | None, data_root: str | None, out, device, split):
    """Resolve the target (cheap checks first), then load the model and the split."""
    from viscoin.interpret.target import (
        check_split_classes,
        load_split,
        load_target_model,
        resolve_target,
    )
    from viscoin.utils.device import resolve_device

    target = resolve_target(target_path, dataset=dataset, data_root=data_root, out=out)
    dev = resolve_device(device or "auto")
    model = load_target_model(target, dev)
    data = load_split(target, split)
    check_split_classes(target, model, data)
    return target, model, data


def _images(data, indices: list[int], split: str):
    import torch

    from viscoin.interpret.target import check_image_indices

    check_image_indices(indices, len(data), split)
    items = [data[i] for i in indices]
    return torch.stack([item[0] for item in items]), [int(item[1]) for item in items]


def _class_names(data, model) -> list[str]:
    classes = getattr(data, "classes", None) or model.classes
    return list(classes or [f"class {c}" for c in range(model.head_weight.shape[0])])


@app.command("concepts")
def concepts_cmd(
    run: TargetArg,
    split: SplitOpt = "test",
    force: Annotated[
        bool, typer.Option("--force", help="Recompute instead of using the cache.")
    ] = False,
    batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="Analyse only the first N images.")
    ] = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: the run directory).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Concept analytics: dead concepts, activation profiles, class importance and entropy.

    Writes RUN/figures/*.png and RUN/concepts.json (+ .npz); cached in RUN/cache/.

    Example: viscoin concepts runs/shapes-viscoin
    """
    from viscoin.interpret.target import target_analytics
    from viscoin.report.plots import save_analytics_figures

    target, model, data = _prepare(run, dataset, data_root, out, device, split)
    analytics, cached = target_analytics(
        target, model, data, split, batch_size, max_images, force, progress=not quiet
    )
    figures = save_analytics_figures(analytics, target.out_dir / "figures")
    summary = analytics.save(target.out_dir / "concepts.json")
    dead = int(analytics.dead.sum())
    typer.echo(
        f"{analytics.n_images} {split} images, {analytics.n_concepts} concepts: "
        f"{analytics.n_concepts - dead} alive, {dead} dead"
        + (" (from cache; --force recomputes)" if cached else "")
    )
    for k in analytics.ordered_concepts(5):
        top = ", ".join(f"{analytics.classes[c]} {v:.2f}" for c, v in analytics.top_classes(k, 3))
        typer.echo(
            f"  concept {k}: importance {analytics.importance[k]:.3f}; classes: {top or '-'}"
        )
    typer.echo(
        f"wrote {summary} (+ .npz) and {len(figures)} figures in {target.out_dir / 'figures'}"
    )


def _concept_tag(values: Iterable[int], prefix: str = "c", most: int = 8) -> str:
    """``c3_7_9`` for the concepts 3, 7, 9 (``none`` when empty; the first ``most`` and the count
    of the rest when there are more)."""
    values = [int(v) for v in values]
    if not values:
        return "none"
    tag = prefix + "_".join(map(str, values[:most]))
    return tag + (f"-and-{len(values) - most}-more" if len(values) > most else "")


@app.command("amplify")
def amplify_cmd(
    run: TargetArg,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Concepts with relevance above this (default 0.2)."),
    ] = None,
    top_k: TopKOpt = None,
    concepts: ConceptsOpt = None,
    images: ImagesOpt = "0,1,2,3",
    multipliers: Annotated[
        str, typer.Option("--multipliers", help="λ values; 1 = reconstruction, 0 = removed.")
    ] = "0,1,2,4",
    mode: Annotated[
        str, typer.Option("--mode", help="each: one row per concept; together: all at once.")
    ] = "each",
    intervention: Annotated[
        str,
        typer.Option(
            "--intervention",
            help="isolated: only the chosen concepts change (Ω's input scale from the unmodified "
            "maps); literal: the scale is recomputed from the modified maps, as the paper's code.",
        ),
    ] = "isolated",
    split: SplitOpt = "test",
    device: DeviceOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the PNGs (default: RUN/amplify).")
    ] = None,
) -> None:
    """Regenerate images with chosen concepts multiplied by λ (Φ' fixed) and save the strips.

    Example: viscoin amplify runs/shapes-viscoin --top-k 3 --images 0,4,9
    """
    from viscoin.interpret.amplify import MODES, concept_strips, save_strips
    from viscoin.interpret.common import model_device
    from viscoin.interpret.relevance import image_relevance, select_concepts
    from viscoin.models.viscoin import INTERVENTIONS

    if sum(x is not None for x in (threshold, top_k, concepts)) > 1:
        raise UserError("give only one of --threshold, --top-k and --concepts.")
    if mode not in MODES:
        raise UserError(f"--mode must be each or together, not '{mode}'.")
    if intervention not in INTERVENTIONS:
        raise UserError(f"--intervention must be isolated or literal, not '{intervention}'.")
    if threshold is not None and threshold >= 1:
        typer.echo(
            f"warning: relevance r_k(x) is at most 1 (the image's most relevant concept), so "
            f"--threshold {threshold:g} selects no concept; use a value in [0, 1) or --top-k.",
            err=True,
        )
    lambdas = parse_float_list(multipliers, "--multipliers")
    indices = parse_int_list(images or "0,1,2,3", "--images")
    explicit = parse_int_list(concepts, "--concepts") if concepts is not None else None
    target, model, data = _prepare(run, dataset, data_root, None, device, split)
    batch, labels = _images(data, indices, split)
    relevance, _ = image_relevance(model, batch.to(model_device(model)))
    selected = select_concepts(relevance.cpu(), threshold=threshold, top_k=top_k, concepts=explicit)
    if explicit is not None:
        rule = "concepts " + ", ".join(str(k) for k in selected[0])
    elif top_k is not None:
        rule = f"top {top_k} by relevance"
    else:
        rule = f"relevance > {0.2 if threshold is None else threshold:g}"
    strips = concept_strips(model, batch, selected, lambdas, mode, indices, intervention)
    classes = _class_names(data, model)
    out_dir = Path(out) if out else target.out_dir / "amplify"
    # the file name says what is in it: the image, the concepts, the mode and the intervention
    names = [
        f"amplify-{split}-{index}-{_concept_tag(k for row in strip.rows for k in row)}-{mode}-"
        f"{intervention}.png"
        for index, strip in zip(indices, strips, strict=True)
    ]
    paths = save_strips(strips, classes, out_dir, [classes[y] for y in labels], rule, names=names)
    for index, strip, path in zip(indices, strips, paths, strict=True):
        shown = ", ".join(str(k) for row in strip.rows for k in row) or "none selected"
        typer.echo(f"image {index}: concepts {shown} -> {path}")


@app.command("heatmaps")
def heatmaps_cmd(
    run: TargetArg,
    images: ImagesOpt = "0,1,2",
    top_k: TopKOpt = None,
    concepts: ConceptsOpt = None,
    split: SplitOpt = "test",
    device: DeviceOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the PNGs (default: RUN/heatmaps).")
    ] = None,
) -> None:
    """Where each concept lives in an image (Grad-CAM of its activation over f's stage maps).

    Example: viscoin heatmaps runs/shapes-viscoin --images 0,1,2 --top-k 3
    """
    import torch

    from viscoin.interpret.common import model_device
    from viscoin.interpret.heatmaps import concept_heatmaps, save_heatmap_figures
    from viscoin.interpret.relevance import image_relevance, select_concepts

    if top_k is not None and concepts is not None:
        raise UserError("give only one of --top-k and --concepts.")
    indices = parse_int_list(images or "0,1,2", "--images")
    explicit = parse_int_list(concepts, "--concepts") if concepts is not None else None
    target, model, data = _prepare(run, dataset, data_root, None, device, split)
    batch, labels = _images(data, indices, split)
    relevance, predicted = image_relevance(model, batch.to(model_device(model)))
    relevance, predicted = relevance.cpu(), predicted.cpu()
    if explicit is None:
        top_k = top_k or 3
    table = torch.tensor(select_concepts(relevance, top_k=top_k, concepts=explicit))
    heat = concept_heatmaps(model, batch, table).cpu()
    classes = _class_names(data, model)
    titles = [
        f"{split} image {i}: true {classes[y]}, g predicts {classes[int(p)]}"
        for i, y, p in zip(indices, labels, predicted, strict=True)
    ]
    out_dir = Path(out) if out else target.out_dir / "heatmaps"
    names = [
        f"heatmaps-{split}-{index}-{_concept_tag(row)}.png"
        for index, row in zip(indices, table.tolist(), strict=True)
    ]
    npz_name = f"heatmaps-{split}-{_concept_tag(indices, prefix='i')}.npz"
    paths = save_heatmap_figures(
        batch, heat, table, out_dir, indices, relevance, titles, names=names, npz_name=npz_name
    )
    for index, row, path in zip(indices, table.tolist(), paths, strict=True):
        typer.echo(f"image {index}: concepts {', '.join(map(str, row))} -> {path}")
    typer.echo(f"raw maps: {out_dir / npz_name}")


@app.command("logs")
def logs_cmd(
    run: Annotated[str, typer.Argument(help="Any run directory with a metrics.jsonl.")],
) -> None:
    """Plot a run's training curves (losses, metrics, learning rate) into RUN/figures/.

    Example: viscoin logs runs/shapes-viscoin
    """
    from viscoin.report.logs import plot_run_logs

    for path in plot_run_logs(run):
        typer.echo(f"wrote {path}")


@app.command("report")
def report_cmd(
    run: TargetArg,
    max_concepts: Annotated[
        int, typer.Option("--max-concepts", help="Concept cards to include (most important first).")
    ] = 16,
    images: Annotated[
        int, typer.Option("--images", help="Top-activating images shown per concept.")
    ] = 6,
    multipliers: Annotated[
        str | None,
        typer.Option(
            "--multipliers",
            help="λ steps of each concept's slider, e.g. 0,1,2,4 (1 = reconstruction, 0 = "
            "removed; default 0,0.5,1,1.5,2,3,4).",
        ),
    ] = None,
    split: SplitOpt = "test",
    force: Annotated[bool, typer.Option("--force", help="Recompute the analytics.")] = False,
    batch_size: BatchOpt = None,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="Analyse only the first N images.")
    ] = None,
    device: DeviceOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: the run directory).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """One self-contained HTML concept atlas: RUN/report.html.

    Example: viscoin report runs/shapes-viscoin --max-concepts 24
    """
    from viscoin.report.html import ATLAS_MULTIPLIERS, write_run_report

    if max_concepts < 1 or images < 1:
        raise UserError("--max-concepts and --images must be at least 1.")
    lambdas = (
        ATLAS_MULTIPLIERS if multipliers is None else parse_float_list(multipliers, "--multipliers")
    )
    target, model, data = _prepare(run, dataset, data_root, out, device, split)
    path, analytics = write_run_report(
        target,
        model,
        data,
        split,
        max_concepts=max_concepts,
        images=images,
        force=force,
        batch_size=batch_size,
        max_images=max_images,
        progress=not quiet,
        multipliers=lambdas,
    )
    shown = min(max_concepts, len(analytics.alive))
    typer.echo(f"wrote {path} ({shown} concept cards, {path.stat().st_size / 2**20:.1f} MiB)")


# The original implementation's command name.
app.command("concept-heatmaps", help="Same as 'viscoin heatmaps'.")(heatmaps_cmd)
