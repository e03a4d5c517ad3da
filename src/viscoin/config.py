"""Typed configuration: one dataclass per concern, YAML presets, dotted command-line overrides.

Every command reads a :class:`Config`. It is built from a preset (``configs/<name>.yaml`` or any YAML
path), then ``section.field=value`` overrides are applied, and the resolved config is written into
the run directory as ``config.yaml``. Unknown keys and wrongly typed values are user errors.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from viscoin.errors import UserError

PRESETS_DIR = Path(__file__).parent / "configs"


@dataclass
class RunConfig:
    """Where a run lives and how it is seeded."""

    name: str | None = None  # run directory name under runs_dir; None: derived from the command
    runs_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class DataConfig:
    """Which dataset, where it is, and how images are shaped."""

    name: str = (
        "shapes"  # registry name: cub | stanford_cars | celeba_hq | funnybirds | folder | shapes
    )
    root: str | None = None  # dataset root; None uses the dataset's default location
    resolution: int = 64  # images are resized/cropped to resolution × resolution
    batch_size: int = 32
    num_workers: int = 2
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific keyword arguments


@dataclass
class ClassifierConfig:
    """The classifier f and its fine-tuning."""

    # the architecture: resnet18 | resnet34 | resnet50 (the short names of earlier versions) |
    # torchvision:NAME (any torchvision classification model, e.g. torchvision:efficientnet_b0) |
    # timm:NAME (needs the timm extra: pip install 'viscoin[timm]', e.g. timm:convnext_tiny)
    arch: str = "resnet50"
    # none (random) | imagenet (short names only: torchvision's download) | path to a state dict
    # of the architecture (.safetensors, or .pt/.pth holding only tensors); never downloads otherwise
    weights: str = "none"
    # constructor keywords of the architecture, e.g. classifier.options.img_size=64 for a timm ViT
    options: dict[str, Any] = field(default_factory=dict)
    # module names (model.named_modules()) whose outputs Ψ reads, e.g. [layer2, layer3, layer4];
    # None: the family's default (the last three stages; three blocks of a transformer)
    layers: list[str] | None = None
    # f's input normalisation of images in [0, 1]; None: the model's own (timm's pretrained_cfg,
    # torchvision's weights meta), else ImageNet's
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    # images are resized to input_size × input_size before f; None: f sees data.resolution
    input_size: int | None = None
    epochs: int = 30
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_step: int = 0  # epochs between lr decays (0: constant lr)
    lr_gamma: float = 0.1
    batch_size: int = 32
    # share of the train split held out, per class and seeded by run.seed, to choose
    # best.safetensors by validation accuracy (the test split is read once, at the end);
    # 0 ≤ val_fraction < 1; 0: no validation, best = the last epoch
    val_fraction: float = 0.1


@dataclass
class GanConfig:
    """StyleGAN2 architecture and training (used by ``viscoin train gan``)."""

    # StyleGAN2-ADA's `--cfg` values (see gan_preset_settings): auto (batch, minibatch-std group,
    # channel base, lr, R1 γ, EMA and mapping depth derived from the resolution), paper256,
    # paper512, paper1024, stylegan2 or cifar; or small (auto with a narrow network at batch 256,
    # for a few thousand low-resolution images); values set in the YAML file or with --set still
    # win. none: the values below.
    preset: str = "none"
    resolution: int = 256
    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    mapping_layers: int = 2
    channel_base: int = 16384
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    # training
    kimg: float = 1000.0  # thousands of real images shown
    batch_size: int = 32
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 1.0
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05  # EMA half-life ≤ this fraction of the images seen; None: off
    style_mixing: float = 0.9  # probability of mixing two latents in a training batch
    mbstd_group_size: int = 4  # discriminator minibatch-std group (must divide the batch)
    d_architecture: str = "resnet"  # discriminator: resnet (StyleGAN2's) | orig | skip
    # what D's inputs (real and generated) go through: ada (StyleGAN2-ADA's 'bgc' augmentations,
    # p tuned from E[sign D(real)]) | fixed:P (the same augmentations at a constant p) | none
    augment: str = "none"
    ada_target: float = 0.6  # target of r_t = E[sign D(real)]
    ada_kimg: float = 500.0  # thousands of images for p to go from 0 to 1 at the fastest
    ada_interval: int = 4  # steps between adjustments of p
    snapshot_every: int = 1000  # iterations between checkpoints / sample grids
    max_minutes: float = 0.0  # stop (and save) after this much training time; 0: no limit
    log_every: int = 50
    # TF32 matrix products and convolutions on CUDA: faster, ~3 significant digits (StyleGAN2-ADA
    # trains without them)
    tf32: bool = False
    # torch.compile the synthesis network and the discriminator of the main phases (the lazy R1 and
    # path-length phases differentiate twice and stay eager)
    compile: bool = False
    compile_mode: str = "default"  # default | max-autotune-no-cudagraphs (no CUDA graphs here)
    # each training phase (forward, backward, gradient clean-up) captured once as a CUDA graph and
    # replayed: no per-kernel launch cost, which bounds small networks. auto: on exactly when the
    # device is CUDA, in one process (not under torchrun), with torch >= 2.5 and compile off; true:
    # asked for (refused with compile, under torchrun and before torch 2.5; a warning on the CPU);
    # false: never
    cuda_graphs: bool | str = "auto"
    # transfer learning: G, D and G_ema start from an official StyleGAN2-ADA pickle, a viscoin
    # generator file or a `train gan` run directory; the architecture fields above are then
    # replaced by the source's (see viscoin.train.gan_init)
    init_from: str | None = None
    ada_stall_kimg: float = 500.0  # stop when p has sat at 1 with r_t > target this long; 0: off
    # quality monitor: every metric_every steps (0: off), Fréchet distance and KID between
    # metric_samples generated and as many real images, in Inception-v3 features when
    # inception_weights is given, else in the features of the classifier metric_classifier
    metric_every: int = 0
    metric_samples: int = 2000
    inception_weights: str | None = None
    metric_classifier: str | None = None


@dataclass
class ViscoinConfig:
    """The VisCoIN ensemble (Ψ, Θ, Ω) and its training objective."""

    n_concepts: int = 256  # K
    channels: int = 512  # C, channels of each of Ψ's input branches
    coarse: int = 2  # first W+ row fed by the concept maps Φ
    mid: int | None = None  # last W+ row fed by Φ; None: num_ws - 4
    translator_layers: int = 1
    translator_lr_multiplier: float = 0.01  # StyleGAN's equalised-lr multiplier of Ω's layers
    translator_linear_output: bool = False  # Ω's last layer without the leaky ReLU (paper: with)
    # Ω's input scaling: second_moment (the paper: x / rms(x) per image) | batch (the support Φ'
    # standardised per feature: batch statistics in training, running ones in eval mode)
    translator_input_norm: str = "second_moment"
    dropout: float = 0.01
    # G's noise in the reconstructions and generated images of training: random (the paper's
    # code: StyleGAN's random noise, drawn per (seed, step, image)) | const (the stored noise
    # images; evaluation and figures always use them)
    noise_mode: str = "random"
    # objective (METHOD.md §2)
    alpha: float = 0.5  # output fidelity
    beta: float = 3.0  # LPIPS
    gamma: float = 0.1  # classifier CE on reconstructions
    gamma_start: int = 0  # iterations before the classifier term on reconstructions switches on
    gamma_early: float = 0.0  # its weight before then (fitting the reconstruction first)
    delta: float = 0.2  # sparsity
    w_reg_weight: float = 1.0  # weight of L_w, the pull of W+ towards w̄
    # weight of a perceptual distance between x̃ and x on f's own stage maps (0: off)
    feature_weight: float = 0.0
    lpips: str = "vgg"  # vgg | none | path to local LPIPS/VGG weights
    # optimisation
    iterations: int = 100_000
    real_batch: int = 8
    fake_batch: int = 8
    lr: float = 1e-4
    warmup: int = 100  # L_of and L_spar switch on after this many iterations
    decay_start: float = 0.5  # fraction of iterations after which the lr decays
    decay_every: int = 1000
    decay_factor: float = 0.8
    grad_accum: int = 1
    # the step's precision. auto: bf16 when the device is a CUDA GPU that computes in bf16
    # natively (compute capability 8.0 or later), else none; none: float32; bf16: autocast with the
    # synthesis network in bf16, on any device
    amp: str = "auto"
    channels_last: bool = False  # NHWC memory format for f, G's synthesis and LPIPS
    # torch.compile the step's sampling and losses, on CUDA only (elsewhere the step stays eager,
    # silently). auto: on exactly when the device is CUDA, Triton is installed and the run is one
    # process (not torchrun); true: on CUDA, under torchrun too; false: never. Compiling takes a
    # few minutes before the first step, cached in compile-cache/
    compile: bool | str = "auto"
    compile_mode: str = "default"  # default | reduce-overhead (CUDA graphs) | max-autotune
    # whole: the step's losses and sampling as two graphs; regional: each repeated block of f, G
    # and LPIPS compiled on its own, the glue between blocks eager (BENCHMARKS.md compares them)
    compile_scope: str = "whole"
    eval_every: int = 1000
    eval_batches: int = 0  # 0: the whole test split
    checkpoint_every: int = 5000
    log_every: int = 50


@dataclass
class Config:
    """The whole configuration of a run."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    viscoin: ViscoinConfig = field(default_factory=ViscoinConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), suitable for YAML/JSON."""
        return _plain(asdict(self))

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML (atomically)."""
        from viscoin.utils.io import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def available_presets() -> list[str]:
    """Names of the YAML presets shipped with the package."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_preset(name_or_path: str | Path) -> Path:
    """A preset name (``cub``) or a YAML path → the YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    if path.suffix in (".yaml", ".yml"):
        raise UserError(
            f"config file not found: {path}. Give an existing YAML file or a preset name."
        )
    raise UserError(
        f"unknown config '{name_or_path}'. Presets: {', '.join(available_presets())}; "
        "or give the path of a YAML file."
    )


# StyleGAN2-ADA's train.py `--cfg` table: reference GPU count, batch, minibatch-std group, channel
# base as a fraction of 32768, lr, R1 γ, EMA half-life (kimg), EMA ramp-up and mapping depth.
# 'auto' derives its values from the resolution (auto_gan_settings).
STYLEGAN2_ADA_CONFIGS: dict[str, dict[str, Any]] = {
    "stylegan2": dict(mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8),
    "paper256": dict(mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1, ema=20, ramp=None, map=8),
    "paper512": dict(mb=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5, ema=20, ramp=None, map=8),
    "paper1024": dict(mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=2, ema=10, ramp=None, map=8),
    "cifar": dict(mb=64, mbstd=32, fmaps=1, lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
}
# 'small': 'auto' with a narrow network (channel base 4096, at most 128 channels, z and w of 128)
# at batch 256 and R1 γ = 0.1, its EMA that of 'auto' at batch 32 (10 kimg). Measured on 4 000
# handwritten digits at 32 px, where 'auto' itself collapses: every class covered and a Fréchet
# distance 4× that of two real splits after 1 267 kimg (7.3 minutes on one H200).
SMALL_DATA_SETTINGS: dict[str, Any] = dict(
    batch_size=256, channel_base=4096, channel_max=128, z_dim=128, w_dim=128, r1_gamma=0.1,
    ema_kimg=10.0,
)  # fmt: skip
GAN_PRESETS = ("auto", "small", *STYLEGAN2_ADA_CONFIGS)
D_ARCHITECTURES = ("resnet", "orig", "skip")
# The GAN's phases reuse one compiled module's outputs across calls, which CUDA graphs overwrite.
GAN_COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
# viscoin.amp: auto, or one of viscoin.train.step.AMP_MODES
VISCOIN_AMP_SETTINGS = ("auto", "none", "bf16")


def auto_gan_settings(resolution: int, gpus: int = 1) -> dict[str, Any]:
    """The ``gan`` values of StyleGAN2-ADA's ``--cfg auto`` (its ``train.py``) at ``resolution``.

    batch = max(min(gpus · min(4096 // res, 32), 64), gpus); minibatch-std group =
    min(batch // gpus, 4); channel base 32768 from 512 px, 16384 below; lr 0.002 from 1024 px,
    0.0025 below; R1 γ = 0.0002 · res² / batch; EMA half-life batch · 10 / 32 kimg, ramp-up 0.05;
    a 2-layer mapping network; path-length regularisation of weight 2 every 4 steps (its loss's
    default, which ``--cfg auto`` keeps; G's Adam then gets the lazy lr/betas rescaling by 4/5).
    """
    if resolution < 4:
        raise UserError(f"gan.resolution={resolution}: StyleGAN2 needs at least 4 px.")
    batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return {
        "batch_size": batch,
        "mbstd_group_size": min(batch // gpus, 4),
        "channel_base": 32768 if resolution >= 512 else 16384,
        "channel_max": 512,
        "lr": 0.002 if resolution >= 1024 else 0.0025,
        "r1_gamma": 0.0002 * resolution**2 / batch,
        "ema_kimg": batch * 10 / 32,
        "ema_rampup": 0.05,
        "mapping_layers": 2,
        "pl_weight": 2.0,
        "pl_interval": 4,
        "style_mixing": 0.9,
        "d_architecture": "resnet",
    }


def gan_preset_settings(name: str, resolution: int, gpus: int = 1) -> dict[str, Any]:
    """The ``gan`` values of StyleGAN2-ADA's ``--cfg NAME`` (``auto``, ``paper256``, ...).

    The fixed configurations give batch, minibatch-std group, channel base (fraction × 32768),
    lr, R1 γ, EMA and mapping depth from train.py's table (:data:`STYLEGAN2_ADA_CONFIGS`), with
    its loss's defaults (path length of weight 2 every 4 steps, style mixing 0.9); ``cifar`` also
    turns path length and style mixing off and uses the ``orig`` discriminator, as train.py does.
    ``paper256`` is the configuration of StyleGAN2-ADA's 256 px results. ``small`` is not
    train.py's: ``auto`` with :data:`SMALL_DATA_SETTINGS` over it (a narrow network at batch 256,
    for a few thousand images at low resolution). The batch is the global one (train.py's
    ``--batch``), whatever the number of GPUs.
    """
    if name == "auto":
        return auto_gan_settings(resolution, gpus)
    if name == "small":
        return {**auto_gan_settings(resolution, gpus), **SMALL_DATA_SETTINGS}
    spec = STYLEGAN2_ADA_CONFIGS[name]
    cifar = name == "cifar"
    return {
        "batch_size": spec["mb"],
        "mbstd_group_size": spec["mbstd"],
        "channel_base": int(spec["fmaps"] * 32768),
        "channel_max": 512,
        "lr": spec["lrate"],
        "r1_gamma": float(spec["gamma"]),
        "ema_kimg": float(spec["ema"]),
        "ema_rampup": spec["ramp"],
        "mapping_layers": spec["map"],
        "pl_weight": 0.0 if cifar else 2.0,
        "pl_interval": 4,
        "style_mixing": 0.0 if cifar else 0.9,
        "d_architecture": "orig" if cifar else "resnet",
    }


def load_config(
    name_or_path: str | Path | None = None, overrides: typing.Sequence[str] = ()
) -> Config:
    """Build a :class:`Config` from a preset or YAML file, then apply ``a.b=value`` overrides.

    With ``gan.preset=auto`` the auto values (:func:`auto_gan_settings` at the resulting
    ``gan.resolution``) replace the defaults, and the file and overrides are applied over them.
    """
    raw: dict[str, Any] = {}
    source = "config"
    if name_or_path is not None:
        path = resolve_preset(name_or_path)
        try:
            raw = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise UserError(
                f"config file {path} is not UTF-8 text (byte {exc.start}); give a YAML file."
            ) from None
        except OSError as exc:
            raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            first = " ".join(str(exc).split())[:300]
            raise UserError(f"config file {path} is not valid YAML: {first}") from None
        if not isinstance(raw, dict):
            raise UserError(f"config file {path} must hold a mapping of sections, not {raw!r}")
        source = str(path)
    config = apply_overrides(from_dict(raw, source=source), overrides, check=False)
    if config.gan.preset in GAN_PRESETS:
        settings = gan_preset_settings(config.gan.preset, config.gan.resolution)
        base = Config(gan=GanConfig(**settings))
        config = apply_overrides(from_dict(raw, source=source, base=base), overrides, check=False)
    elif config.gan.preset != "none":
        raise UserError(
            f"unknown gan.preset={config.gan.preset!r}: use one of {', '.join(GAN_PRESETS)} "
            "(StyleGAN2-ADA's configurations; auto derives its values from the resolution, small "
            "is auto with a narrow network at batch 256) or 'none' (the values as set)."
        )
    validate(config)
    return config


def from_dict(raw: dict[str, Any], source: str = "config", base: Config | None = None) -> Config:
    """Build a :class:`Config` from a nested dict over ``base`` (default: the defaults); unknown
    keys are refused."""
    config = base if base is not None else Config()
    for section_name, values in raw.items():
        section = _section(config, section_name, source)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise UserError(f"{source}: section '{section_name}' must be a mapping")
        for key, value in values.items():
            _set_field(section, section_name, key, value, source)
    return config


def apply_overrides(config: Config, overrides: typing.Sequence[str], check: bool = True) -> Config:
    """Apply ``section.field=value`` strings; values are parsed as YAML scalars/lists. The result
    is checked by :func:`validate` (``check=False``: by the caller, once it is assembled)."""
    config = dataclasses.replace(
        config, **{f.name: dataclasses.replace(getattr(config, f.name)) for f in fields(config)}
    )
    for item in overrides:
        if "=" not in item:
            raise UserError(
                f"override '{item}' must look like section.field=value, e.g. viscoin.lr=3e-4"
            )
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if len(parts) < 2:
            raise UserError(
                f"override '{item}' must name a section and a field, e.g. data.name=cub"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        section = _section(config, parts[0], "--set")
        if parts[1] == "options" and len(parts) > 2:
            section.options = {**section.options, ".".join(parts[2:]): value}
            continue
        if len(parts) > 2:
            raise UserError(
                f"override '{item}': only data.options.* and classifier.options.* may be nested"
            )
        _set_field(section, parts[0], parts[1], value, "--set")
    if check:
        validate(config)
    return config


# -- ranges: every value checked before it reaches torch -------------------------------------
# (field, value, allowed range) triples; a range reads "<field> must be <range>"


def _at_least(problems: list, name: str, value: float, low: float) -> None:
    if not (math.isfinite(value) and value >= low):
        problems.append((name, value, f"at least {low:g}"))


def _above(problems: list, name: str, value: float, low: float) -> None:
    if not (math.isfinite(value) and value > low):
        problems.append((name, value, f"a finite number above {low:g}"))


def _unit(problems: list, name: str, value: float, top_open: bool = True) -> None:
    ok = math.isfinite(value) and value >= 0 and (value < 1 if top_open else value <= 1)
    if not ok:
        problems.append((name, value, "at least 0 and below 1" if top_open else "between 0 and 1"))


def _auto_or_bool(problems: list, name: str, value: object) -> None:
    """A setting of ``auto``, ``true`` or ``false``: YAML's booleans (what the configs saved
    before ``auto`` hold) or the string ``auto``."""
    if not (isinstance(value, bool) or value == "auto"):
        problems.append((name, value, "auto, true or false"))


def _check_run(c: RunConfig, p: list) -> None:
    if not 0 <= c.seed < 2**32:  # numpy's seed range
        p.append(("run.seed", c.seed, "at least 0 and below 2^32"))


def _check_data(c: DataConfig, p: list) -> None:
    _at_least(p, "data.resolution", c.resolution, 4)
    _at_least(p, "data.batch_size", c.batch_size, 1)
    _at_least(p, "data.num_workers", c.num_workers, 0)


def _check_classifier(c: ClassifierConfig, p: list) -> None:
    _at_least(p, "classifier.epochs", c.epochs, 1)
    _at_least(p, "classifier.lr", c.lr, 0)  # 0 freezes the weights (a check, not an error)
    _unit(p, "classifier.momentum", c.momentum)
    _at_least(p, "classifier.weight_decay", c.weight_decay, 0)
    _at_least(p, "classifier.lr_step", c.lr_step, 0)  # 0: constant lr
    _above(p, "classifier.lr_gamma", c.lr_gamma, 0)
    _at_least(p, "classifier.batch_size", c.batch_size, 1)
    _unit(p, "classifier.val_fraction", c.val_fraction)  # 0: no validation part
    if c.input_size is not None:
        _at_least(p, "classifier.input_size", c.input_size, 1)
    if c.std is not None and min(c.std) <= 0:
        p.append(("classifier.std", list(c.std), "three values above 0"))


def _check_gan(c: GanConfig, p: list) -> None:
    _at_least(p, "gan.resolution", c.resolution, 4)
    for name in (
        "z_dim",
        "w_dim",
        "mapping_layers",
        "channel_base",
        "channel_max",
        "batch_size",
        "mbstd_group_size",
    ):
        _at_least(p, f"gan.{name}", getattr(c, name), 1)
    _at_least(p, "gan.c_dim", c.c_dim, 0)
    _at_least(p, "gan.num_fp16_res", c.num_fp16_res, 0)
    _above(p, "gan.kimg", c.kimg, 0)
    _at_least(p, "gan.lr", c.lr, 0)
    for i, beta in enumerate(c.betas):
        _unit(p, f"gan.betas[{i}]", beta)
    for name in ("r1_gamma", "pl_weight", "ema_kimg", "max_minutes"):
        _at_least(p, f"gan.{name}", getattr(c, name), 0)
    _unit(p, "gan.style_mixing", c.style_mixing, top_open=False)
    if c.compile_mode not in GAN_COMPILE_MODES:
        p.append(("gan.compile_mode", c.compile_mode, " or ".join(GAN_COMPILE_MODES)))
    _auto_or_bool(p, "gan.cuda_graphs", c.cuda_graphs)
    if c.cuda_graphs is True and c.compile:
        p.append(("gan.cuda_graphs", c.cuda_graphs, "false with gan.compile=true (choose one)"))
    if c.d_architecture not in D_ARCHITECTURES:
        p.append(("gan.d_architecture", c.d_architecture, " or ".join(D_ARCHITECTURES)))
    _at_least(p, "gan.log_every", c.log_every, 1)
    for name in ("r1_interval", "pl_interval", "ada_interval", "snapshot_every"):
        _at_least(p, f"gan.{name}", getattr(c, name), 1)


def _check_viscoin(c: ViscoinConfig, p: list) -> None:
    for name in ("n_concepts", "channels", "translator_layers", "iterations", "real_batch"):
        _at_least(p, f"viscoin.{name}", getattr(c, name), 1)
    for name in ("decay_every", "grad_accum", "log_every"):
        _at_least(p, f"viscoin.{name}", getattr(c, name), 1)
    _at_least(p, "viscoin.coarse", c.coarse, 0)
    if c.mid is not None and c.mid < c.coarse:
        p.append(("viscoin.mid", c.mid, f"None or at least viscoin.coarse ({c.coarse})"))
    _above(p, "viscoin.translator_lr_multiplier", c.translator_lr_multiplier, 0)
    _unit(p, "viscoin.dropout", c.dropout)
    weights = ("alpha", "beta", "gamma", "gamma_early", "delta", "w_reg_weight", "feature_weight")
    for name in weights:
        _at_least(p, f"viscoin.{name}", getattr(c, name), 0)
    # 0 means "none" / "off" / "whole split" for these
    for name in ("fake_batch", "gamma_start", "warmup", "eval_every", "eval_batches"):
        _at_least(p, f"viscoin.{name}", getattr(c, name), 0)
    _at_least(p, "viscoin.checkpoint_every", c.checkpoint_every, 0)
    _at_least(p, "viscoin.lr", c.lr, 0)
    _unit(p, "viscoin.decay_start", c.decay_start, top_open=False)
    if not (math.isfinite(c.decay_factor) and 0 < c.decay_factor <= 1):
        p.append(("viscoin.decay_factor", c.decay_factor, "above 0 and at most 1"))
    if c.grad_accum >= 1 and c.real_batch >= 1 and c.grad_accum > c.real_batch:
        p.append(
            ("viscoin.grad_accum", c.grad_accum, f"at most viscoin.real_batch ({c.real_batch})")
        )
    if c.amp not in VISCOIN_AMP_SETTINGS:
        p.append(("viscoin.amp", c.amp, "auto, none or bf16"))
    _auto_or_bool(p, "viscoin.compile", c.compile)


def validate(config: Config) -> None:
    """Check every value's range, section by section; one :class:`UserError` lists every problem
    (field, value, allowed range). Values where 0 means "off" (``eval_every``, ``checkpoint_every``,
    ``lr_step``, ``fake_batch``, ...) accept 0."""
    problems: list[tuple[str, Any, str]] = []
    _check_run(config.run, problems)
    _check_data(config.data, problems)
    _check_classifier(config.classifier, problems)
    _check_gan(config.gan, problems)
    _check_viscoin(config.viscoin, problems)
    if not problems:
        return
    lines = [f"{name} must be {allowed}, got {value!r}" for name, value, allowed in problems]
    if len(lines) == 1:
        raise UserError(lines[0])
    raise UserError(f"{len(lines)} config values are out of range: " + "; ".join(lines))


# -- resume: what a resumed run may change ------------------------------------------------------
# A resumed run keeps its saved config.yaml. These fields say how long to train, how often to log,
# evaluate and checkpoint, where and how fast a step runs, and the learning rate (the divergence
# messages suggest resuming at a lower one): they may differ on --resume. Every other field shapes
# the networks, the data or what a step computes, and a difference is refused.
RESUME_SAFE_FIELDS = frozenset(
    {
        "run.device",
        "data.root",  # the same dataset, moved
        "data.num_workers",
        "data.batch_size",  # the evaluation loaders only; training batches have their own fields
        "classifier.epochs",
        "classifier.lr",
        "gan.kimg",
        "gan.lr",
        "gan.r1_gamma",  # the GAN's divergence message suggests resuming with a higher one
        "gan.max_minutes",
        "gan.compile",
        "gan.compile_mode",
        "gan.cuda_graphs",
        "gan.log_every",
        "gan.snapshot_every",
        "viscoin.iterations",
        "viscoin.lr",
        "viscoin.log_every",
        "viscoin.eval_every",
        "viscoin.eval_batches",
        "viscoin.checkpoint_every",
        "viscoin.amp",
        "viscoin.channels_last",
        "viscoin.compile",
        "viscoin.compile_mode",
        "viscoin.compile_scope",
    }
)
# where the run is: these found it, they are not part of what it is
_RUN_LOCATION = frozenset({"run.name", "run.runs_dir"})


def flatten(config: Config) -> dict[str, Any]:
    """``{"section.field": value}`` of every field (``data.options`` as one value)."""
    return {
        f"{section}.{key}": value
        for section, values in config.to_dict().items()
        for key, value in values.items()
    }


def resume_differences(saved: Config, requested: Config) -> tuple[dict, dict]:
    """Fields where ``requested`` differs from a run's ``saved`` config, split into those a resume
    may change (:data:`RESUME_SAFE_FIELDS`) and the rest: two ``{field: (saved, requested)}``."""
    old, new = flatten(saved), flatten(requested)
    changed = {k: (old[k], new[k]) for k in old if old[k] != new[k] and k not in _RUN_LOCATION}
    safe = {k: v for k, v in changed.items() if k in RESUME_SAFE_FIELDS}
    return safe, {k: v for k, v in changed.items() if k not in RESUME_SAFE_FIELDS}


def _section(config: Config, name: str, source: str) -> Any:
    names = [f.name for f in fields(config)]
    if name not in names:
        raise UserError(f"{source}: unknown config section '{name}'. Sections: {', '.join(names)}")
    return getattr(config, name)


def _set_field(section: Any, section_name: str, key: str, value: Any, source: str) -> None:
    hints = typing.get_type_hints(type(section))
    if key not in hints:
        known = ", ".join(f.name for f in fields(section))
        raise UserError(f"{source}: unknown field '{section_name}.{key}'. Fields: {known}")
    setattr(section, key, _coerce(value, hints[key], f"{section_name}.{key}", source))


def _coerce(value: Any, hint: Any, name: str, source: str) -> Any:
    """Check/convert a parsed YAML value against a field's type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name, source)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{source}: bad value for {name}")
    bad = UserError(f"{source}: {name} must be of type {_type_name(hint)}, got {value!r}")
    if hint is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(_coerce(v, a, name, source) for v, a in zip(value, args, strict=True))
    if origin is list:
        if isinstance(value, str):  # a,b,c
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(v, args[0], name, source) for v in value] if args else list(value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if hint is str:
        if isinstance(value, (dict, list)) or value is None:
            raise bad
        return str(value)
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
