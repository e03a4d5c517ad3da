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


def open_viscoin_target(
    target: str,
    config: str | None = None,
    overrides: list[str] | None = None,
    out: str | None = None,
    **flags: str | None,
):
    """A VisCoIN run directory or an exported ``.safetensors`` → ``(model_file, cfg, out_dir)``.

    For a run directory the config saved in it is used (``--config`` replaces it) and outputs go
    into the run directory; for a single file, ``--config``/``--dataset`` say which data to use
    and outputs go to ``--out`` or ``./viscoin-outputs/<file stem>``.
    """
    from pathlib import Path

    from viscoin.errors import UserError

    path = Path(target)
    if path.is_dir():
        model_file = path / "checkpoints" / "viscoin.safetensors"
        if not model_file.is_file():
            raise UserError(
                f"{path} has no checkpoints/viscoin.safetensors. Give a VisCoIN run directory or model file."
            )
        if config is None and (path / "config.yaml").is_file():
            config = str(path / "config.yaml")
        out_dir = Path(out) if out else path
    elif path.is_file():
        model_file = path
        out_dir = Path(out) if out else Path("viscoin-outputs") / path.stem
    else:
        raise UserError(
            f"not found: {path}. Give a VisCoIN run directory or an exported .safetensors file."
        )
    cfg = build_config(config, overrides, **flags)
    out_dir.mkdir(parents=True, exist_ok=True)
    return model_file, cfg, out_dir
