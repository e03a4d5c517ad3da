"""The classifier f: any image classifier, returning logits and the feature maps Ψ reads.

f is a torchvision or timm architecture named by a string (``torchvision:efficientnet_b0``,
``timm:convnext_tiny``, or the short ``resnet18``/``resnet34``/``resnet50`` of earlier versions),
or in Python any ``nn.Module`` that maps images to logits. The wrapper owns f's input: callers pass
images in [−1, 1]; it resizes them to f's input size when one is set and applies f's own mean and
standard deviation. Forward hooks on the layers named in ``layers`` collect the maps that feed the
concept extractor Ψ; a transformer's tokens (B, N, C) become a grid (B, C, H, W) without its class,
distillation and register tokens, so Ψ always reads (B, C, H, W).

A classifier file (kind ``classifier``) holds the weights and, in its metadata, the architecture
string, class count, layers, normalisation, input size and the architecture's keyword arguments,
so it rebuilds without running any code of its own.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from viscoin.errors import UserError
from viscoin.utils.checkpoint import (
    build_checked,
    load_checkpoint,
    load_state_dict_file,
    save_checkpoint,
)

KIND = "classifier"
# Short names of the torchvision ResNets the first versions supported; files naming them load as
# before (same construction, same tensor names).
ARCHS = ("resnet18", "resnet34", "resnet50")
SOURCES = ("torchvision", "timm")
_IMAGENET_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Default layers Ψ reads, per torchvision family (name prefix, longest match first): the output of
# the last module at strides 8, 16 and 32 (the last three stages), as ResNet's layer2-4.
TORCHVISION_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("resnet", ("layer2", "layer3", "layer4")),
    ("resnext", ("layer2", "layer3", "layer4")),
    ("wide_resnet", ("layer2", "layer3", "layer4")),
    ("convnext", ("features.3", "features.5", "features.7")),
    ("efficientnet_b", ("features.3", "features.5", "features.8")),
    ("efficientnet_v2_s", ("features.3", "features.5", "features.7")),
    ("efficientnet_v2", ("features.3", "features.5", "features.8")),
    ("mobilenet_v2", ("features.6", "features.13", "features.18")),
    ("mobilenet_v3_large", ("features.6", "features.12", "features.16")),
    ("mobilenet_v3_small", ("features.3", "features.8", "features.12")),
    ("regnet", ("trunk_output.block2", "trunk_output.block3", "trunk_output.block4")),
    ("shufflenet_v2", ("stage2", "stage3", "stage4")),
    ("densenet", ("features.denseblock2", "features.denseblock3", "features.denseblock4")),
)
# Transformers keep one resolution throughout: Ψ reads blocks at half, three quarters and all of
# the depth (blocks 6, 9 and 12 of 12).
TOKEN_BLOCK_FRACTIONS = (2 / 4, 3 / 4, 4 / 4)
MIN_MAP_SIZE = 3  # Φ is (B, K, 3, 3): some chosen map must resolve 3 × 3 positions


def parse_arch(arch: str) -> tuple[str, str]:
    """``"timm:convnext_tiny"`` → ``("timm", "convnext_tiny")``; a short name → ``("torchvision", name)``."""
    if arch in ARCHS:
        return "torchvision", arch
    source, sep, name = str(arch).partition(":")
    if not sep or source not in SOURCES or not name:
        raise UserError(
            f"unknown classifier architecture '{arch}'. Give torchvision:NAME or timm:NAME "
            f"(e.g. torchvision:efficientnet_b0, timm:convnext_tiny), or one of {', '.join(ARCHS)}."
        )
    return source, name


def _timm():
    try:
        import timm
    except ImportError:
        raise UserError(
            "timm is not installed: pip install 'viscoin[timm]' (or pip install timm) to use "
            "timm:NAME classifiers."
        ) from None
    return timm


def build_backbone(arch: str, num_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """The architecture ``arch`` with random weights and a ``num_classes``-way head; ``options``:
    keyword arguments of its constructor (e.g. timm's ``img_size``, ``dims``). Never downloads."""
    options = dict(options or {})
    source, name = parse_arch(arch)
    if arch in ARCHS:  # as earlier versions built them, so seeded runs repeat
        if options:
            raise UserError(f"classifier.options are not used with {arch}: use torchvision:{arch}.")
        net = getattr(torchvision.models, arch)(weights=None)
        net.fc = nn.Linear(net.fc.in_features, num_classes)
        return net
    for key in ("weights", "pretrained", "num_classes"):
        if key in options:
            raise UserError(
                f"classifier.options.{key} is set by viscoin (weights come from classifier.weights)."
            )
    try:
        if source == "torchvision":
            known = torchvision.models.list_models(module=torchvision.models)
            if name not in known:
                close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
                raise UserError(
                    f"torchvision has no classification model '{name}'"
                    + (f" (did you mean {', '.join(close)}?)" if close else "")
                    + f". Its models: {_shorten(known)}."
                )
            return torchvision.models.get_model(
                name, weights=None, num_classes=num_classes, **options
            )
        timm = _timm()
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.5)
            raise UserError(
                f"timm has no model '{name}'"
                + (f" (did you mean {', '.join(close)}?)" if close else "")
                + ". List them with python -c 'import timm; print(timm.list_models())'."
            )
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **options)
    except TypeError as exc:  # an option the constructor does not take
        raise UserError(f"cannot build {arch} with options {options}: {exc}") from None


def default_layers(backbone: nn.Module, arch: str | None) -> list[str]:
    """The layers Ψ reads when none are named: timm's feature info, the torchvision table, or the
    blocks of a transformer; a :class:`UserError` asking for ``layers`` otherwise."""
    info = getattr(backbone, "feature_info", None)
    if isinstance(info, list) and info and isinstance(info[0], dict) and "module" in info[0]:
        # timm: one entry per stage, with its stride ("reduction")
        last_per_stride = {entry["reduction"]: entry["module"] for entry in info}
        if len(last_per_stride) >= 3:
            return [last_per_stride[r] for r in sorted(last_per_stride)[-3:]]
        return _spread([entry["module"] for entry in info])
    name = parse_arch(arch)[1] if arch else ""
    for prefix, layers in sorted(TORCHVISION_LAYERS, key=lambda item: -len(item[0])):
        if name.startswith(prefix):
            return list(layers)
    encoder_layers = getattr(getattr(backbone, "encoder", None), "layers", None)
    if isinstance(encoder_layers, nn.Sequential):  # torchvision's VisionTransformer
        return _spread([f"encoder.layers.{child}" for child, _ in encoder_layers.named_children()])
    raise UserError(
        f"no default feature layers for {arch or type(backbone).__name__}: name the layers Ψ "
        f"reads with --layers a,b,c (classifier.layers). Its modules: {_shorten(module_names(backbone))}."
    )


def _spread(blocks: list[str]) -> list[str]:
    picks = sorted({max(0, math.ceil(f * len(blocks)) - 1) for f in TOKEN_BLOCK_FRACTIONS})
    return [blocks[i] for i in picks]


def default_normalisation(backbone: nn.Module, arch: str | None) -> tuple[list[float], list[float]]:
    """f's input mean and std: timm's ``pretrained_cfg``, torchvision's weights meta, else ImageNet's."""
    cfg = getattr(backbone, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("mean") and cfg.get("std"):
        return [float(v) for v in cfg["mean"]], [float(v) for v in cfg["std"]]
    if arch and parse_arch(arch)[0] == "torchvision":
        transforms = _torchvision_transforms(parse_arch(arch)[1])
        if transforms is not None and hasattr(transforms, "mean"):
            return [float(v) for v in transforms.mean], [float(v) for v in transforms.std]
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


def _torchvision_transforms(name: str) -> Any:
    try:
        return torchvision.models.get_model_weights(name).DEFAULT.transforms()
    except (ValueError, KeyError, AttributeError):
        return None


def native_size(backbone: nn.Module, arch: str | None) -> int | None:
    """The input size f was made for (timm's ``pretrained_cfg``, torchvision's crop size), if known."""
    cfg = getattr(backbone, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        return int(cfg["input_size"][-1])
    if arch and parse_arch(arch)[0] == "torchvision":
        transforms = _torchvision_transforms(parse_arch(arch)[1])
        crop = getattr(transforms, "crop_size", None)
        if crop:
            return int(crop[0])
    return None


def module_names(backbone: nn.Module) -> list[str]:
    return [name for name, _ in backbone.named_modules() if name]


def _shorten(names: Sequence[str], limit: int = 24) -> str:
    """The first ``limit`` names, then how many more."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", … ({len(names) - limit} more)"


def prefix_tokens(backbone: nn.Module) -> int:
    """Tokens ahead of the patch grid: class, distillation and register tokens."""
    count = getattr(backbone, "num_prefix_tokens", None)  # timm
    if isinstance(count, int):
        return count
    return 1 if hasattr(backbone, "class_token") else 0  # torchvision's VisionTransformer


def _keep(store: dict[str, Any], name: str):
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        store[name] = output

    return hook


class Classifier(nn.Module):
    """f over images in [−1, 1]: ``forward(x)`` → logits (B, num_classes);
    ``forward_features(x)`` → ``(logits, maps)``, one (B, C_i, H_i, W_i) map per name in ``layers``
    (for ResNet-50 at 256 px, layer2-4: (B, 512, 32, 32), (B, 1024, 16, 16), (B, 2048, 8, 8)).

    ``arch``: an architecture string (see :func:`parse_arch`), built with random weights and
    ``options`` as constructor keywords; or pass any module as ``backbone`` (``arch`` then only
    names it: ``None`` for a module that no name rebuilds, which cannot be saved). ``layers``:
    module names (``backbone.named_modules()``) whose outputs Ψ reads; ``None``: the defaults of
    :func:`default_layers`. ``mean``/``std``: f's input normalisation (``None``: the model's own,
    :func:`default_normalisation`). ``input_size``: images are resized to this square size before
    f (``None``: taken as they come).
    """

    def __init__(
        self,
        arch: str | None = "resnet50",
        num_classes: int = 200,
        layers: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: int | None = None,
        options: dict[str, Any] | None = None,
        backbone: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if backbone is None:
            if arch is None:
                raise UserError("a classifier needs an architecture name or a backbone module.")
            backbone = build_backbone(arch, num_classes, options)
        self.arch = arch
        self.num_classes = int(num_classes)
        self.options = dict(options or {})
        self.backbone = backbone
        self.layers = list(layers) if layers else default_layers(backbone, arch)
        self._check_layers()
        default_mean, default_std = default_normalisation(backbone, arch)
        self.mean_values = [float(v) for v in (mean if mean is not None else default_mean)]
        self.std_values = [float(v) for v in (std if std is not None else default_std)]
        if len(self.mean_values) != 3 or len(self.std_values) != 3 or min(self.std_values) <= 0:
            raise UserError(
                f"classifier mean {self.mean_values} and std {self.std_values} need 3 values each, "
                "std above 0."
            )
        self.input_size = int(input_size) if input_size else None
        self.prefix_tokens = prefix_tokens(backbone)
        # timm's transformers with NHWC stages (e.g. Swin) say so; everything else is NCHW
        self.channels_last_maps = getattr(backbone, "output_fmt", "NCHW") == "NHWC"
        self.register_buffer(
            "mean", torch.tensor(self.mean_values).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(self.std_values).view(1, 3, 1, 1), persistent=False
        )
        self._shapes: dict[int, list[tuple[int, int, int]]] = {}

    def _check_layers(self) -> None:
        names = module_names(self.backbone)
        known = set(names)
        missing = [name for name in self.layers if name not in known]
        if not missing:
            return
        close = sorted({m for name in missing for m in difflib.get_close_matches(name, names, 3)})
        shallow = [n for n in names if n.count(".") <= 1]
        raise UserError(
            f"{self.arch or type(self.backbone).__name__} has no layer {', '.join(missing)}"
            + (f" (close: {', '.join(close)})" if close else "")
            + f". Its layers include {_shorten(shallow)}; any name of model.named_modules() works."
        )

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """[−1, 1] images (B, 3, H, W) → f's input: resized to ``input_size``, normalised."""
        x = ((images + 1) * 0.5 - self.mean) / self.std
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True
            )
        return x

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Images (B, 3, H, W) in [−1, 1] → logits (B, classes) and the maps of ``layers``."""
        store: dict[str, Any] = {}
        handles = [
            self.backbone.get_submodule(name).register_forward_hook(_keep(store, name))
            for name in self.layers
        ]
        try:
            logits = self.backbone(self.normalise(images))
        finally:
            for handle in handles:
                handle.remove()
        return logits, [self._as_map(name, store.get(name)) for name in self.layers]

    def _as_map(self, name: str, output: Any) -> torch.Tensor:
        """A hooked output → (B, C, H, W): tokens (B, N, C) lose their prefix tokens and become
        the √(N − prefix) × √(N − prefix) grid."""
        if not isinstance(output, torch.Tensor):
            raise UserError(
                f"layer {name} of {self.arch} returns {type(output).__name__}, not a tensor "
                "(or was not run): choose another layer."
            )
        if output.ndim == 4:
            return output.permute(0, 3, 1, 2) if self.channels_last_maps else output
        if output.ndim == 3:
            batch, tokens, channels = output.shape
            side = math.isqrt(tokens - self.prefix_tokens)
            if side * side != tokens - self.prefix_tokens:
                raise UserError(
                    f"layer {name} of {self.arch} gives {tokens} tokens; less its "
                    f"{self.prefix_tokens} class/register tokens they are no square grid."
                )
            grid = output[:, self.prefix_tokens :]
            return grid.transpose(1, 2).reshape(batch, channels, side, side)
        raise UserError(
            f"layer {name} of {self.arch} gives a tensor of shape {tuple(output.shape)}; Ψ reads "
            "maps (B, C, H, W) or tokens (B, N, C): choose another layer."
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [−1, 1] → logits (B, classes)."""
        return self.backbone(self.normalise(images))

    @torch.no_grad()
    def feature_shapes(
        self, resolution: int, for_concepts: bool = True
    ) -> list[tuple[int, int, int]]:
        """(C, H, W) of each map for square ``resolution`` px images, measured once by a dummy
        forward (eval mode); checks the class count and, ``for_concepts``, that some map is at
        least 3 × 3 (Ψ's concept maps)."""
        if resolution not in self._shapes:
            self._shapes[resolution] = self._measure(resolution)
        shapes = self._shapes[resolution]
        if for_concepts and max(min(h, w) for _, h, w in shapes) < MIN_MAP_SIZE:
            listed = ", ".join(
                f"{n} {h}×{w}" for n, (_, h, w) in zip(self.layers, shapes, strict=True)
            )
            raise UserError(
                f"at {resolution} px the feature maps of {self.arch} are too small for Ψ's 3×3 "
                f"concept maps ({listed}): at least one must be 3×3 or larger. Raise "
                "data.resolution (or classifier.input_size), or choose earlier layers."
            )
        return shapes

    def _measure(self, resolution: int) -> list[tuple[int, int, int]]:
        """One forward of a zero image (1, 3, R, R) in eval mode → the maps' (C, H, W)."""
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            logits, maps = self.forward_features(
                torch.zeros(1, 3, resolution, resolution, device=device)
            )
        except (RuntimeError, AssertionError, ValueError) as exc:
            native = native_size(self.backbone, self.arch)
            hint = f" (it was made for {native} px)" if native else ""
            raise UserError(
                f"classifier {self.arch} does not run on {resolution} px images{hint}: "
                f"{str(exc).splitlines()[0].rstrip('.') if str(exc) else type(exc).__name__}. Set "
                "classifier.input_size=N to resize images for it, or build it for this size "
                "(e.g. classifier.options.img_size for timm transformers)."
            ) from None
        finally:
            self.train(was_training)
        if logits.shape[-1] != self.num_classes:
            raise UserError(
                f"classifier {self.arch} gives {logits.shape[-1]} logits, not num_classes="
                f"{self.num_classes}."
            )
        return [(int(m.shape[1]), int(m.shape[2]), int(m.shape[3])) for m in maps]

    def config(self) -> dict[str, Any]:
        """What rebuilds this classifier: the constructor keywords stored in its file."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "layers": list(self.layers),
            "mean": list(self.mean_values),
            "std": list(self.std_values),
            "input_size": self.input_size,
            "options": dict(self.options),
        }


def build_classifier(
    arch: str,
    num_classes: int,
    weights: str | None = "none",
    progress: bool = True,
    layers: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | None = None,
    options: dict[str, Any] | None = None,
    new_head: bool = True,
) -> Classifier:
    """A classifier with weights from ``weights``: ``none`` (random), ``imagenet`` (torchvision's
    weights API for the short ResNet names; needs the network or a warm cache) or a local state
    dict of the architecture (``.safetensors``, or ``.pt``/``.pth`` read with
    ``torch.load(weights_only=True)``; a viscoin classifier file works too).

    ``new_head``: the short ResNet names always get a new final layer; other architectures keep
    the file's head when its shape fits ``num_classes`` and get a new one otherwise. Without
    ``new_head`` every tensor must fit, and a head for another class count is refused.
    """
    model = Classifier(arch, num_classes, layers, mean, std, input_size, options)
    if weights in ("none", "", None):
        return model
    if weights == "imagenet":
        if arch not in ARCHS:
            raise UserError(
                f"classifier.weights=imagenet downloads only for {', '.join(ARCHS)}; for {arch} "
                "get the weights elsewhere and pass the file with classifier.weights=PATH."
            )
        enum = getattr(torchvision.models, _IMAGENET_WEIGHTS[arch])
        try:
            state = enum.DEFAULT.get_state_dict(progress=progress)
        except Exception as exc:
            raise UserError(
                f"cannot get ImageNet weights for {arch} ({type(exc).__name__}: {exc}). You seem to be "
                "offline: download them elsewhere and pass the file with "
                "--set classifier.weights=PATH (a torchvision state dict), or use classifier.weights=none."
            ) from None
    else:
        state = _read_state_dict(Path(weights), arch)
    load_backbone_weights(model, state, str(weights), new_head=new_head)
    return model


def build_configured_classifier(
    c: Any, num_classes: int, arch: str | None = None, new_head: bool = True
) -> Classifier:
    """:func:`build_classifier` from a ``classifier`` config section ``c`` (its arch, weights,
    layers, normalisation, input size and options); ``arch`` replaces ``c.arch``."""
    return build_classifier(
        arch or c.arch, num_classes, c.weights, layers=c.layers, mean=c.mean, std=c.std,
        input_size=c.input_size, options=c.options, new_head=new_head,
    )  # fmt: skip


def head_prefix(backbone: nn.Module) -> str:
    """Name prefix of the final layer's tensors: the module holding the model's last parameter
    (``fc.`` for ResNets, ``classifier.1.`` for EfficientNet, ``head.fc.`` for timm's ConvNeXt)."""
    last = [name for name, _ in backbone.named_parameters()][-1]
    return last.rpartition(".")[0] + "."


def load_backbone_weights(
    model: Classifier, state: dict[str, torch.Tensor], source: str, new_head: bool
) -> None:
    """Copy a state dict into ``model.backbone`` (prefixes ``backbone.`` and ``module.`` dropped)."""
    arch = model.arch
    hint = f"Give a state dict of {arch} (classifier.weights=PATH)."
    for prefix in ("backbone.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    head = head_prefix(model.backbone)
    own = model.backbone.state_dict()
    head_mismatch = [
        k for k in own if k.startswith(head) and k in state and state[k].shape != own[k].shape
    ]
    if new_head and (arch in ARCHS or head_mismatch):
        state = {k: v for k, v in state.items() if not k.startswith(head)}
    elif head_mismatch:
        found = state[head_mismatch[0]].shape[0]
        raise UserError(
            f"weights file {source} is a {arch} for {found} classes, but the dataset has "
            f"{model.num_classes}. Use the dataset it was trained on, or fine-tune it first "
            f"(viscoin train classifier --set classifier.arch={arch} --set classifier.weights=...)."
        )
    shapes = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    if shapes:
        raise UserError(
            f"weights file {source} does not fit a {_describe(arch)} (tensor shapes differ, e.g. "
            f"{shapes[0]}: {tuple(state[shapes[0]].shape)} vs {tuple(own[shapes[0]].shape)}). {hint}"
        )
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    if new_head:
        missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise UserError(
            f"weights file {source} does not fit a {_describe(arch)}: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]}). {hint}"
        )


def _describe(arch: str | None) -> str:
    return f"torchvision {arch}" if arch in ARCHS else str(arch)


def _read_state_dict(path: Path, arch: str) -> dict[str, torch.Tensor]:
    return load_state_dict_file(
        path,
        "classifier weights",
        f"Give a {_describe(arch)} state dict (.safetensors, or .pt/.pth holding only tensors) "
        "with --set classifier.weights=PATH, or classifier.weights=none.",
    )


def save_classifier(
    model: Classifier, path: str | Path, classes: list[str] | None = None, extra: dict | None = None
) -> Path:
    """Write the classifier (weights + architecture, layers, normalisation, classes) to one
    safetensors file."""
    if model.arch is None:
        raise UserError(
            "this classifier wraps a module that no architecture name rebuilds, so its file could "
            "not be loaded without running code: give it arch='torchvision:NAME' or 'timm:NAME'."
        )
    info = dict(extra or {})
    if classes is not None:
        info["classes"] = list(classes)
    return save_checkpoint(path, model.state_dict(), KIND, model.config(), info)


def classifier_from_checkpoint(
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    source: str | Path,
    layers: Sequence[str] | None = None,
) -> Classifier:
    """Rebuild a classifier from a file's config and tensors (``layers`` replaces the file's)."""
    if not isinstance(config, dict) or "arch" not in config:
        raise UserError(f"{source} is not a classifier file viscoin can rebuild (no 'arch').")
    if "backbone" in config:  # a module, never from a file: the constructor's other keys are
        raise UserError(  # checked against the signature by build_checked
            f"{source}: config keys backbone are unknown to this viscoin's Classifier; the file "
            "was edited or written by a newer viscoin."
        )
    config = dict(config)
    if layers:
        config["layers"] = list(layers)
    # numbers bounded and the module's names and shapes compared with the tensors before anything
    # is allocated (built on the meta device first)
    return build_checked(Classifier, config, tensors, source)


def load_classifier(
    path: str | Path, device: str | torch.device = "cpu", layers: Sequence[str] | None = None
) -> Classifier:
    """A classifier saved by :func:`save_classifier`, in eval mode with frozen weights;
    ``layers`` replaces the feature layers stored in the file."""
    tensors, config, extra = load_checkpoint(path, kind=KIND)
    model = classifier_from_checkpoint(config, tensors, path, layers)
    model.classes = extra.get("classes")
    return model.to(device).eval().requires_grad_(False)
