"""Decoding every common image mode to RGB, corrupt files, and the train/test transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.builders import write_image
from viscoin.data.transforms import (
    build_transform,
    crop_box,
    load_image,
    to_signed_float,
    to_uint8,
)
from viscoin.errors import UserError


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("gray.jpg", "L"),
        ("rgba.png", "RGBA"),
        ("cmyk.jpg", "CMYK"),
        ("palette.png", "P"),
        ("gray_alpha.png", "LA"),
        ("plain.bmp", "RGB"),
        ("plain.webp", "RGB"),
    ],
)
def test_every_mode_comes_out_rgb(tmp_path, name, mode):
    path = write_image(tmp_path / name, (37, 21), mode=mode)
    image = load_image(path)
    assert image.shape == (3, 21, 37) and image.dtype == torch.uint8
    # same pixels as Pillow's own RGB conversion (JPEG decoders differ by a few levels)
    with Image.open(path) as pil:
        reference = torch.from_numpy(np.asarray(pil.convert("RGB")).copy()).permute(2, 0, 1)
    assert (image.float() - reference.float()).abs().mean() < 4


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(path)
    image = load_image(path)
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8 and int(image.min()) == 255


@pytest.mark.parametrize("content", [b"definitely not an image" * 4, b"", "truncated"])
def test_corrupt_file_is_a_user_error_naming_it(tmp_path, content):
    path = tmp_path / "broken.jpg"
    if content == "truncated":
        write_image(path, (40, 30))
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(UserError, match="broken.jpg"):
        load_image(path)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found: .*gone.png"):
        load_image(tmp_path / "gone.png")


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("resolution", [32, 48])
def test_transforms_give_square_images_in_range(augment, resolution):
    image = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)
    out = to_signed_float(build_transform(resolution, augment)(image))
    assert out.shape == (3, resolution, resolution) and out.dtype == torch.float32
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0


def test_test_transform_resizes_short_side_by_292_over_256_then_crops_centre():
    # a constant-columns image: the centre crop keeps the middle columns
    image = torch.arange(100, dtype=torch.uint8).repeat(3, 100, 1)
    out = build_transform(64, augment=False)(image)
    resized = int(64 * 292 / 256)
    assert resized == 73
    left = (resized - 64) // 2
    expected = (torch.arange(resized) * 100 / resized).round()[left : left + 64]
    assert (out[0, 0].float() - expected).abs().max() <= 2


def test_signed_float_round_trip():
    image = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    signed = to_signed_float(image)
    assert float(signed.min()) == -1.0 and float(signed.max()) == 1.0
    assert torch.equal(to_uint8(signed), image)


def test_crop_box_clips_and_ignores_empty_boxes():
    image = torch.zeros(3, 30, 40, dtype=torch.uint8)
    assert crop_box(image, 4.0, 3.5, 24.0, 18.75).shape == (3, 16, 20)
    assert crop_box(image, -5, -5, 100, 100).shape == (3, 30, 40)
    assert crop_box(image, 10, 10, 10.5, 10.5).shape == (3, 30, 40)
