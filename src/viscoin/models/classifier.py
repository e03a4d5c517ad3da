"""The classifier f: a torchvision ResNet that returns logits and its last three stage maps.

It owns its input normalisation: callers pass images in [−1, 1] and the wrapper converts them to
the ImageNet statistics the backbone expects. The stage maps feed the concept extractor Ψ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
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
ARCHS = ("resnet18", "resnet34", "resnet50")
_IMAGENET_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Classifier(nn.Module):
    """f: ResNet over images in [−1, 1].

    ``forward(x)`` → logits (B, num_classes); ``forward_features(x)`` → ``(logits, [m2, m3, m4])``
    with the outputs of ResNet stages 2-4, e.g. for ResNet-50 at 256 px
    (B, 512, 32, 32), (B, 1024, 16, 16), (B, 2048, 8, 8).
    """

    def __init__(self, arch: str = "resnet50", num_classes: int = 200) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise UserError(
                f"unknown classifier architecture '{arch}'. Choose one of {', '.join(ARCHS)}."
            )
        self.arch = arch
        self.num_classes = num_classes
        self.backbone = getattr(torchvision.models, arch)(weights=None)
        self.backbone.fc = nn.Linear(self.backbone.fc.in_features, num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def stage_channels(self) -> tuple[int, int, int]:
        """Channels of the three stage maps (512/1024/2048 for ResNet-50, 128/256/512 for 18/34)."""
        expansion = 4 if self.arch == "resnet50" else 1
        return (128 * expansion, 256 * expansion, 512 * expansion)

    @staticmethod
    def stage_sizes(resolution: int) -> tuple[int, int, int]:
        """Spatial sizes of the three stage maps for a square input (strides 8, 16, 32)."""
        size = resolution
        for _ in range(2):  # conv1 (k7 s2 p3) and maxpool (k3 s2 p1) each give ceil(size / 2)
            size = (size - 1) // 2 + 1
        sizes = []
        for _ in range(3):  # layer2-4 each halve (3×3 stride-2 conv, padding 1)
            size = (size - 1) // 2 + 1
            sizes.append(size)
        return (sizes[0], sizes[1], sizes[2])

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """[−1, 1] → ImageNet-normalised input of the backbone."""
        return ((images + 1) * 0.5 - self.mean) / self.std

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Images (B, 3, H, W) in [−1, 1] → logits (B, classes) and the stage 2-4 maps."""
        net = self.backbone
        x = self.normalise(images)
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x = net.layer1(x)
        m2 = net.layer2(x)
        m3 = net.layer3(m2)
        m4 = net.layer4(m3)
        logits = net.fc(torch.flatten(net.avgpool(m4), 1))
        return logits, [m2, m3, m4]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [−1, 1] → logits (B, classes)."""
        return self.forward_features(images)[0]

    def config(self) -> dict[str, Any]:
        return {"arch": self.arch, "num_classes": self.num_classes}


def build_classifier(
    arch: str, num_classes: int, weights: str = "none", progress: bool = True
) -> Classifier:
    """A classifier with backbone weights from ``weights``: ``none`` (random), ``imagenet``
    (torchvision's weights API; needs the network or a warm cache) or a local file holding a
    torchvision ResNet state dict (``.pth``/``.pt``/``.safetensors``). The final layer is new.
    """
    model = Classifier(arch, num_classes)
    if weights in ("none", "", None):
        return model
    if weights == "imagenet":
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
        state = _read_state_dict(Path(weights))
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    hint = "Give a state dict of the same architecture."
    try:
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    except RuntimeError:  # same names, other shapes
        raise UserError(
            f"weights file {weights} does not fit a torchvision {arch} (tensor shapes differ). {hint}"
        ) from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserError(
            f"weights file {weights} does not fit a torchvision {arch}: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]}). {hint}"
        )
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return load_state_dict_file(
        path,
        "classifier weights",
        "Give a torchvision ResNet state dict (.pth/.pt/.safetensors) with "
        "--set classifier.weights=PATH, or classifier.weights=none.",
    )


def save_classifier(
    model: Classifier, path: str | Path, classes: list[str] | None = None, extra: dict | None = None
) -> Path:
    """Write the classifier (weights + arch + classes) to one safetensors file."""
    info = dict(extra or {})
    if classes is not None:
        info["classes"] = list(classes)
    return save_checkpoint(path, model.state_dict(), KIND, model.config(), info)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """A classifier saved by :func:`save_classifier`, in eval mode with frozen weights."""
    tensors, config, extra = load_checkpoint(path, kind=KIND)
    model = build_checked(Classifier, config, tensors, path)
    model.classes = extra.get("classes")
    return model.to(device).eval().requires_grad_(False)
