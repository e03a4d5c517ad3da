"""``viscoin demo``: the whole pipeline on the built-in shapes dataset, offline, on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from viscoin.cli import app
from viscoin.cli.common import DeviceOpt, QuietOpt, SeedOpt, SetOpt


@app.command("demo")
def demo_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for everything the demo writes.")
    ] = Path("runs/demo"),
    device: DeviceOpt = "auto",
    quick: Annotated[
        bool, typer.Option("--quick", help="A smoke run (tiny data, a few steps).")
    ] = False,
    seed: SeedOpt = 0,
    generator: Annotated[
        Path | None,
        typer.Option("--generator", help="Another shapes generator (default: the shipped one)."),
    ] = None,
    overrides: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Generate the shapes data, train a classifier and VisCoIN, evaluate, write the concept atlas.

    Example: viscoin demo            (about 8 minutes on 2 CPU cores; --quick: under 1)
    """
    from viscoin.demo import run_demo
    from viscoin.evaluate.suite import headline

    result = run_demo(
        out,
        quick=quick,
        device=device or "auto",
        seed=seed if seed is not None else 0,
        generator=generator,
        overrides=overrides,
        echo=typer.echo,
        progress=not quiet,
    )
    typer.echo(headline(result.metrics))
    typer.echo(f"report: {result.report}")
