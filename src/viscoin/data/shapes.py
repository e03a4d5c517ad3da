"""The built-in synthetic dataset: "bird-like" figures with known part attributes, drawn on the fly.

Image ``i`` of a split is drawn from a random generator seeded with ``(seed, split, i)``, so it is
the same on every machine and nothing is stored. Classes follow a documented rule over three part
attributes; the other attributes are nuisances independent of the class — which is what the
attribute-alignment metric needs to tell concepts that matter from concepts that do not.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from viscoin.data.base import VisionDataset
from viscoin.data.registry import register_dataset
from viscoin.errors import UserError

# Attribute values (index = value stored in all_attributes()). Body colours are saturated and
# far apart in hue; backgrounds are pale, so the body always stands out.
BODY_COLOURS = {
    "red": (0.86, 0.15, 0.13),
    "blue": (0.15, 0.32, 0.86),
    "yellow": (0.96, 0.80, 0.10),
    "green": (0.16, 0.62, 0.22),
}
WING_PATTERNS = ("solid", "striped", "dotted")
CRESTS = ("no", "yes")
TAIL_SHAPES = ("fan", "pointed", "square")
BEAK_COLOURS = {
    "orange": (1.0, 0.55, 0.0),
    "black": (0.08, 0.08, 0.08),
    "purple": (0.58, 0.2, 0.78),
}
BACKGROUNDS = ("pink", "lime", "cyan", "violet")  # hue bins centred on 0, 0.25, 0.5, 0.75
FACINGS = ("right", "left")

ATTRIBUTES: dict[str, list[str]] = {
    "body_colour": list(BODY_COLOURS),
    "wing_pattern": list(WING_PATTERNS),
    "head_crest": list(CRESTS),
    "tail_shape": list(TAIL_SHAPES),
    "beak_colour": list(BEAK_COLOURS),
    "background": list(BACKGROUNDS),
    "facing": list(FACINGS),
}
CLASS_DEFINING = ("body_colour", "wing_pattern", "head_crest")

# The class rule: class c is row c — one (body colour, wing pattern, crest) combination each.
# Every class differs from another one in a single attribute (0/1, 3/4, 6/7 by the crest only;
# 0/2, 3/5 by the wing pattern only; 2/3, 5/6, 1/8 by the body colour only), so each of the
# three attributes is needed to tell all classes apart.
CLASS_TABLE: tuple[tuple[str, str, str], ...] = (
    ("red", "solid", "no"),
    ("red", "solid", "yes"),
    ("red", "striped", "no"),
    ("blue", "striped", "no"),
    ("blue", "striped", "yes"),
    ("blue", "dotted", "no"),
    ("yellow", "dotted", "no"),
    ("yellow", "dotted", "yes"),
    ("green", "solid", "yes"),
    ("green", "dotted", "no"),
)
CLASS_NAMES = [
    f"{body}-{wing}-{'crest' if crest == 'yes' else 'bare'}" for body, wing, crest in CLASS_TABLE
]
_CLASS_CODES = np.array(
    [
        [ATTRIBUTES["body_colour"].index(b), WING_PATTERNS.index(w), CRESTS.index(c)]
        for b, w, c in CLASS_TABLE
    ]
)
_SPLIT_CODE = {"train": 0, "test": 1}

# Part geometry in the bird's frame: u forward (towards the beak), v down, in units of the bird
# size s (pixels). The figure spans u in [-0.58, 0.58] and v in [-0.50, 0.19].
BODY = (0.0, 0.0, 0.30, 0.19)  # ellipse centre u, v and semi-axes
WING = (-0.04, -0.01, 0.22, 0.125)
HEAD = (0.30, -0.17, 0.135)  # circle centre u, v and radius
EYE = (0.35, -0.20, 0.03)


class _Polygon(NamedTuple):
    """A convex polygon in the bird frame with its outward unit edge normals, both ``(n, 2)``."""

    points: np.ndarray
    normals: np.ndarray


def _polygon(*points: tuple[float, float]) -> _Polygon:
    corners = np.array(points, dtype=np.float32)
    edges = np.roll(corners, -1, axis=0) - corners
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    twice_area = np.sum(
        corners[:, 0] * np.roll(corners[:, 1], -1) - np.roll(corners[:, 0], -1) * corners[:, 1]
    )
    return _Polygon(corners, normals if twice_area > 0 else -normals)


BEAK = _polygon((0.40, -0.215), (0.40, -0.125), (0.58, -0.17))
CREST = _polygon((0.22, -0.25), (0.36, -0.27), (0.19, -0.50))
_FAN_ANGLES = np.linspace(-0.56, 0.56, 7)
TAILS = {
    "fan": _polygon(
        (-0.18, -0.02), *[(-0.18 - 0.36 * np.cos(a), -0.02 + 0.36 * np.sin(a)) for a in _FAN_ANGLES]
    ),
    "pointed": _polygon((-0.2, -0.10), (-0.2, 0.08), (-0.58, -0.07)),
    "square": _polygon((-0.2, -0.10), (-0.2, 0.08), (-0.50, 0.08), (-0.50, -0.10)),
}
EXTENT_U, EXTENT_V = (-0.58, 0.58), (-0.50, 0.19)
STRIPE_PERIOD, DOT_SPACING, DOT_RADIUS = 0.1, 0.1, 0.032
PATTERN_COLOUR = np.array((0.97, 0.97, 0.93), dtype=np.float32)
CREST_COLOUR = EYE_COLOUR = np.array((0.08, 0.08, 0.08), dtype=np.float32)


@register_dataset("shapes")
class Shapes(VisionDataset):
    """Synthetic birds: a body, wing, head, tail and beak on a pale background.

    Attributes (categorical, value = index):
      body_colour  red | blue | yellow | green     — defines the class
      wing_pattern solid | striped | dotted        — defines the class
      head_crest   no | yes                        — defines the class
      tail_shape   fan | pointed | square          — nuisance
      beak_colour  orange | black | purple         — nuisance
      background   pink | lime | cyan | violet (pale hue bins) — nuisance
      facing       right | left                    — nuisance
    plus continuous nuisances: size (55-78 % of the image), position, background hue /
    saturation / brightness gradient, a ±3 % colour jitter and Gaussian pixel noise (``noise``).

    Class rule: the class is drawn uniformly from 10 classes; class c fixes
    (body_colour, wing_pattern, head_crest) to row c of CLASS_TABLE:
      0 red solid bare     1 red solid crest     2 red striped bare    3 blue striped bare
      4 blue striped crest 5 blue dotted bare    6 yellow dotted bare  7 yellow dotted crest
      8 green solid crest  9 green dotted bare
    The nuisances are drawn independently of the class.

    Options: ``n_train`` (5000), ``n_test`` (1000), ``seed`` (0), ``noise`` (pixel noise std in
    [0, 1] units, 0.03). Images are drawn at the requested resolution (default 64). Training
    augmentation is only a small random translation (at most R/16, edges replicated): flips would
    turn "facing" and crops would cut parts the attributes describe, and the generator learns the
    raw images anyway.
    """

    needs_root = False
    renders_counterfactuals = True

    def __init__(
        self,
        root: Path | None,
        split: str,
        resolution: int,
        augment: bool,
        *,
        n_train: int = 5000,
        n_test: int = 1000,
        seed: int = 0,
        noise: float = 0.03,
    ) -> None:
        super().__init__(root, split, resolution, augment)
        count = n_train if split == "train" else n_test
        if count < 1:
            raise UserError(f"shapes: n_{split} must be at least 1, got {count}")
        if not 0.0 <= noise <= 1.0:
            raise UserError(f"shapes: noise must be between 0 and 1, got {noise}")
        self.seed, self.noise, self.count = seed, noise, count
        self.classes = list(CLASS_NAMES)
        self.attribute_names = list(ATTRIBUTES)
        self.attribute_values = {k: list(v) for k, v in ATTRIBUTES.items()}
        self.attribute_is_class_defining = [name in CLASS_DEFINING for name in ATTRIBUTES]
        # Only the attribute draws (the first few of each image's generator): ~10 µs per image.
        self._attributes = torch.from_numpy(
            np.stack([_sample_attributes(self._rng(i)) for i in range(count)])
        )
        self.labels = [_label_of(row) for row in self._attributes.numpy()]

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLIT_CODE[self.split], index])

    def all_attributes(self) -> torch.Tensor:
        """The 7 attributes of every image, LongTensor ``(N, 7)`` (order: ``attribute_names``)."""
        return self._attributes

    def render(self, index: int, **values: int) -> np.ndarray:
        """Image ``index`` before augmentation: float32 ``(R, R, 3)`` in [0, 1].

        ``values`` (attribute name → value index, e.g. ``body_colour=1``) draw the same image with
        those attributes changed and everything else — pose, size, background, noise — as it is:
        the counterfactuals that :mod:`viscoin.evaluate.recon_attributes` compares
        reconstructions with.
        """
        if not 0 <= index < self.count:
            raise IndexError(f"shapes: index {index} out of range for {self.count} images")
        override = {}
        for name, value in values.items():
            if name not in ATTRIBUTES:
                raise UserError(
                    f"shapes: unknown attribute '{name}'. Use one of: {', '.join(ATTRIBUTES)}"
                )
            if not 0 <= value < len(ATTRIBUTES[name]):
                raise UserError(
                    f"shapes: {name} must be a value index in [0, {len(ATTRIBUTES[name])}), got {value}"
                )
            override[list(ATTRIBUTES).index(name)] = int(value)
        return draw_bird(self._rng(index), self.resolution, self.noise, override)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.render(index)).permute(2, 0, 1).contiguous()
        image = image.mul_(2.0).sub_(1.0)  # [0, 1] → [-1, 1]
        if self.augment:
            image = _random_translate(image, max(1, self.resolution // 16))
        return image, self.labels[index]


def _label_of(attributes: np.ndarray) -> int:
    return int(np.flatnonzero((attributes[:3] == _CLASS_CODES).all(axis=1))[0])


def _sample_attributes(rng: np.random.Generator) -> np.ndarray:
    """The first draws of an image's generator: class, then the nuisance attributes."""
    label = rng.integers(len(CLASS_TABLE))
    tail, beak, background, facing = rng.integers((3, 3, 4, 2))
    return np.array([*_CLASS_CODES[label], tail, beak, background, facing], dtype=np.int64)


def draw_bird(
    rng: np.random.Generator,
    resolution: int,
    noise: float,
    override: dict[int, int] | None = None,
) -> np.ndarray:
    """Draw one bird from ``rng`` (attribute draws first, as in :func:`_sample_attributes`).

    ``override`` maps attribute positions (order of :data:`ATTRIBUTES`) to values that replace
    the drawn ones; every later draw is unchanged. Returns float32 ``(R, R, 3)`` in [0, 1]. Each
    part is an anti-aliased convex shape painted over the window it covers, with numpy operations
    on precomputed pixel-centre coordinates.
    """
    drawn = _sample_attributes(rng)
    for position, value in (override or {}).items():
        drawn[position] = value
    body, wing, crest, tail, beak, background, facing = drawn
    res = resolution
    # continuous nuisances
    size = res * rng.uniform(0.55, 0.78)
    room_u = res - (EXTENT_U[1] - EXTENT_U[0]) * size
    room_v = res - (EXTENT_V[1] - EXTENT_V[0]) * size
    cx = res / 2 + rng.uniform(-0.5, 0.5) * room_u
    cy = res / 2 - (EXTENT_V[0] + EXTENT_V[1]) / 2 * size + rng.uniform(-0.45, 0.45) * room_v
    hue = (background / 4 + rng.uniform(-0.06, 0.06)) % 1.0
    base = colorsys.hsv_to_rgb(hue, rng.uniform(0.12, 0.3), rng.uniform(0.8, 0.95))
    gradient = rng.uniform(-0.15, 0.15)
    jitter = rng.uniform(-0.03, 0.03, size=3)

    frame = _Frame(cx, cy, size, -1.0 if facing == 1 else 1.0, res)
    shade = 1.0 - np.float32(gradient) * (_grid(res) / res - 0.5)  # brightness top to bottom
    rows = shade[:, None] * np.asarray(base, dtype=np.float32)  # (R, 3)
    image = np.empty((res, res, 3), dtype=np.float32)
    image[:] = rows[:, None, :]

    body_rgb = np.clip(np.array(list(BODY_COLOURS.values())[body]) + jitter, 0, 1)
    frame.polygon(image, TAILS[TAIL_SHAPES[tail]], body_rgb * 0.7)
    frame.ellipse(image, BODY, body_rgb)
    wing_cover, window, (u, v) = frame.ellipse_cover(WING)
    if wing_cover is not None:
        _paint(image, window, wing_cover, body_rgb * 0.5)
        pattern = WING_PATTERNS[wing]
        if pattern != "solid":
            _paint(image, window, wing_cover * _pattern_cover(pattern, u, v, size), PATTERN_COLOUR)
    if CRESTS[crest] == "yes":
        frame.polygon(image, CREST, CREST_COLOUR)
    frame.ellipse(image, (*HEAD[:2], HEAD[2], HEAD[2]), body_rgb)
    frame.ellipse(image, (*EYE[:2], EYE[2], EYE[2]), EYE_COLOUR)
    frame.polygon(image, BEAK, np.array(list(BEAK_COLOURS.values())[beak]))
    if noise > 0:
        # luminance noise, one draw per pixel: a third of the cost of per-channel noise
        image += rng.standard_normal((res, res, 1), dtype=np.float32) * np.float32(noise)
    return np.clip(image, 0.0, 1.0, out=image)


@lru_cache(maxsize=8)
def _grid(resolution: int) -> np.ndarray:
    """Pixel-centre coordinates ``(R,)`` (the same for rows and columns); windows slice it."""
    return np.arange(resolution, dtype=np.float32) + 0.5


class _Frame:
    """Maps the bird frame (u, v in units of the bird size) to pixels, mirrored when facing left."""

    def __init__(self, cx: float, cy: float, size: float, direction: float, res: int) -> None:
        self.cx, self.cy, self.size, self.direction, self.res = cx, cy, size, direction, res
        self.axes = np.array([direction * size, size], dtype=np.float32)
        self.origin = np.array([cx, cy], dtype=np.float32)

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """Bird-frame points ``(n, 2)`` → pixel coordinates ``(n, 2)``."""
        return points * self.axes + self.origin

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        """Pixel rows/columns covering [x0, x1] × [y0, y1] plus one pixel for the soft edge."""
        c0, c1 = max(0, int(x0) - 1), min(self.res, int(np.ceil(x1)) + 1)
        r0, r1 = max(0, int(y0) - 1), min(self.res, int(np.ceil(y1)) + 1)
        return (slice(r0, r1), slice(c0, c1)) if c1 > c0 and r1 > r0 else None

    def ellipse_cover(
        self, spec: tuple[float, float, float, float]
    ) -> tuple[np.ndarray | None, tuple[slice, slice] | None, tuple[np.ndarray, np.ndarray]]:
        """Coverage of an ellipse in its window, and the window's bird-frame coordinates."""
        x, y = self.cx + self.direction * spec[0] * self.size, self.cy + spec[1] * self.size
        a, b = spec[2] * self.size, spec[3] * self.size
        window = self.window(x - a, y - b, x + a, y + b)
        if window is None:
            return None, None, (np.empty(0), np.empty(0))
        centres = _grid(self.res)
        px, py = centres[window[1]][None, :], centres[window[0]][:, None]
        dx, dy = (px - x) / a, (py - y) / b
        # (radius − 1) × the short semi-axis ≈ signed distance in pixels near the edge
        signed = (np.sqrt(dx * dx + dy * dy) - 1.0) * min(a, b)
        cover = np.clip(0.5 - signed, 0.0, 1.0)
        u = (px - self.cx) * (self.direction / self.size)
        v = (py - self.cy) / self.size
        return cover, window, (u, v)

    def ellipse(self, image: np.ndarray, spec: tuple[float, ...], colour: np.ndarray) -> None:
        cover, window, _ = self.ellipse_cover(spec)
        if cover is not None:
            _paint(image, window, cover, colour)

    def polygon(self, image: np.ndarray, shape: _Polygon, colour: np.ndarray) -> None:
        """Paint a convex polygon: signed distance = max over edges of the outward offset."""
        corners = self.to_pixels(shape.points)
        window = self.window(*corners.min(axis=0), *corners.max(axis=0))
        if window is None:
            return
        centres = _grid(self.res)
        px, py = centres[window[1]], centres[window[0]]
        # Mirroring u flips the normals' u component and keeps them outward.
        nx, ny = shape.normals[:, 0] * self.direction, shape.normals[:, 1]
        offsets = (corners[:, 0] * nx + corners[:, 1] * ny).astype(np.float32)
        signed = (
            (px[None, None, :] * nx[:, None, None] + py[None, :, None] * ny[:, None, None])
            - offsets[:, None, None]
        ).max(axis=0)
        _paint(image, window, np.clip(0.5 - signed, 0.0, 1.0), colour)


def _pattern_cover(pattern: str, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    """Coverage of the stripes (across the wing) or of the dot lattice, in the wing's window."""
    if pattern == "striped":
        phase = np.abs((u / STRIPE_PERIOD) % 1.0 - 0.5)  # 0 at a stripe's centre, 0.5 between
        signed = (phase - 0.25) * STRIPE_PERIOD * size
    else:
        du = (u / DOT_SPACING) % 1.0 - 0.5
        dv = (v / DOT_SPACING) % 1.0 - 0.5
        signed = (np.sqrt(du * du + dv * dv) * DOT_SPACING - DOT_RADIUS) * size
    return np.clip(0.5 - signed, 0.0, 1.0)


def _paint(image: np.ndarray, window: tuple[slice, slice], cover: np.ndarray, colour) -> None:
    """Alpha-blend ``colour`` into ``image[window]`` with per-pixel ``cover`` in [0, 1]."""
    region = image[window]
    colour = np.asarray(colour, dtype=np.float32)
    region += (colour - region) * cover[..., None].astype(np.float32, copy=False)


def _random_translate(image: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift ``(3, R, R)`` by up to ``max_shift`` pixels each way, replicating the edges."""
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,)))
    padded = F.pad(image[None], (max_shift,) * 4, mode="replicate")[0]
    res_y, res_x = image.shape[-2:]
    top, left = max_shift - dy, max_shift - dx
    return padded[:, top : top + res_y, left : left + res_x].contiguous()
