"""``viscoin gan convert|sample`` and ``viscoin train gan``: StyleGAN2 generators in and out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from viscoin.cli import app, train_app
from viscoin.cli.common import (
    ConfigOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    NameOpt,
    QuietOpt,
    ResumeOpt,
    RunsDirOpt,
    SeedOpt,
    SetOpt,
    start_config,
)
from viscoin.errors import UserError

if TYPE_CHECKING:
    from viscoin.config import Config
    from viscoin.train.distributed import DistInfo

gan_app = typer.Typer(
    help="StyleGAN2 generators: convert official pickles, sample images.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(gan_app, name="gan")

NOISE_MODES = ("const", "random", "none")


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7,10-11"`` → ``[0, 1, 2, 3, 7, 10, 11]`` (the syntax of the official scripts)."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        elif match := re.fullmatch(r"(\d+)-(\d+)", part):
            low, high = int(match[1]), int(match[2])
            if high < low:
                raise UserError(
                    f"--seeds: range '{part}' runs backwards; write it as {high}-{low}."
                )
            seeds.extend(range(low, high + 1))
        else:
            raise UserError(
                f"--seeds: cannot read '{part}' in '{text}'. Use numbers and ranges, e.g. 0-15 or 1,5,9-12."
            )
    return seeds


@gan_app.command("convert")
def convert(
    network: Annotated[Path, typer.Argument(help="Official StyleGAN2-ADA network pickle (.pkl).")],
    output: Annotated[Path, typer.Argument(help="Where to write the generator (.safetensors).")],
    discriminator: Annotated[
        Path | None,
        typer.Option("--discriminator", help="Also write the discriminator 'D' to this file."),
    ] = None,
) -> None:
    """Convert an official network pickle (its G_ema) to a viscoin generator file, safely.

    The pickle's embedded source code is never executed; only an allow-list of tensor and
    container types is read. Example: viscoin gan convert network-snapshot-025000.pkl G.safetensors
    """
    from viscoin.models.stylegan2.pickle_import import convert_pickle

    G, D = convert_pickle(network, output, discriminator)
    params = sum(p.numel() for p in G.parameters())
    typer.echo(
        f"generator: {G.img_resolution}x{G.img_resolution}, z_dim {G.z_dim}, w_dim {G.w_dim}, "
        f"c_dim {G.c_dim}, num_ws {G.num_ws}, {params:,} parameters -> {output}"
    )
    if D is not None:
        params = sum(p.numel() for p in D.parameters())
        typer.echo(f"discriminator: {params:,} parameters -> {discriminator}")


@gan_app.command("sample")
def sample_images(
    generator: Annotated[Path, typer.Option("--generator", "-g", help="Generator .safetensors.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the images.")],
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds, e.g. 0-15 or 1,5,9.")] = "0-7",
    class_idx: Annotated[
        int | None, typer.Option("--class", help="Class index (conditional generators).")
    ] = None,
    truncation: Annotated[float, typer.Option("--truncation", help="Truncation psi.")] = 1.0,
    noise_mode: Annotated[
        str, typer.Option("--noise-mode", help="const | random | none")
    ] = "const",
    grid: Annotated[bool, typer.Option("--grid", help="Also write grid.png.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Write one image per seed (seedXXXX.png), as the official generate.py does.

    Example: viscoin gan sample -g G.safetensors --seeds 0-15 --truncation 0.7 --out samples --grid
    """
    from viscoin.models.stylegan2 import load_generator, sample
    from viscoin.models.stylegan2.generator import write_samples
    from viscoin.utils.device import resolve_device

    if noise_mode not in NOISE_MODES:
        raise UserError(
            f"--noise-mode must be one of {', '.join(NOISE_MODES)}, not '{noise_mode}'."
        )
    seed_list = parse_seeds(seeds)
    if out.exists() and not out.is_dir():
        raise UserError(
            f"--out {out} is a file; give a folder for the images (it is made if missing)."
        )
    G = load_generator(generator, device=resolve_device(device or "auto"))
    if G.c_dim == 0 and class_idx is not None:
        typer.echo("warning: --class is ignored: this generator is unconditional", err=True)
        class_idx = None
    images = sample(G, seed_list, class_idx=class_idx, truncation=truncation, noise_mode=noise_mode)
    paths = write_samples(images, seed_list, out, grid=grid)
    typer.echo(f"wrote {len(paths)} image(s) to {out}")


@train_app.command("gan")
def train_gan_command(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    name: NameOpt = None,
    runs_dir: RunsDirOpt = None,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    quiet: QuietOpt = False,
    init_from: Annotated[
        str | None,
        typer.Option(
            "--init-from",
            help="Start G, D and G_ema from an official StyleGAN2-ADA .pkl, a generator "
            ".safetensors or a 'train gan' run directory (its architecture replaces the config's).",
        ),
    ] = None,
) -> None:
    """Train a StyleGAN2 generator on a dataset's training split.

    Example: viscoin train gan --config shapes --set gan.kimg=200 --name shapes-gan
    Under torchrun (torchrun --nproc-per-node 8 -m viscoin train gan ...) gan.batch_size is the
    global batch, split over the processes.
    """
    from viscoin.train.augment import check_augment_config
    from viscoin.train.distributed import init_distributed, shutdown
    from viscoin.train.gan_quality import check_quality_config

    cfg, note = start_config(
        config,
        overrides,
        resume=resume,
        default_preset=None,
        name=name,
        runs_dir=runs_dir,
        device=device,
        seed=seed,
        data_root=data_root,
        dataset=dataset,
    )
    check_augment_config(cfg.gan)  # before any dataset or run directory is made
    check_quality_config(cfg.gan)
    if resume and init_from is not None and init_from != cfg.gan.init_from:
        raise UserError(
            f"cannot resume with --init-from {init_from}: the run started from "
            f"{cfg.gan.init_from or 'fresh networks'} and resumes from its own state."
        )
    dist = init_distributed(cfg.run.device)  # alone without torchrun's environment
    try:
        _train_gan(cfg, note, dist, init_from, resume, quiet)
    finally:
        shutdown(dist)


def _train_gan(
    cfg: Config,
    note: str | None,
    dist: DistInfo,
    init_from: str | None,
    resume: bool,
    quiet: bool,
) -> None:
    """``train gan`` once the config is read, in each process (rank 0 writes and reports)."""
    from viscoin.train.distributed import broadcast_object
    from viscoin.train.gan import train_gan
    from viscoin.train.gan_init import (
        apply_init_architecture,
        check_init_resolution,
        load_init_source,
    )
    from viscoin.train.graphs import resolve_cuda_graphs
    from viscoin.utils.runs import RunDir, new_run

    source = None
    if init_from is not None:
        cfg.gan.init_from = init_from
    if cfg.gan.init_from and not resume:  # a resumed run's networks come from its state
        source = load_init_source(cfg.gan.init_from)
        changed = apply_init_architecture(cfg.gan, source)
        check_init_resolution(source, cfg.data.resolution)
        if changed and dist.is_main:
            listed = ", ".join(f"gan.{k}={new}" for k, (_, new) in changed.items())
            typer.echo(f"architecture from {source.path}: {listed}", err=True)
    try:
        from viscoin.data import build_dataset
    except ImportError:
        raise UserError("datasets are not available in this installation (viscoin.data).") from None
    # GANs learn the image distribution itself: no random crops (flips are gan.augment's job).
    train_set = build_dataset(cfg.data, split="train", augment=False)
    run_path = None
    if dist.is_main:
        run = new_run(cfg.run.runs_dir, cfg.run.name, prefix="gan", resume=resume)
        if not resume:  # a resume writes it once its state has loaded (train_gan)
            cfg.save(run.config)
        run_path = str(run.path)
    run = RunDir(broadcast_object(run_path, dist))
    if dist.is_main:
        g = cfg.gan
        graphs = resolve_cuda_graphs(g.cuda_graphs, dist.device, dist.world, g.compile)
        loop = "CUDA graphs" if graphs else "torch.compile" if g.compile else "eager"
        typer.echo(
            f"run directory: {run.path}  ({len(train_set)} images, device {dist.device}, "
            f"{dist.world} process(es), {loop})"
        )
    summary = train_gan(
        cfg,
        run,
        train_set,
        dist.device,
        resume=resume,
        progress=not quiet,
        init=source,
        started=(lambda: typer.echo(note, err=True)) if note else None,
        dist=dist,
    )
    if dist.is_main:
        typer.echo(
            f"trained {summary['steps']} steps ({summary['kimg']:.1f} kimg) in "
            f"{summary['seconds']:.0f}s; loss_G {summary.get('loss_G', float('nan')):.3f}, "
            f"loss_D {summary.get('loss_D', float('nan')):.3f}; generator: {summary['generator']}"
        )
