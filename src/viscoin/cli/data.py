"""``viscoin data``: download a dataset, summarise it, and save a grid of its images."""

from __future__ import annotations

from typing import Annotated

import typer

from viscoin.cli import app
from viscoin.cli.common import ConfigOpt, DataRootOpt, SetOpt, build_config
from viscoin.config import available_presets

data_app = typer.Typer(
    help="Download, inspect and preview datasets.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(data_app, name="data")

NameArg = Annotated[
    str, typer.Argument(help="Dataset: cub, stanford_cars, celeba_hq, funnybirds, folder, shapes.")
]


def _config(name: str, config: str | None, overrides: list[str] | None, data_root: str | None):
    # Without --config, the dataset's own preset (its resolution, options) when there is one.
    preset = config or (name if name in available_presets() else None)
    return build_config(preset, overrides, data_root=data_root, dataset=name).data


@data_app.command()
def download(
    name: NameArg,
    root: Annotated[
        str | None,
        typer.Option("--root", help="Also make DIR a link to the downloaded dataset."),
    ] = None,
) -> None:
    """Download a dataset with kagglehub (cub, stanford_cars, celeba_hq).

    Files go to the kagglehub cache ($KAGGLEHUB_CACHE, default ~/.cache/kagglehub), where the
    datasets are then found without --data-root. Needs: pip install 'viscoin[data]'.
    """
    from viscoin.data.download import download_dataset

    path = download_dataset(name, root)
    typer.echo(f"{name}: ready at {path}")
    if root is not None:
        typer.echo(f"{name}: linked {root} -> {path}")


@data_app.command()
def info(
    name: NameArg,
    data_root: DataRootOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Split sizes, classes, image size and attributes (and which define the class).

    Example: viscoin data info shapes --set data.options.n_train=200
    """
    from viscoin.data import dataset_class
    from viscoin.data.overview import dataset_overview

    cfg = _config(name, config, overrides, data_root)
    for key, value in dataset_overview(cfg).items():
        typer.echo(f"{key:<16} {value}")
    typer.echo("")
    typer.echo(dataset_class(cfg.name).describe())


@data_app.command()
def preview(
    name: NameArg,
    out: Annotated[str, typer.Option("--out", "-o", help="Image file to write (.png/.jpg).")],
    split: Annotated[str, typer.Option("--split", help="train or test.")] = "train",
    n: Annotated[int, typer.Option("--n", help="Number of images in the grid.")] = 16,
    data_root: DataRootOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Save a grid of N images of a split (without augmentation) to --out."""
    from viscoin.data.overview import save_preview

    cfg = _config(name, config, overrides, data_root)
    path = save_preview(cfg, split, n, out)
    typer.echo(f"wrote {path}")
