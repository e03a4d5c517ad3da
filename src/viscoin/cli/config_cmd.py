"""``viscoin config``: list presets and show a resolved configuration."""

from __future__ import annotations

import typer
import yaml

from viscoin.cli import app
from viscoin.cli.common import ConfigOpt, SetOpt, build_config
from viscoin.config import available_presets

config_app = typer.Typer(
    help="Inspect configuration presets.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(config_app, name="config")


@config_app.command("list")
def list_presets() -> None:
    """List the shipped presets."""
    for name in available_presets():
        typer.echo(name)


@config_app.command("show")
def show(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Print the resolved config (preset + overrides) as YAML.

    Example: viscoin config show --config cub --set viscoin.lr=3e-4
    """
    cfg = build_config(config, overrides)
    typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
