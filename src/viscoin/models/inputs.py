"""What a user hands the model, turned into the project's one image range: float (B, 3, R, R) in
[−1, 1] on the model's device.

Used by the public methods of :class:`viscoin.models.viscoin.Viscoin` (``explain``, ``amplify``,
``heatmaps``, ``reconstruct``). Conversions happen only where they are unambiguous:

* an image file path or a PIL image → decoded to RGB, then resized and center-cropped as the
  datasets' test transform does (:func:`viscoin.data.transforms.build_transform`);
* a uint8 tensor (3, H, W) or (B, 3, H, W) → the same test transform when it is not R × R, then
  ``x / 127.5 − 1``;
* a float tensor → used as it is, when it is R × R and within [−1, 1];
* a (3, H, W) tensor → a batch of one; a list or tuple of any of these → one batch, in order.

Everything else (a float tensor outside [−1, 1] such as an ImageNet-normalised or [0, 255] one, the
wrong size or channel count, another dtype) raises one :class:`~viscoin.errors.UserError` saying
what is expected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, Union

import torch

from viscoin.errors import UserError

if TYPE_CHECKING:
    from PIL.Image import Image

# One image or a batch: a tensor, a PIL image, a path, or a list/tuple of them.
ImageInput: TypeAlias = Union[torch.Tensor, "Image", str, os.PathLike, Sequence[Any]]

# Generated images are not clipped, and a round trip through float16 moves a pixel by ~1e-3: a
# tensor this little outside [−1, 1] is still taken to be in that range.
RANGE_TOLERANCE = 1e-3


def prepare_images(
    images: ImageInput,
    resolution: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``images`` (see the module docstring) → float (B, 3, R, R) in [−1, 1] with R =
    ``resolution``, on ``device``; a :class:`UserError` names the first input it cannot use."""
    if isinstance(images, list | tuple):
        if not images:
            raise UserError("no image given: pass a path, a PIL image, a tensor or a list of them.")
        parts = [
            _one(item, resolution, _label(item, f"images[{i}]")) for i, item in enumerate(images)
        ]
    else:
        parts = [_one(images, resolution, _label(images, "images"))]
    return torch.cat([p.to(dtype) for p in parts]).to(device)


def _label(item: Any, fallback: str) -> str:
    return str(item) if isinstance(item, str | os.PathLike) else fallback


def _one(item: Any, resolution: int, label: str) -> torch.Tensor:
    """One input → float (B, 3, R, R) on the CPU (B = 1 unless it is a batched tensor)."""
    if isinstance(item, torch.Tensor):
        return _tensor(item, resolution, label)
    if isinstance(item, str | os.PathLike):
        return _resized(read_image_file(item), resolution)
    try:
        from PIL.Image import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(item, Image):
        return _resized(_pil_pixels(item, label), resolution)
    raise UserError(
        f"{label}: a {type(item).__name__} is not an image. Pass a file path, a PIL image, a uint8 "
        "tensor (3, H, W) / (B, 3, H, W), or a float tensor in [-1, 1] of that shape."
    )


def read_image_file(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file the user gave → uint8 (3, H, W); one :class:`UserError` naming the file
    when it is missing, not a file, or cannot be decoded as an image."""
    from viscoin.data.transforms import load_image

    path = Path(path)
    if not path.exists():
        raise UserError(f"image file not found: {path}")
    if not path.is_file():
        raise UserError(f"{path} is not a file: give image files (PNG, JPEG, ...).")
    try:
        return load_image(path)
    except UserError:
        raise UserError(
            f"cannot decode {path} as an image: the file is corrupt or not an image "
            "(PNG, JPEG, WebP, BMP, ...)."
        ) from None


def _pil_pixels(image: Image, label: str) -> torch.Tensor:
    import numpy as np

    try:
        array = np.array(image.convert("RGB"))
    except Exception as exc:  # a lazily decoded PIL image can fail here, with many types
        raise UserError(f"{label}: the PIL image cannot be decoded ({exc}).") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _resized(pixels: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (3, H, W) or (B, 3, H, W) → the test transform's float (B, 3, R, R) in [−1, 1]."""
    from viscoin.data.transforms import build_transform, to_signed_float

    if pixels.shape[-2:] != (resolution, resolution):
        pixels = build_transform(resolution, augment=False)(pixels)
    pixels = to_signed_float(pixels)
    return pixels if pixels.ndim == 4 else pixels[None]


def _tensor(images: torch.Tensor, resolution: int, label: str) -> torch.Tensor:
    shape = tuple(images.shape)
    if images.ndim not in (3, 4):
        raise UserError(
            f"{label} has shape {shape}: give one image (3, H, W) or a batch (B, 3, H, W)."
        )
    batch = images if images.ndim == 4 else images[None]
    if batch.shape[0] == 0:
        raise UserError(f"{label} is an empty batch (shape {shape}).")
    if batch.shape[1] != 3:
        hint = (
            " It looks channels-last: use .permute(2, 0, 1) (or (0, 3, 1, 2) for a batch)."
            if batch.shape[-1] == 3
            else ""
        )
        raise UserError(f"{label} has shape {shape}: images need 3 channels (RGB) first.{hint}")
    if batch.dtype == torch.uint8:
        return _resized(batch.cpu(), resolution)
    if not batch.is_floating_point():
        raise UserError(
            f"{label} has dtype {batch.dtype}: give uint8 pixels in [0, 255] or float in [-1, 1]."
        )
    if batch.shape[-2:] != (resolution, resolution):
        raise UserError(
            f"{label} is {batch.shape[-2]}×{batch.shape[-1]} but this model takes "
            f"{resolution}×{resolution} images. Pass a file path, a PIL image or a uint8 tensor "
            "to have it resized and center-cropped as the test images are, or resize it yourself."
        )
    batch = batch.detach().cpu().float()
    if not torch.isfinite(batch).all():
        raise UserError(f"{label} holds NaN or infinite values.")
    low, high = (float(v) for v in torch.aminmax(batch))
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        if low >= -RANGE_TOLERANCE and high > 3:  # ImageNet normalisation reaches 2.64
            hint = (
                "it looks like [0, 255] pixels: pass them as uint8 (x.to(torch.uint8)) or "
                "convert with x / 127.5 - 1"
            )
        elif max(-low, high) <= 3:
            hint = (
                "it looks normalised (e.g. ImageNet mean/std): undo that, then map [0, 1] to "
                "[-1, 1] with x * 2 - 1"
            )
        else:
            hint = "rescale it to [-1, 1]"
        raise UserError(
            f"{label} has values in [{low:.3g}, {high:.3g}] but float images must be in [-1, 1]; "
            f"{hint}."
        )
    return batch
