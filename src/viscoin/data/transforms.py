"""Image decoding and the train/test transforms, from file bytes to a float tensor in [-1, 1].

Everything works on uint8 tensors (torchvision.transforms.v2) and converts to float only at the
end, which keeps resizing cheap. The one image range of the project is float32 in [-1, 1], CHW.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torchvision.transforms import v2

try:  # libjpeg-turbo/libpng decoding, ~30 % faster than Pillow; deprecated in torchvision 0.29
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # pragma: no cover - a torchvision without it: Pillow does everything
    decode_image = None

from viscoin.errors import UserError

# METHOD.md §2: test = Resize(292) + CenterCrop(256); keep that ratio at other resolutions.
TEST_RESIZE_RATIO = 292 / 256


def load_image(path: str | Path) -> torch.Tensor:
    """Decode an image file to a uint8 RGB tensor ``(3, H, W)``.

    Grayscale, RGBA (alpha dropped), CMYK and palette images come out RGB. Formats torchvision
    cannot decode (BMP, 16-bit PNG, ...) go through Pillow. A missing or corrupt file raises a
    :class:`UserError` naming it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"image file not found: {path}. The dataset looks incomplete: re-download or "
            "re-extract it."
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read image file {path}: {exc}") from None
    if not data:
        raise UserError(f"image file {path} is empty: re-download the dataset or delete that file.")
    return decode_image_bytes(data, path)


def decode_image_bytes(data: bytes, source: str | Path = "image") -> torch.Tensor:
    """Decode the bytes of an image file to a uint8 RGB tensor ``(3, H, W)``, as
    :func:`load_image` does; ``source`` names the bytes in the :class:`UserError` raised when they
    are not an image."""
    if decode_image is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                image = decode_image(
                    torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB
                )
            if image.dtype == torch.uint8:
                return image
        except RuntimeError:
            pass  # a format torchvision does not decode, or a broken file: Pillow decides
    return _load_with_pillow(data, source)


def _load_with_pillow(data: bytes, source: str | Path) -> torch.Tensor:
    import io

    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as pil:
            if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16/32-bit grayscale: scale to 8 bits instead of letting convert() clip it
                array = np.asarray(pil, dtype=np.float64)
                peak = max(float(array.max()), 1.0)
                gray = (array * (255.0 / (65535.0 if peak > 255 else 255.0))).round()
                array = np.repeat(gray.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
            else:
                array = np.array(pil.convert("RGB"))
    except Exception as exc:  # Pillow raises many types for a broken file
        raise UserError(
            f"cannot decode image {source} ({type(exc).__name__}: {exc}). The file is corrupt or "
            "not an image: re-download the dataset or delete that file."
        ) from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def crop_box(image: torch.Tensor, x0: float, y0: float, x1: float, y1: float) -> torch.Tensor:
    """Crop ``(3, H, W)`` to the pixel box [x0, x1) × [y0, y1), clipped to the image.

    A box that ends up empty (bad annotation) leaves the image uncropped.
    """
    height, width = image.shape[-2:]
    left, top = max(0, int(x0)), max(0, int(y0))
    right, bottom = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if right - left < 2 or bottom - top < 2:
        return image
    return image[..., top:bottom, left:right]


def build_transform(resolution: int, augment: bool) -> v2.Compose:
    """uint8 ``(3, H, W)`` → uint8 ``(3, R, R)``.

    ``augment``: RandomResizedCrop(R) + horizontal flip (training). Otherwise
    Resize(int(R·292/256)) of the short side + CenterCrop(R), as in METHOD.md §2.
    """
    if augment:
        steps = [v2.RandomResizedCrop(resolution, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [
            v2.Resize(int(resolution * TEST_RESIZE_RATIO), antialias=True),
            v2.CenterCrop(resolution),
        ]
    return v2.Compose(steps)


def to_signed_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1] (same shape)."""
    return image.to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255], as StyleGAN2-ADA writes images: ``x·127.5 + 128``,
    clipped, truncated (= rounding to nearest). Same shape, or (B, H, W, C) from (B, C, H, W) with
    ``channels_last`` (the layout of PNG writers)."""
    if channels_last:
        images = images.permute(0, 2, 3, 1)
    return (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
