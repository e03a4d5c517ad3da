"""The StyleGAN2 generator (mapping + synthesis), its file format and image sampling.

``Generator(z, c)`` = ``synthesis(mapping(z, c))``. A generator is saved as one safetensors file
(kind ``stylegan2.generator``, constructor arguments as JSON metadata) that rebuilds it alone.
``sample`` reproduces the official ``generate.py``: same z per seed, same uint8 conversion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from viscoin.data.transforms import to_uint8
from viscoin.errors import UserError
from viscoin.models.stylegan2.mapping import MappingNetwork
from viscoin.models.stylegan2.synthesis import SynthesisNetwork
from viscoin.utils.checkpoint import build_checked, load_checkpoint, save_checkpoint

GENERATOR_KIND = "stylegan2.generator"


class Generator(nn.Module):
    """StyleGAN2 generator: z (B, z_dim) and one-hot c (B, c_dim) → images (B, img_channels, R, R).

    ``mapping_kwargs`` go to :class:`MappingNetwork` (e.g. ``num_layers``); synthesis options
    (``channel_base``, ``channel_max``, ``num_fp16_res``, ``conv_clamp``, ``architecture``, ...)
    are given as ``synthesis_kwargs`` or as keyword arguments, as in the two official releases.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: Mapping[str, Any] | None = None,
        synthesis_kwargs: Mapping[str, Any] | None = None,
        **more_synthesis_kwargs: Any,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.mapping_kwargs = dict(mapping_kwargs or {})
        self.synthesis_kwargs = {**(synthesis_kwargs or {}), **more_synthesis_kwargs}
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            **self.synthesis_kwargs,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **self.mapping_kwargs
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        noise_mode: str = "const",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        """z: (B, z_dim), c: (B, c_dim) (ignored when c_dim = 0) → images (B, img_channels, R, R)."""
        ws = self.mapping(
            z,
            c,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
        )
        return self.synthesis(
            ws, noise_mode=noise_mode, force_fp32=force_fp32, fused_modconv=fused_modconv
        )

    def to_config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-able dict: ``Generator(**g.to_config())`` rebuilds ``g``."""
        return jsonable(
            {
                "z_dim": self.z_dim,
                "c_dim": self.c_dim,
                "w_dim": self.w_dim,
                "img_resolution": self.img_resolution,
                "img_channels": self.img_channels,
                "mapping_kwargs": self.mapping_kwargs,
                "synthesis_kwargs": self.synthesis_kwargs,
            }
        )

    @property
    def config(self) -> dict[str, Any]:
        """Same as :meth:`to_config`."""
        return self.to_config()


def jsonable(value: Any) -> Any:
    """Tuples → lists, numpy scalars → Python numbers, keys → str (for JSON metadata)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_generator(G: Generator, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``G`` (all parameters and buffers, incl. ``w_avg`` and the noise images) atomically."""
    return save_checkpoint(path, G.state_dict(), GENERATOR_KIND, G.to_config(), extra=extra)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Rebuild a generator saved by :func:`save_generator` or ``viscoin gan convert``.

    Returned in eval mode with ``requires_grad=False`` (it is used frozen).
    """
    tensors, config, _ = load_checkpoint(path, kind=GENERATOR_KIND)
    G = build_from_checkpoint(Generator, config, tensors, path)
    return G.eval().requires_grad_(False).to(device)


def build_from_checkpoint(
    cls: type[nn.Module], config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], path: Any
) -> nn.Module:
    """``cls(**config)`` with ``tensors`` loaded strictly; the config is checked against the
    tensors before anything is allocated (:func:`viscoin.utils.checkpoint.build_checked`)."""
    module = build_checked(cls, config, tensors, path)
    return module


def class_label(G: Generator, class_idx: int | None, device: torch.device) -> torch.Tensor:
    """The (1, c_dim) label ``generate.py`` uses: one-hot for a conditional G, empty otherwise."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim != 0:
        if class_idx is None:
            raise UserError(
                f"this generator is conditional ({G.c_dim} classes): give a class with --class N."
            )
        if not 0 <= class_idx < G.c_dim:
            raise UserError(f"--class {class_idx} is out of range: use 0 to {G.c_dim - 1}.")
        label[:, class_idx] = 1
    return label


def seed_latent(G: Generator, seed: int) -> torch.Tensor:
    """The official z of a seed: ``RandomState(seed).randn(1, z_dim)`` (float64, (1, z_dim))."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))


@torch.no_grad()
def sample(
    G: Generator,
    seeds: Sequence[int],
    class_idx: int | None = None,
    truncation: float = 1.0,
    noise_mode: str = "const",
) -> torch.Tensor:
    """One image per seed, exactly as the official ``generate.py``: → (N, R, R, C) uint8 on CPU.

    Images are generated one seed at a time (as the official script does), so a seed's image does
    not depend on the other seeds asked for.
    """
    device = next(G.parameters()).device
    label = class_label(G, class_idx, device) if G.c_dim else torch.zeros([1, 0], device=device)
    images = []
    for seed in seeds:
        z = seed_latent(G, seed).to(device)
        img = G(z, label, truncation_psi=truncation, noise_mode=noise_mode)
        images.append(to_uint8(img, channels_last=True).cpu())
    return (
        torch.cat(images)
        if images
        else torch.zeros([0, G.img_resolution, G.img_resolution, G.img_channels], dtype=torch.uint8)
    )


def image_grid(images: torch.Tensor, columns: int | None = None) -> np.ndarray:
    """(N, H, W, C) uint8 → one (rows·H, columns·W, C) uint8 array; ``columns`` defaults to ⌈√N⌉."""
    n, h, w, c = images.shape
    columns = columns or max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, -(-n // columns))
    grid = np.zeros([rows * h, columns * w, c], dtype=np.uint8)
    for i, image in enumerate(images.cpu().numpy()):
        row, col = divmod(i, columns)
        grid[row * h : (row + 1) * h, col * w : (col + 1) * w] = image
    return grid


def save_image(array: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, C) uint8 array as PNG (greyscale when C = 1), atomically."""
    from PIL import Image

    from viscoin.utils.io import atomic_write

    path = Path(path)
    image = Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path


def write_samples(
    images: torch.Tensor, seeds: Sequence[int], out_dir: str | Path, grid: bool = False
) -> list[Path]:
    """Save (N, H, W, C) uint8 samples as ``seedXXXX.png`` (the official names), plus ``grid.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        save_image(image.numpy(), out_dir / f"seed{seed:04d}.png")
        for seed, image in zip(seeds, images, strict=True)
    ]
    if grid and len(images):
        paths.append(save_image(image_grid(images), out_dir / "grid.png"))
    return paths
