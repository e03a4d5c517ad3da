"""``viscoin explore RUN_OR_BUNDLE``: the local web app over a trained ensemble.

The cheap checks come first (the app extra, the run or bundle, the port), each failing with one
line, then the model and the split load and :mod:`viscoin.app.server` serves the page until
Ctrl-C.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from viscoin.cli import app
from viscoin.cli.common import DataRootOpt, DatasetOpt, DeviceOpt
from viscoin.cli.interpret import TargetArg
from viscoin.errors import UserError


@app.command("explore")
def explore_cmd(
    run: TargetArg,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Dataset split to browse (default: test).")
    ] = None,
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on (0: any free one).")
    ] = 7860,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; another than 127.0.0.1 opens it to the network."
        ),
    ] = "127.0.0.1",
    device: DeviceOpt = None,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Concepts shown with a slider, most relevant first.")
    ] = 5,
    max_images: Annotated[
        int | None,
        typer.Option("--max-images", help="Concept pages analyse only the first N images."),
    ] = None,
) -> None:
    """A local web app: pick a test image or upload one, see f's and g's predictions and its most
    relevant concepts, move one λ slider per concept to regenerate it and watch both predictions.

    Example: viscoin explore runs/demo/viscoin   (then open http://127.0.0.1:7860/)
    """
    from viscoin.app import require_app_extra

    require_app_extra()
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {top_k}.")
    if max_images is not None and max_images < 1:
        raise UserError(f"--max-images must be at least 1, got {max_images}.")
    from viscoin.app.server import (
        allowed_hosts_for,
        bind_socket,
        create_app,
        loopback_warning,
        serve,
        url_of,
    )
    from viscoin.app.state import explore_target, open_explorer
    from viscoin.utils.device import resolve_device

    resolved, model_file = explore_target(run, dataset, data_root)
    sock = bind_socket(host, port)  # a port in use fails before the model loads
    try:
        warning = loopback_warning(host, sock.getsockname()[1])
        if warning:
            typer.echo(warning, err=True)
        explorer = open_explorer(
            resolved, model_file, split, resolve_device(device or "auto"), top_k, max_images,
            explicit_data=dataset is not None or data_root is not None,
            warn=lambda text: typer.echo(text, err=True),
        )  # fmt: skip
        if top_k > explorer.model.n_concepts:
            raise UserError(
                f"--top-k {top_k}: the model has only {explorer.model.n_concepts} concepts."
            )
        shown = (
            f"{explorer.dataset_name} {explorer.split} split, {len(explorer.dataset)} images"
            if explorer.dataset is not None
            else "uploads only"
        )
        typer.echo(f"viscoin explore: {explorer.name} ({shown})")
        url = url_of(sock, host)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it stopped on
            serve(
                create_app(explorer, allowed_hosts_for(host)),
                sock,
                on_started=lambda: typer.echo(f"serving {url}  (Ctrl-C stops)"),
            )
    finally:
        sock.close()
    typer.echo("stopped")
