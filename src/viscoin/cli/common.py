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


def start_config(
    config: str | None,
    overrides: list[str] | None,
    *,
    resume: bool,
    default_preset: str | None,
    **flags: str | int | None,
) -> tuple[Config, str | None]:
    """The config a training command runs with, and a note to print once the run has started
    (the settings a resume changed; None: none).

    A new run: ``config`` (else ``default_preset``) + overrides + flags, as :func:`build_config`.
    ``--resume``: the run's saved ``config.yaml`` with today's overrides and flags applied (or,
    when ``--config`` is given, that preset with them); a difference in a field outside
    :data:`viscoin.config.RESUME_SAFE_FIELDS` is refused, listing every one; the safe ones are
    accepted and named in the note. Nothing is written here: the trainers save ``config.yaml`` once
    the run has started (a resume whose state does not load leaves it as it was).
    """
    from pathlib import Path

    from viscoin.config import apply_overrides, resume_differences
    from viscoin.errors import UserError
    from viscoin.utils.runs import check_run_name

    today = build_config(config or default_preset, overrides, **flags)
    if not resume:
        return today, None
    if not today.run.name:
        raise UserError("--resume needs the run's --name (and --runs-dir if it is not 'runs').")
    run_dir = Path(today.run.runs_dir) / check_run_name(today.run.name)
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        raise UserError(
            f"cannot resume {run_dir}: it has no config.yaml (it is not a training run, or it "
            "never started). Start it anew without --resume."
        )
    saved = load_config(saved_file)
    if config is not None:
        requested = today
    else:
        requested = apply_overrides(saved, _flag_overrides(overrides, flags))
        if flags.get("data_root") is not None:
            requested.data.root = str(flags["data_root"])
    requested.run.name, requested.run.runs_dir = today.run.name, today.run.runs_dir
    safe, refused = resume_differences(saved, requested)
    if refused:
        listed = "; ".join(
            f"{k}: run has {old!r}, asked {new!r}" for k, (old, new) in refused.items()
        )
        raise UserError(
            f"cannot resume {run_dir} with a different config ({listed}). A resumed run keeps "
            "its config.yaml; drop those flags, or start a new run (another --name)."
        )
    note = None
    if safe:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in safe.items())
        note = f"resuming with changed settings: {listed}"
    return requested, note


def _flag_overrides(overrides: list[str] | None, flags: dict) -> list[str]:
    """``--set`` items + the dedicated flags as ``section.field=value`` (data root apart)."""
    extra = []
    for flag, field in (("device", "run.device"), ("seed", "run.seed"), ("dataset", "data.name")):
        if flags.get(flag) is not None:
            extra.append(f"{field}={flags[flag]}")
    return [*(overrides or []), *extra]
