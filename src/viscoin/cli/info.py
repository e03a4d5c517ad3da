"""``viscoin info``: versions, devices, optional parts and which pretrained weights are offline."""

from __future__ import annotations

import typer

from viscoin.cli import app


@app.command()
def info() -> None:
    """Show versions, devices, installed extras and which pretrained weights are available offline."""
    from viscoin.utils.environment import environment_report

    for section, rows in environment_report().items():
        typer.echo(f"{section}:")
        for key, value in rows.items():
            typer.echo(f"  {key:<28} {value}")
