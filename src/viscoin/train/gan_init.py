"""Transfer learning for ``viscoin train gan --init-from``: G, D and G_ema (with the mapping's
``w_avg``) start from trained networks instead of a random initialisation.

Sources: an official StyleGAN2-ADA ``network-snapshot-*.pkl`` (read by the restricted unpickler of
:mod:`viscoin.models.stylegan2.pickle_import`, which never runs the file's code), a viscoin
``generator`` safetensors file (with ``discriminator.safetensors`` beside it when there is one,
else D starts fresh), or a ``viscoin train gan`` run directory. The architecture is the source's:
:func:`apply_init_architecture` writes it into the ``gan`` config so the saved ``config.yaml``
describes the networks actually trained. Optimisers and the step counter start fresh.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path

from viscoin.config import GanConfig
from viscoin.errors import UserError
from viscoin.models.stylegan2 import Discriminator, Generator, load_discriminator, load_generator
from viscoin.models.stylegan2.discriminator import DiscriminatorEpilogue
from viscoin.models.stylegan2.mapping import MappingNetwork
from viscoin.models.stylegan2.pickle_import import (
    check_finite,
    discriminator_from_pickle,
    generator_from_pickle,
    read_network_pickle,
)
from viscoin.models.stylegan2.synthesis import SynthesisNetwork
from viscoin.utils.checkpoint import load_state

# The file names of a `train gan` run (viscoin.train.gan writes them under checkpoints/).
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
STATE_FILE = "gan-training.state.pt"


@dataclass
class InitSource:
    """Trained networks to start from; ``D`` None: only a generator was given (D starts fresh)."""

    path: Path
    G: Generator
    G_ema: Generator
    D: Discriminator | None

    @property
    def resolution(self) -> int:
        return self.G_ema.img_resolution


def _from_pickle(path: Path) -> InitSource:
    data = read_network_pickle(path)
    G_ema = generator_from_pickle(data, path, key="G_ema")
    G = generator_from_pickle(data, path, key="G")
    D = discriminator_from_pickle(data, path, key="D")
    return InitSource(path, G, G_ema, D)


def _from_generator_file(path: Path, state_file: Path | None = None) -> InitSource:
    G_ema = load_generator(path)
    G, G_file = copy.deepcopy(G_ema), path
    if state_file is not None and state_file.is_file():
        # A run directory also holds the raw (non-EMA) generator, in its resume state.
        saved = load_state(state_file)
        try:
            G.load_state_dict(saved["G"])
            G_file = state_file
        except (KeyError, RuntimeError) as exc:
            raise UserError(
                f"{state_file} does not hold the generator of {path} "
                f"({str(exc).splitlines()[0][:200]}). Give the generator file alone."
            ) from None
    beside = path.parent / DISCRIMINATOR_FILE
    D = load_discriminator(beside) if beside.is_file() and beside != path else None
    # the same check as for pickles: a broken file is refused before any training
    check_finite(G_ema, "G_ema", path)
    check_finite(G, "G", G_file)
    if D is not None:
        check_finite(D, "D", beside)
    return InitSource(path, G, G_ema, D)


def load_init_source(path: str | Path) -> InitSource:
    """The networks of an official pickle, a generator file or a ``train gan`` run directory."""
    path = Path(path)
    if path.is_dir():
        generator = path / "checkpoints" / GENERATOR_FILE
        if not generator.is_file():
            raise UserError(
                f"--init-from {path}: a directory without checkpoints/{GENERATOR_FILE}. Give a "
                "'viscoin train gan' run directory, a generator .safetensors or a StyleGAN2-ADA .pkl."
            )
        source = _from_generator_file(generator, path / "checkpoints" / STATE_FILE)
    elif not path.is_file():
        raise UserError(
            f"--init-from {path}: not found. Give a StyleGAN2-ADA network pickle (.pkl), a "
            "generator .safetensors or a 'viscoin train gan' run directory."
        )
    elif path.suffix == ".pkl":
        source = _from_pickle(path)
    else:
        source = _from_generator_file(path)
    D = source.D
    if D is not None and (
        D.img_resolution != source.resolution
        or D.c_dim != source.G_ema.c_dim
        or D.img_channels != source.G_ema.img_channels
    ):
        raise UserError(
            f"--init-from {path}: the discriminator ({D.img_resolution} px, c_dim {D.c_dim}) does "
            f"not fit the generator ({source.resolution} px, c_dim {source.G_ema.c_dim})."
        )
    return source


def _default(fn: type, name: str) -> object:
    return inspect.signature(fn).parameters[name].default


def source_architecture(source: InitSource) -> dict[str, object]:
    """The ``gan`` architecture fields that describe the source's networks."""
    G = source.G_ema
    mapping, synthesis = G.mapping_kwargs, G.synthesis_kwargs
    arch = {
        "resolution": G.img_resolution,
        "z_dim": G.z_dim,
        "w_dim": G.w_dim,
        "c_dim": G.c_dim,
        "mapping_layers": mapping.get("num_layers", _default(MappingNetwork, "num_layers")),
        **{
            key: synthesis.get(key, _default(SynthesisNetwork, key))
            for key in ("channel_base", "channel_max", "num_fp16_res")
        },
        "conv_clamp": synthesis.get("conv_clamp"),
    }
    if source.D is not None:
        config = source.D.to_config()
        arch["d_architecture"] = config.get("architecture", _default(Discriminator, "architecture"))
        epilogue = config.get("epilogue_kwargs") or {}
        arch["mbstd_group_size"] = epilogue.get(
            "mbstd_group_size", _default(DiscriminatorEpilogue, "mbstd_group_size")
        )
    return arch


def apply_init_architecture(g: GanConfig, source: InitSource) -> dict[str, tuple]:
    """Replace ``g``'s architecture fields by the source's; ``{field: (old, new)}`` for changed ones."""
    changed = {}
    for key, value in source_architecture(source).items():
        if getattr(g, key) != value:
            changed[key] = (getattr(g, key), value)
            setattr(g, key, value)
    g.init_from = str(source.path)
    return changed


def check_init_resolution(source: InitSource, data_resolution: int) -> None:
    """The source's networks must be trained at the data's resolution."""
    if source.resolution != data_resolution:
        raise UserError(
            f"--init-from {source.path} holds a {source.resolution}-px network, but "
            f"data.resolution is {data_resolution}: set data.resolution={source.resolution} "
            f"(or start from a {data_resolution}-px network)."
        )
