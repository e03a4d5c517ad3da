"""Options shared by several commands (config preset, overrides, run name, device, seed)."""

from __future__ import annotations

from typing import Annotated

import typer

from viscoin.config import Config, load_config

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Preset name (shapes, cub, ...) or path to a YAML config."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config field: section.field=value (repeatable)."),
]
NameOpt = Annotated[str | None, typer.Option("--name", help="Run directory name under runs_dir.")]
RunsDirOpt = Annotated[
    str | None, typer.Option("--runs-dir", help="Parent folder of run directories.")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed.")]
DataRootOpt = Annotated[str | None, typer.Option("--data-root", help="Dataset root folder.")]
DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="Dataset name (overrides data.name, or a run's).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the run in --name from its last checkpoint.")
]


def build_config(
    config: str | None,
    overrides: list[str] | None,
    *,
    name: str | None = None,
    runs_dir: str | None = None,
    device: str | None = None,
    seed: int | None = None,
    data_root: str | None = None,
    dataset: str | None = None,
) -> Config:
    """Preset + ``--set`` overrides + the dedicated flags (which win)."""
    extra = []
    if name is not None:
        extra.append(f"run.name={name}")
    if runs_dir is not None:
        extra.append(f"run.runs_dir={runs_dir}")
    if device is not None:
        extra.append(f"run.device={device}")
    if seed is not None:
        extra.append(f"run.seed={seed}")
    if dataset is not None:
        extra.append(f"data.name={dataset}")
    cfg = load_config(config, [*(overrides or []), *extra])
    if data_root is not None:
        cfg.data.root = data_root  # a path may contain '=' or YAML-special characters
    return cfg
