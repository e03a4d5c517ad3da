"""Adaptive discriminator augmentation (ADA) for ``viscoin train gan``.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (StyleGAN2-ADA),
§2–3 and Appendix B; the official pipeline is ``training/augment.py`` of NVlabs/stylegan2-ada-pytorch.
Every image the discriminator sees — real or generated, in D's loss, in R1 and in G's loss — goes
through :class:`AugmentPipe`; each augmentation is applied to an image with probability
``p × multiplier``, and :class:`AdaTuner` moves ``p`` so that r_t = E[sign D(real)] stays near a
target. The 'bgc' set is implemented: pixel blitting, general geometric and colour transforms.

How this differs from the official code, and why:

* Blitting (x-flip, 90° rotations, integer translation) is an exact gather of pixels with
  reflection at the borders, not folded into the resampling: the result is the flipped / rotated /
  shifted image bit for bit, for any filter.
* The general geometric transforms are composed into one 3×3 homogeneous matrix and applied in one
  resampling, anti-aliased by supersampling instead of the official wavelet up/downsampling: the
  reflect-padded image is sampled bilinearly at twice the output density (``grid_sample``), then
  low-passed and decimated by 2 with the Cohen–Daubechies–Feauveau (2, 4) analysis filter
  ``[3, -6, -16, 38, 90, 38, -16, -6, 3] / 128``. That filter is biorthogonal to linear
  interpolation, so the identity transform reproduces the image exactly (and a tiny transform
  changes it only a little: the result is continuous in the matrix); it is zero at the supersampled
  Nyquist frequency, so detail that shrinking pushes past the output's resolution is removed rather
  than folded back; it is symmetric, so no direction is favoured. It is a gentler low-pass than
  the official 12-tap sym6 wavelet, and bilinear sampling softens the finest detail a little more
  than the official interpolant.
* ``p`` is clamped to [0, 1] after each adjustment (the official code clamps at 0 only; above 1
  every probability is already saturated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from viscoin.config import GanConfig
from viscoin.errors import UserError

# CDF (2, 4) analysis low-pass g: with linear interpolation h = [1/2, 1, 1/2] as its synthesis
# partner, sum_k h[k] g[2n - k] = δ[n] (exact reconstruction of the identity transform).
_DECIMATE = tuple(t / 128 for t in (3, -6, -16, 38, 90, 38, -16, -6, 3))
_RADIUS = len(_DECIMATE) // 2  # 4: half-pixel samples on each side of an output pixel


# ---------------------------------------------------------------------------------------------
# Homogeneous matrices, batched: every argument is a (B,) tensor, the result (B, 3, 3) / (B, 4, 4).


def _matrix(rows: list[list[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    """Stack per-image entries (tensors (B,) or constants) into (B, len(rows), len(rows[0]))."""
    entries = [
        e if isinstance(e, torch.Tensor) else torch.full_like(like, e) for row in rows for e in row
    ]
    return torch.stack(entries, dim=-1).reshape(like.shape[0], len(rows), len(rows[0]))


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    """Rotation by θ of (x right, y down) coordinates: θ = π/2 maps (1, 0) to (0, 1)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def _constant(values: tuple, like: torch.Tensor) -> torch.Tensor:
    """``torch.tensor(values)`` in ``like``'s dtype on its device, made once per (values, device,
    dtype) and kept: a pass then copies nothing from the host, so it can be captured in a CUDA
    graph (a host buffer copied during capture would be read again at every replay). Read-only."""
    key = (values, like.device, like.dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype).to(like.device)
    return _CONSTANTS[key]


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _luma_axis(like: torch.Tensor) -> torch.Tensor:
    """v = (1, 1, 1, 0) / √3, the grey axis of RGB in homogeneous coordinates, shape (4,)."""
    return _constant((1, 1, 1, 0), like) / math.sqrt(3)


# ---------------------------------------------------------------------------------------------
# The random draws of one pass


@dataclass
class AugmentDraws:
    """The per-image parameters of one pass, each (B,) unless noted; neutral where not applied.

    Neutral values (0 flips, 0 turns, 0 shifts, scale 1, angle 0, brightness 0, contrast 1, no luma
    flip, hue 0, saturation 1) make that augmentation's matrix exactly the identity.
    """

    xflip: torch.Tensor  # 1: mirror left-right
    rotate90: torch.Tensor  # quarter turns, 0..3 (k = 1 is torch.rot90(x, 1, dims=(2, 3)))
    xint: torch.Tensor  # (B, 2) integer shift (x, y) in pixels
    scale: torch.Tensor  # isotropic magnification
    rotate_pre: torch.Tensor  # radians, before the anisotropic scaling
    aniso: torch.Tensor  # x magnified by s, y by 1/s
    rotate_post: torch.Tensor  # radians, after it
    xfrac: torch.Tensor  # (B, 2) fractional shift (x, y) in pixels
    brightness: torch.Tensor  # added to every channel
    contrast: torch.Tensor  # every channel multiplied by it (around 0, mid-grey)
    lumaflip: torch.Tensor  # 1: luma inverted, chroma kept
    hue: torch.Tensor  # radians of rotation around the grey axis
    saturation: torch.Tensor  # chroma multiplied by it

    def to(self, dtype: torch.dtype) -> AugmentDraws:
        return AugmentDraws(**{f.name: getattr(self, f.name).to(dtype) for f in fields(self)})

    def select(self, rows: slice | torch.Tensor) -> AugmentDraws:
        """The draws of the images ``rows`` picks (e.g. one process's share of a global batch)."""
        return AugmentDraws(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def blit_matrix(d: AugmentDraws) -> torch.Tensor:
    """Output → input pixel coordinates (centred, x right, y down) of the blit ops, (B, 3, 3).

    Applied in the order flip, rotation, translation; each factor is the inverse of its transform.
    """
    flip = scale2d(1 - 2 * d.xflip, torch.ones_like(d.xflip))
    turn = rotate2d(d.rotate90 * (math.pi / 2))
    shift = translate2d(-d.xint[:, 0], -d.xint[:, 1])
    return flip @ turn @ shift


def geometric_matrix(d: AugmentDraws) -> torch.Tensor:
    """Output → input pixel coordinates of the general geometric ops, (B, 3, 3).

    Order: isotropic scale, pre-rotation, anisotropic scale, post-rotation, fractional translation.
    """
    return (
        scale2d(1 / d.scale, 1 / d.scale)
        @ rotate2d(-d.rotate_pre)
        @ scale2d(1 / d.aniso, d.aniso)
        @ rotate2d(-d.rotate_post)
        @ translate2d(-d.xfrac[:, 0], -d.xfrac[:, 1])
    )


def color_matrix(d: AugmentDraws) -> torch.Tensor:
    """RGB(1) → RGB(1) of the colour ops, (B, 4, 4), applied in the order brightness, contrast,
    luma flip, hue rotation, saturation. Every factor is written so that its neutral value gives
    exactly the identity (e.g. saturation as I + (s − 1)(I − vvᵀ), not vvᵀ + s(I − vvᵀ)).
    """
    b = d.brightness
    eye = torch.eye(4, dtype=b.dtype, device=b.device).expand(b.shape[0], 4, 4)
    v = _luma_axis(b)
    vvt = torch.outer(v, v)
    brightness = _matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)
    c = d.contrast
    contrast = _matrix([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c)
    lumaflip = eye - 2 * vvt * d.lumaflip[:, None, None]  # Householder reflection across v⊥
    # Rodrigues: R = cos θ I + sin θ [v]× + (1 − cos θ) vvᵀ on the RGB block.
    cos, sin = torch.cos(d.hue), torch.sin(d.hue)
    # [v]×, the cross-product matrix of v (whose three components are all 1/√3).
    cross = _constant(((0, -1, 1, 0), (1, 0, -1, 0), (-1, 1, 0, 0), (0, 0, 0, 0)), b) / math.sqrt(3)
    rgb = torch.diag(_constant((1, 1, 1, 0), b))
    hue = eye + (cos - 1)[:, None, None] * (rgb - vvt) + sin[:, None, None] * cross
    saturation = eye + (d.saturation - 1)[:, None, None] * (rgb - vvt)
    return saturation @ hue @ lumaflip @ contrast @ brightness


# ---------------------------------------------------------------------------------------------
# Applying the matrices


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside [0, size) mirrored without repeating the edge (torch's 'reflect' padding)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index > size - 1, period - index, index)


def _centred_grid(
    height: int, width: int, step: float, start: float, like: torch.Tensor
) -> torch.Tensor:
    """Homogeneous centred coordinates (x, y, 1) of a grid of points, (Hs, Ws, 3).

    Point (i, j) sits at pixel index (start + i·step, start + j·step); pixel k's centre is at
    k − (size − 1)/2 in centred coordinates.
    """
    n_y, n_x = round((height - 1 - 2 * start) / step) + 1, round((width - 1 - 2 * start) / step) + 1
    ys = start + step * torch.arange(n_y, dtype=like.dtype, device=like.device) - (height - 1) / 2
    xs = start + step * torch.arange(n_x, dtype=like.dtype, device=like.device) - (width - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)


def blit(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Move whole pixels: output pixel q takes input pixel ``matrix @ q`` (reflected at borders).

    images (B, C, H, W); matrix (B, 3, 3) made of flips, quarter turns (square images only) and
    integer shifts, so every source position is a pixel centre. Pure indexing: exact, and linear in
    the images (R1's double backward goes through it).
    """
    b, c, h, w = images.shape
    grid = _centred_grid(h, w, 1.0, 0.0, matrix)
    source = torch.einsum("bij,yxj->byxi", matrix, grid)
    col = _reflect(torch.round(source[..., 0] + (w - 1) / 2).long(), w)
    row = _reflect(torch.round(source[..., 1] + (h - 1) / 2).long(), h)
    index = (row * w + col).reshape(b, 1, h * w).expand(b, c, h * w)
    return images.reshape(b, c, h * w).gather(2, index).reshape(b, c, h, w)


def _decimate(images: torch.Tensor) -> torch.Tensor:
    """Low-pass with the CDF (2, 4) filter and keep every second sample, separably; no padding.

    (B, C, 2H + 7, 2W + 7) → (B, C, H, W): output n is centred on input 2n + 4.
    """
    b, c, hs, ws = images.shape
    taps = _constant(_DECIMATE, images)
    x = images.reshape(b * c, 1, hs, ws)
    x = F.conv2d(x, taps.reshape(1, 1, 1, -1), stride=(1, 2))
    x = F.conv2d(x, taps.reshape(1, 1, -1, 1), stride=(2, 1))
    return x.reshape(b, c, x.shape[2], x.shape[3])


def bilinear_sample(
    images: torch.Tensor, col: torch.Tensor, row: torch.Tensor, reflect: bool = False
) -> torch.Tensor:
    """Bilinear samples of ``images`` (B, C, H, W) at pixel coordinates ``col``, ``row`` (B, Y, X)
    (pixel centres at integers) → (B, C, Y, X). Outside the image: zero, or with ``reflect`` the
    image mirrored at its borders (torch's 'reflect' padding) up to size − 1 pixels out, zero
    beyond — what sampling the image padded by size − 1 gives, without the padded copy and
    without asking the device how far the samples reach.

    ``F.grid_sample`` computes the same (align_corners=False, zero padding), but its backward has
    no derivative on CUDA (neither cuDNN's nor the native kernel's), and R1 differentiates D's
    gradient, which flows back through here. Written with ``gather``, whose backward is a scatter
    and whose double backward a gather again, it is differentiable to any order on every device.
    """
    b, c, h, w = images.shape
    flat = images.reshape(b, c, h * w)
    x0, y0 = col.floor(), row.floor()
    fx, fy = col - x0, row - y0
    out = images.new_zeros(b, c, col.shape[1] * col.shape[2])
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = (x0 + dx).long(), (y0 + dy).long()
        if reflect:
            inside = (xi >= 1 - w) & (xi <= 2 * w - 2) & (yi >= 1 - h) & (yi <= 2 * h - 2)
            xi, yi = _reflect(xi, w), _reflect(yi, h)
        else:
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        weight = (fx if dx else 1 - fx) * (fy if dy else 1 - fy) * inside
        index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(b, 1, -1)
        values = flat.gather(2, index.expand(b, c, index.shape[2]))
        out = out + values * weight.reshape(b, 1, -1).to(images.dtype)
    return out.reshape(b, c, col.shape[1], col.shape[2])


def resample(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Warp each image by ``matrix`` (output → input centred pixel coordinates) in one resampling.

    images (B, C, H, W), matrix (B, 3, 3) → (B, C, H, W). The input, mirrored at its borders up to
    size − 1 pixels out (zeros beyond), is sampled bilinearly at twice the output density, then
    decimated with the CDF (2, 4) low-pass (see the module docstring). No host sync.
    """
    h, w = images.shape[2:]
    # Output sample points every half pixel, from −2 to size + 1 (the 9 decimation taps around
    # each output pixel): (2H + 7, 2W + 7) points per image.
    grid = _centred_grid(h, w, 0.5, -_RADIUS / 2, matrix)
    source = torch.einsum("bij,yxj->byxi", matrix, grid)[..., :2]
    col = source[..., 0] + (w - 1) / 2
    row = source[..., 1] + (h - 1) / 2
    return _decimate(bilinear_sample(images, col, row, reflect=True))


def apply_color(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W) (or (B, 1, H, W): the mean of the RGB rows) × matrix (B, 4, 4)."""
    b, c, h, w = images.shape
    flat = images.reshape(b, c, h * w)
    if c == 3:
        out = matrix[:, :3, :3] @ flat + matrix[:, :3, 3:]
    elif c == 1:
        row = matrix[:, :3, :].mean(dim=1, keepdim=True)  # (B, 1, 4)
        out = flat * row[:, :, :3].sum(dim=2, keepdim=True) + row[:, :, 3:]
    else:
        raise ValueError(f"colour augmentation needs 1 or 3 channels, got {c}")
    return out.reshape(b, c, h, w)


# ---------------------------------------------------------------------------------------------
# The pipeline


class AugmentPipe(nn.Module):
    """The 'bgc' augmentations of StyleGAN2-ADA, each applied per image with probability p × its
    multiplier (a multiplier of 0 switches one off). (B, C, H, W) in [−1, 1] → same.

    Ranges are the official ones: integer shifts up to ``xint_max`` × size, log2-normal scales
    (std ``scale_std``, ``aniso_std``), rotations uniform in ±π·``rotate_max`` (1: full circle;
    pre- and post-rotation each with probability 1 − √(1 − p) so that one of them happens with
    probability p), normal fractional shifts (std ``xfrac_std`` × size), normal brightness (std
    ``brightness_std``), log2-normal contrast and saturation, hue uniform in ±π·``hue_max``.
    ``p`` is a 0-d buffer the trainer sets. Given the same ``generator`` state a pass makes the
    same draws.
    """

    def __init__(
        self,
        p: float = 0.0,
        *,
        xflip: float = 1,
        rotate90: float = 1,
        xint: float = 1,
        scale: float = 1,
        rotate: float = 1,
        aniso: float = 1,
        xfrac: float = 1,
        brightness: float = 1,
        contrast: float = 1,
        lumaflip: float = 1,
        hue: float = 1,
        saturation: float = 1,
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1.0,
        saturation_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))
        self.multipliers = {
            "xflip": xflip, "rotate90": rotate90, "xint": xint, "scale": scale, "rotate": rotate,
            "aniso": aniso, "xfrac": xfrac, "brightness": brightness, "contrast": contrast,
            "lumaflip": lumaflip, "hue": hue, "saturation": saturation,
        }  # fmt: skip
        self.xint_max, self.scale_std, self.rotate_max = xint_max, scale_std, rotate_max
        self.aniso_std, self.xfrac_std = aniso_std, xfrac_std
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std

    def draw(
        self,
        batch: int,
        height: int,
        width: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> AugmentDraws:
        """The random parameters of one pass for ``batch`` images of ``height`` × ``width``.

        Every draw is made whatever p is (float32, on ``device``), so the generator advances by
        the same amount in every pass.
        """
        m, p = self.multipliers, self.p.to(device)

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand([batch, *shape], device=device, generator=generator)

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn([batch, *shape], device=device, generator=generator)

        def chosen(probability: torch.Tensor | float, value: torch.Tensor, neutral: float):
            keep = uniform(*([1] * (value.ndim - 1))) < probability
            return torch.where(keep, value, torch.full_like(value, neutral))

        size = _constant((float(width), float(height)), p)
        xflip = chosen(m["xflip"] * p, torch.floor(uniform() * 2), 0)
        rotate90 = chosen(m["rotate90"] * p, torch.floor(uniform() * 4), 0)
        xint = chosen(m["xint"] * p, torch.round((uniform(2) * 2 - 1) * self.xint_max * size), 0)
        scale = chosen(m["scale"] * p, torch.exp2(normal() * self.scale_std), 1)
        # P(pre or post rotation) = p·multiplier: each with 1 − sqrt(1 − p·multiplier).
        p_rot = 1 - torch.sqrt((1 - m["rotate"] * p).clamp(0, 1))
        angle = math.pi * self.rotate_max
        rotate_pre = chosen(p_rot, (uniform() * 2 - 1) * angle, 0)
        aniso = chosen(m["aniso"] * p, torch.exp2(normal() * self.aniso_std), 1)
        rotate_post = chosen(p_rot, (uniform() * 2 - 1) * angle, 0)
        xfrac = chosen(m["xfrac"] * p, normal(2) * self.xfrac_std * size, 0)
        brightness = chosen(m["brightness"] * p, normal() * self.brightness_std, 0)
        contrast = chosen(m["contrast"] * p, torch.exp2(normal() * self.contrast_std), 1)
        lumaflip = chosen(m["lumaflip"] * p, torch.floor(uniform() * 2), 0)
        hue = chosen(m["hue"] * p, (uniform() * 2 - 1) * math.pi * self.hue_max, 0)
        saturation = chosen(m["saturation"] * p, torch.exp2(normal() * self.saturation_std), 1)
        return AugmentDraws(
            xflip, rotate90, xint, scale, rotate_pre, aniso, rotate_post, xfrac,
            brightness, contrast, lumaflip, hue, saturation,
        )  # fmt: skip

    def apply(
        self, images: torch.Tensor, draws: AugmentDraws, graph_safe: bool | None = None
    ) -> torch.Tensor:
        """Blit, then the geometric warp, then the colour transform, with fixed ``draws``.

        Images none of whose geometric draws were chosen skip the resampling (they stay exact).
        By default the pass asks the device which transforms any image needs and skips the others
        (a few host syncs). ``graph_safe`` (the default while a CUDA graph is being captured)
        never reads the device: every transform runs, each image taking its result only where
        its draws chose it, with the same result.
        """
        if graph_safe is None:
            graph_safe = images.is_cuda and torch.cuda.is_current_stream_capturing()
        h, w = images.shape[2:]
        d = draws.to(images.dtype)
        eye3 = torch.eye(3, dtype=images.dtype, device=images.device)
        if h != w and self.multipliers["rotate90"] > 0 and (graph_safe or d.rotate90.ne(0).any()):
            raise ValueError(f"90° rotations need square images, got {h}×{w}")
        blits = blit_matrix(d)
        if graph_safe or blits.ne(eye3).any():
            images = blit(images, blits)
        warps = geometric_matrix(d)
        warped = warps.ne(eye3).flatten(1).any(dim=1)
        if graph_safe or warped.any():
            images = torch.where(warped[:, None, None, None], resample(images, warps), images)
        colors = color_matrix(d)
        eye4 = torch.eye(4, dtype=images.dtype, device=images.device)
        if graph_safe:
            coloured = colors.ne(eye4).flatten(1).any(dim=1)
            images = torch.where(coloured[:, None, None, None], apply_color(images, colors), images)
        elif colors.ne(eye4).any():
            images = apply_color(images, colors)
        return images

    def forward(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        graph_safe: bool | None = None,
    ) -> torch.Tensor:
        """images (B, C, H, W) → augmented images of the same shape, draws from ``generator``
        (``graph_safe``: :meth:`apply`'s)."""
        b, _, h, w = images.shape
        return self.apply(images, self.draw(b, h, w, images.device, generator), graph_safe)


# ---------------------------------------------------------------------------------------------
# Tuning p and reading the configuration


class AdaTuner:
    """The ADA heuristic: every ``interval`` steps, p ← clamp(p + sign(r_t − target) · batch ·
    interval / (kimg · 1000), 0, 1), with r_t = E[sign D(real)] over the real logits D produced
    since the last adjustment (in D's main phase and in R1, as the official ``Loss/signs/real``).

    Under ``torch.distributed`` every observation is summed over the ranks as it is made, so each
    rank holds the global sums (the same ones, which a resume can restore on every rank) and
    computes the same p. ``batch`` is the global batch (images per step over all ranks).
    """

    def __init__(
        self, pipe: AugmentPipe, target: float, kimg: float, interval: int, batch: int
    ) -> None:
        self.pipe, self.target, self.interval = pipe, target, interval
        self.speed = batch * interval / (kimg * 1000)
        # [sum of signs, number of logits], kept on the device: no host sync per step.
        self.signs = torch.zeros(2, dtype=torch.float64, device=pipe.p.device)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Count the signs of D's logits on (augmented) real images, any shape (under
        ``torch.distributed``: those of every rank, one all-reduce)."""
        logits = real_logits.detach()
        total = torch.full([], logits.numel(), dtype=torch.float64, device=logits.device)
        counts = torch.stack([logits.sign().sum().double(), total])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        self.signs += counts

    def update(self, step: int) -> dict[str, torch.Tensor]:
        """After step ``step`` (1-based count of steps done): adjust p when ``step % interval == 0``.

        Returns ``{"ada_rt": r_t}`` when it adjusted, else ``{}``.
        """
        if step % self.interval:
            return {}
        rt = self.signs[0] / self.signs[1].clamp(min=1)
        adjust = torch.sign(rt - self.target) * self.speed
        self.pipe.p.copy_((self.pipe.p + adjust.to(self.pipe.p.dtype)).clamp(0, 1))
        self.signs.zero_()
        return {"ada_rt": rt.float()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"p": self.pipe.p.detach().cpu().clone(), "signs": self.signs.cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pipe.p.copy_(state["p"])
        self.signs.copy_(state["signs"])


@dataclass(frozen=True)
class AugmentSpec:
    """``gan.augment`` parsed: mode ``none`` | ``fixed`` | ``ada`` and the starting p."""

    mode: str
    p: float = 0.0


AUGMENT_FORMS = "'ada' (p tuned from D's outputs), 'fixed:P' with 0 ≤ P ≤ 1, or 'none'"


def parse_augment(text: str) -> AugmentSpec:
    """``"ada"`` → ada from p = 0; ``"fixed:0.3"`` → fixed p = 0.3; ``"none"`` → off."""
    value = str(text).strip().lower()
    if value in ("true", "false"):
        raise UserError(
            f"gan.augment is not an on/off switch any more (got {text!r}): use {AUGMENT_FORMS}."
        )
    if value in ("none", "ada"):
        return AugmentSpec(value)
    if value.startswith("fixed:"):
        try:
            p = float(value[len("fixed:") :])
        except ValueError:
            p = math.nan
        if not 0 <= p <= 1:
            raise UserError(
                f"gan.augment={text!r}: the fixed probability must be a number in [0, 1], "
                "e.g. gan.augment=fixed:0.2."
            )
        return AugmentSpec("fixed", p)
    raise UserError(f"unknown gan.augment={text!r}: use {AUGMENT_FORMS}.")


def check_augment_config(g: GanConfig) -> AugmentSpec:
    """Validate ``gan.augment`` and the ``gan.ada_*`` fields; the parsed spec."""
    spec = parse_augment(g.augment)
    if not 0 < g.ada_target < 1:
        raise UserError(
            f"gan.ada_target={g.ada_target} must be strictly between 0 and 1 "
            "(the target of E[sign D(real)]; the paper uses 0.6)."
        )
    if not g.ada_kimg > 0:
        raise UserError(
            f"gan.ada_kimg={g.ada_kimg} must be positive (thousands of images for p to go 0 → 1)."
        )
    if g.ada_interval < 1:
        raise UserError(f"gan.ada_interval={g.ada_interval} must be at least 1 step.")
    return spec
