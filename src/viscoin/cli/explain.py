"""``viscoin explain RUN_OR_BUNDLE a.jpg b.png``: explain your own image files.

The files are decoded first (a missing or broken one fails at once, naming it), then the model is
loaded and :func:`viscoin.report.explain.explain_files` writes the reconstructions, amplification
strips and ``explain.html``. No dataset is needed: the class names come from the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from viscoin.cli import app
from viscoin.cli.common import DeviceOpt
from viscoin.cli.interpret import TargetArg, parse_float_list
from viscoin.errors import UserError


@app.command("explain")
def explain_cmd(
    run: TargetArg,
    images: Annotated[
        list[Path],
        typer.Argument(help="Image files (PNG, JPEG, ...) to explain.", show_default=False),
    ],
    top_k: Annotated[
        int, typer.Option("--top-k", help="The k most relevant concepts of each image.")
    ] = 3,
    multipliers: Annotated[
        str, typer.Option("--multipliers", help="λ values; 1 = reconstruction, 0 = removed.")
    ] = "0,1,2",
    device: DeviceOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder (default: RUN/explain, or <bundle>-explain beside a bundle file).",
        ),
    ] = None,
) -> None:
    """Predict with f and g, find each image's relevant concepts, and show them: writes
    <image>-reconstruction.png, <image>-amplify.png and one self-contained explain.html.

    Example: viscoin explain runs/shapes-viscoin bird.jpg photo.png --top-k 3
    """
    from viscoin.interpret.target import resolve_model_file
    from viscoin.models.viscoin import load_viscoin
    from viscoin.report.explain import explain_files, read_image_files
    from viscoin.utils.device import resolve_device

    if top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {top_k}.")
    lambdas = parse_float_list(multipliers, "--multipliers")
    model_file, out_dir = resolve_model_file(run, out)
    pixels = read_image_files(images)  # a bad file fails before the model loads
    model = load_viscoin(model_file, resolve_device(device or "auto"))
    if top_k > model.n_concepts:
        raise UserError(f"--top-k {top_k}: the model has only {model.n_concepts} concepts.")
    name = (
        model_file.parent.parent.name
        if model_file.parent.name == "checkpoints"
        else model_file.stem
    )
    results, page = explain_files(
        model, images, out_dir, top_k, lambdas, model_name=name, pixels=pixels
    )
    for image in results:
        concepts = ", ".join(f"{k} (r {r:.2f})" for k, r, _ in image.concepts)
        typer.echo(
            f"{image.source}: f {image.f_name} {image.f_prob:.2f}, g {image.g_name} "
            f"{image.g_prob:.2f}; concepts {concepts} -> {image.reconstruction}, {image.strip}"
        )
    typer.echo(f"wrote {page}")
