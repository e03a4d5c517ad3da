"""The few low-level ops StyleGAN2 needs, in plain PyTorch (no compiled extensions).

FIR resampling (``upfirdn2d``), fused bias + activation (``bias_act``), convolution with
up/downsampling (``conv2d_resample``) and the modulated convolution of the synthesis network.
Each one computes what the official StyleGAN2-ADA op of the same name computes (same padding
conventions, same gains), written with stock convolutions so it runs on any device and supports
the double backward that R1 and path-length regularisation need.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakTensorKeyDictionary

Padding = int | Sequence[int]


# ---------------------------------------------------------------------------------------------
# FIR filters and upfirdn2d


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1), gain: float = 1.0) -> torch.Tensor:
    """A 2-D low-pass FIR filter (the outer product of ``taps``), normalised to unit DC gain.

    ``[1, 3, 3, 1]`` gives the (4, 4) float32 filter StyleGAN2 stores as ``resample_filter``.
    """
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1:
        f = torch.outer(f, f)
    f = f / f.sum()
    return f * gain


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """``p``, ``[px, py]`` or ``[px0, px1, py0, py1]`` → ``(px0, px1, py0, py1)``."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def _depthwise(f: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """The same 2-D filter for every channel, as a grouped-conv weight (C, 1, fh, fw)."""
    return f.to(dtype)[None, None].repeat(channels, 1, 1, 1)


# What is derived from each filter tensor (a module's resample_filter buffer): (the filter's
# version, {key: value}), e.g. the grouped-convolution weights per (channels, dtype, gain, flip,
# inference mode); building one takes four small operations per FIR filter call, and a training
# step makes dozens of such calls with the same few filters. Keyed weakly: an entry goes with its
# filter tensor (e.g. after .to(device)).
_FILTER_CACHE: WeakTensorKeyDictionary = WeakTensorKeyDictionary()


def _derived(f: torch.Tensor) -> dict:
    """The cache of what was derived from ``f``, emptied when ``f`` has changed in place (e.g. by
    ``load_state_dict``) since."""
    version, derived = _FILTER_CACHE.get(f, (None, {}))
    if version != f._version:  # new, or changed in place: what was derived is stale
        derived = {}
        _FILTER_CACHE[f] = (f._version, derived)
    return derived


def _fir_weight(
    f: torch.Tensor, channels: int, dtype: torch.dtype, gain: float, flip: bool
) -> torch.Tensor:
    """The grouped-conv weight (C, 1, fh, fw) of the filter ``f`` times ``gain``, flipped in both
    directions if ``flip``, in ``dtype``: built once per filter tensor and key, and again when the
    filter has changed in place (e.g. by ``load_state_dict``)."""

    def build() -> torch.Tensor:
        kernel = f * gain if gain != 1 else f
        return _depthwise(kernel.flip([0, 1]) if flip else kernel, channels, dtype)

    if f.requires_grad:  # a filter being learnt: nothing to reuse, and its gradient must flow
        return build()
    weights = _derived(f)
    key = (channels, dtype, gain, flip, torch.is_inference_mode_enabled())
    if key not in weights:
        weights[key] = build()
    return weights[key]


# How eager upfirdn2d filters with StyleGAN2's own [1, 3, 3, 1] filter: ``conv`` (depthwise
# convolutions, the fastest on CPUs), ``pool`` (three 2×2 average poolings, and a bilinear ×2 for
# the upsampling: the same numbers from memory-bound kernels, where GPUs run depthwise
# convolutions slowly), ``matmul`` (the separable filter as two matrix products, one per axis,
# with the zero insertion, padding and subsampling in the matrices: the fastest measured on an
# H200) or ``auto`` (``matmul`` on CUDA, ``conv`` elsewhere). Other filters always take the
# convolutions.
# Under torch.compile, the filter is either ``pointwise`` (a weighted sum of shifted views, which
# Inductor fuses with the element-wise work around it) or ``matmul`` (as above; for callers that
# have checked with :func:`standard_filters` that every filter is the standard one).
COMPILED_FIR_IMPLS = ("pointwise", "matmul")
_IMPL_CHOICES = {
    "FIR": ("auto", "conv", "pool", "matmul"),
    "compiled FIR": COMPILED_FIR_IMPLS,
    "upsample": ("transpose", "subpixel"),
}
_impl = {"FIR": "auto", "compiled FIR": "pointwise", "upsample": "transpose"}  # the current choices


@contextlib.contextmanager
def _use_impl(kind: str, impl: str) -> Iterator[None]:
    if impl not in _IMPL_CHOICES[kind]:
        raise ValueError(f"{kind} impl must be one of {_IMPL_CHOICES[kind]}, not {impl!r}")
    previous, _impl[kind] = _impl[kind], impl
    try:
        yield
    finally:
        _impl[kind] = previous


def use_fir_impl(impl: str) -> contextlib.AbstractContextManager[None]:
    """Within the block, :func:`upfirdn2d` filters with ``impl`` (``auto`` | ``conv`` | ``pool`` |
    ``matmul``)."""
    return _use_impl("FIR", impl)


def use_compiled_fir_impl(impl: str) -> contextlib.AbstractContextManager[None]:
    """Within the block, :func:`upfirdn2d` under ``torch.compile`` filters with ``impl``
    (``pointwise`` | ``matmul``). ``matmul`` takes every 4×4 filter for the standard one (a
    compiled graph cannot compare values): check the model with :func:`standard_filters` first."""
    return _use_impl("compiled FIR", impl)


_STANDARD_FILTER = setup_filter()


def standard_filters(module: torch.nn.Module) -> bool:
    """Whether every resampling filter of ``module`` (its buffers named ``resample_filter``) is
    the standard [1, 3, 3, 1] one (compared on the host: call it outside a compiled graph)."""
    return all(
        _is_standard_filter(b)
        for name, b in module.named_buffers()
        if name.rsplit(".", 1)[-1] == "resample_filter"
    )


def _is_standard_filter(f: torch.Tensor) -> bool:
    """Whether ``f`` is the standard filter, read once per filter version (the comparison waits
    for the device, so it is made before a CUDA graph is captured, not inside)."""
    if f.requires_grad or tuple(f.shape) != (4, 4):
        return False
    derived = _derived(f)
    if "standard" not in derived:
        derived["standard"] = torch.equal(f.detach().float().cpu(), _STANDARD_FILTER)
    return derived["standard"]


def _fir_pooled(
    x: torch.Tensor, up: int, down: int, pad: tuple[int, int, int, int], gain: float
) -> torch.Tensor | None:
    """:func:`upfirdn2d` with the standard filter from pooling and interpolation, or ``None``
    where that form does not apply.

    [1, 3, 3, 1] / 8 is the 2-tap box [1, 1] / 2 applied three times, so the 2-D filter is three
    2×2 average poolings of stride 1 (the last of stride ``down``), each adding at most one row of
    zero padding per side (pooled zeros stay zeros, so padding early equals padding once at the
    start). Zero insertion by 2 with the filter and gain 4, padded as :func:`upsample2d` pads, is
    bilinear interpolation ×2 (weights 3/4, 1/4) of the image with one zero row around it.
    """
    px0, px1, py0, py1 = pad
    if up == 1 and down in (1, 2) and px0 == px1 and py0 == py1 and min(px0, py0) >= 0:
        if max(px0, py0) > 3:
            return None
        for k in range(3):
            x = F.avg_pool2d(
                x,
                2,
                stride=down if k == 2 else 1,
                padding=(int(k < py0), int(k < px0)),
                divisor_override=1 if k == 0 and gain == 4 else None,  # a 2×2 sum: 4 × the mean
            )
        return x if gain in (1, 4) else x * gain
    if up == 2 and down == 1 and pad == (2, 1, 2, 1) and gain == 4:
        x = F.interpolate(F.pad(x, [1, 1, 1, 1]), scale_factor=2, mode="bilinear")
        return x[:, :, 2:-2, 2:-2]
    return None


_TAPS = (1 / 8, 3 / 8, 3 / 8, 1 / 8)  # the standard filter is outer(_TAPS, _TAPS)
# (size, up, down, pad0, pad1, gain, dtype, device) → the (out, size) matrix of one axis
_FIR_MATRICES: dict[tuple, torch.Tensor] = {}


def _fir_matrix(
    size: int, up: int, down: int, pad0: int, pad1: int, gain: float, like: torch.Tensor
) -> torch.Tensor:
    """The 1-D upfirdn of the standard taps as an (out, size) matrix: out[k] = Σᵢ M[k, i] x[i]
    with x zero-inserted by ``up``, padded by (pad0, pad1), filtered and subsampled by ``down``
    (times ``gain``). Built once per shape and kept (the comparison of a later call copies nothing
    from the host, so a CUDA graph can capture it); built inside the graph when compiling."""
    if torch.compiler.is_compiling():
        matrix = _build_fir_matrix(size, up, down, pad0, pad1, gain, like.device, torch.float32)
        return matrix.to(like.dtype)
    key = (size, up, down, pad0, pad1, gain, like.dtype, like.device)
    if key not in _FIR_MATRICES:
        matrix = _build_fir_matrix(size, up, down, pad0, pad1, gain, torch.device("cpu"))
        _FIR_MATRICES[key] = matrix.to(like.dtype).to(like.device)
    return _FIR_MATRICES[key]


def _build_fir_matrix(
    size: int,
    up: int,
    down: int,
    pad0: int,
    pad1: int,
    gain: float,
    device: torch.device,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """:func:`_fir_matrix`'s entries (multiples of 1/8 times ``gain``) in ``dtype`` on ``device``."""
    out = (size * up + pad0 + pad1 - len(_TAPS)) // down + 1
    k = torch.arange(out, device=device)[:, None]
    i = torch.arange(size, device=device)[None, :]
    m = torch.zeros(out, size, device=device, dtype=dtype)
    for t, tap in enumerate(_TAPS):  # symmetric: the true convolution is the correlation
        # output k reads position k·down + t − pad0 of the zero-inserted signal: input i if that is i·up
        m = m + (k * down + t - pad0 == i * up).to(dtype) * (tap * gain)
    return m


def _fir_matmul(
    x: torch.Tensor, up: int, down: int, pad: tuple[int, int, int, int], gain: float
) -> torch.Tensor:
    """:func:`upfirdn2d` with the standard filter as x @ Mxᵀ, then My @ that: two matrix products
    whose backward and double backward are matrix products again."""
    px0, px1, py0, py1 = pad
    mx = _fir_matrix(x.shape[3], up, down, px0, px1, gain, x)
    my = _fir_matrix(x.shape[2], up, down, py0, py1, 1.0, x)
    return torch.matmul(my, torch.matmul(x, mx.t()))


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR filter ``f``, keep every ``down``-th pixel.

    x: (B, C, H, W); f: (fh, fw) 2-D filter (``None`` = identity). ``padding`` is with respect to
    the upsampled image and may be negative (cropping). ``flip_filter=False`` is a true convolution.
    Returns (B, C, (H*up + py0 + py1 - fh + 1) / down, ...), like ``scipy.signal.upfirdn``.
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    px0, px1, py0, py1 = _parse_padding(padding)
    fh, fw = f.shape
    channels = x.shape[1]
    if torch.compiler.is_compiling():
        if _impl["compiled FIR"] == "matmul" and (fh, fw) == (4, 4) and not f.requires_grad:
            return _fir_matmul(x, up, down, (px0, px1, py0, py1), gain)
        return upfirdn2d_pointwise(x, f * gain, up, down, (px0, px1, py0, py1), flip_filter)
    impl = _impl["FIR"]
    matmul = impl == "matmul" or (impl == "auto" and x.is_cuda)
    if (matmul or impl == "pool") and _is_standard_filter(f):  # symmetric: any flip
        if matmul:
            return _fir_matmul(x, up, down, (px0, px1, py0, py1), gain)
        y = _fir_pooled(x, up, down, (px0, px1, py0, py1), gain)
        if y is not None:
            return y

    if up > 1:
        # Zero insertion followed by a convolution is exactly a transposed convolution with stride
        # `up` (which applies its kernel unflipped, i.e. as a true convolution). Its full output
        # starts fh - 1 - py0 rows before the official one and ends fh - up - py1 rows after it.
        weight = _fir_weight(f, channels, x.dtype, gain, flip=flip_filter)
        crop = [px0 - (fw - 1), px1 - (fw - up), py0 - (fh - 1), py1 - (fh - up)]
        (cx0, cx1, cy0, cy1) = (-c for c in crop)
        if 0 <= cx0 - cx1 < up and 0 <= cy0 - cy1 < up and min(cx1, cy1) >= 0:
            # a crop of (cx0, cx1) is the transposed convolution's padding cx0 with cx0 - cx1
            # rows given back at the end: no separate copy of the output
            x = F.conv_transpose2d(
                x,
                weight,
                stride=up,
                padding=(cy0, cx0),
                output_padding=(cy0 - cy1, cx0 - cx1),
                groups=channels,
            )
        else:
            x = F.conv_transpose2d(x, weight, stride=up, groups=channels)
            x = F.pad(x, crop)
        return x[:, :, ::down, ::down] if down > 1 else x

    # conv2d computes a correlation, so a true convolution needs the flipped filter; keeping
    # every down-th output pixel is the convolution's stride. Symmetric padding is the
    # convolution's own (F.pad would copy the input, even for zero padding).
    weight = _fir_weight(f, channels, x.dtype, gain, flip=not flip_filter)
    if px0 == px1 and py0 == py1 and min(px0, py0) >= 0:
        return F.conv2d(x, weight, stride=down, padding=(py0, px0), groups=channels)
    x = F.pad(x, [px0, px1, py0, py1])
    return F.conv2d(x, weight, stride=down, groups=channels)


def upfirdn2d_pointwise(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    flip_filter: bool = False,
) -> torch.Tensor:
    """:func:`upfirdn2d` as a weighted sum of shifted views (``f`` already scaled by the gain).

    The same numbers as the depthwise-convolution form, written as element-wise arithmetic that
    ``torch.compile`` fuses into one memory-bound kernel (cuDNN's depthwise convolutions on large
    activations, and their backward, are slow). Used when compiling; eager mode keeps the convolutions.
    """
    px0, px1, py0, py1 = padding
    fh, fw = f.shape
    batch, channels, height, width = x.shape
    if up > 1:  # zero insertion: each pixel followed by up - 1 zeros in both directions
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [px0, px1, py0, py1])
    kernel = f if flip_filter else f.flip([0, 1])  # a true convolution correlates with flip(f)
    kernel = kernel.to(x.dtype)
    out_h = (x.shape[2] - fh) // down + 1
    out_w = (x.shape[3] - fw) // down + 1
    out = None
    for i in range(fh):
        for j in range(fw):
            view = x[
                :, :, i : i + down * (out_h - 1) + 1 : down, j : j + down * (out_w - 1) + 1 : down
            ]
            term = view * kernel[i, j]
            out = term if out is None else out + term
    return out


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H*up, W*up): zero insertion + FIR filter, gain ``up**2`` keeps the DC level."""
    fh, fw = f.shape
    padding = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=padding, gain=up**2)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H/down, W/down): FIR low-pass filter, then keep every ``down``-th pixel."""
    fh, fw = f.shape
    padding = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=padding)


# ---------------------------------------------------------------------------------------------
# bias + activation


def _lrelu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.leaky_relu(x, alpha)


# name -> (function(x, alpha), default alpha, default gain). The gains keep the signal magnitude
# of a unit-variance input (He initialisation), e.g. sqrt(2) after a (leaky) ReLU.
ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], float, float]] = {
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": (_lrelu, 0.2, math.sqrt(2)),
    "tanh": (lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": (lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": (lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def activation_gain(act: str) -> float:
    """The default output gain of activation ``act`` (``sqrt(2)`` for lrelu)."""
    return ACTIVATIONS[act][2]


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    dim: int = 1,
) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)``; ``b`` is added along dimension ``dim``.

    ``gain=None`` uses the activation's default gain; ``clamp=None`` disables the clamp.
    """
    func, default_alpha, default_gain = ACTIVATIONS[act]
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = func(x, float(default_alpha if alpha is None else alpha))
    gain = float(default_gain if gain is None else gain)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x²) + eps)`` along ``dim`` (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ---------------------------------------------------------------------------------------------
# convolution with resampling


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    """conv2d / conv_transpose2d; ``flip_weight=False`` turns conv2d's correlation into a convolution."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    op = F.conv_transpose2d if transpose else F.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


# How conv2d_resample does the strided transposed convolution of its upsampling case:
# "transpose" (F.conv_transpose2d) or "subpixel" (stride² stride-1 convolutions on the input, one per
# output phase, interleaved). The same numbers; which is faster depends on the device and layout.


def upsample_impl() -> str:
    """The current way of doing the upsampling convolution: ``transpose`` or ``subpixel``."""
    return _impl["upsample"]


def use_upsample_impl(impl: str) -> contextlib.AbstractContextManager[None]:
    """Within the block, :func:`conv2d_resample` upsamples with ``impl`` (``transpose`` | ``subpixel``)."""
    return _use_impl("upsample", impl)


def _phase_taps(size: int, kernel: int, stride: int, padding: int, phase: int) -> tuple:
    """For output positions ``stride·m + phase`` of a 1-D transposed convolution: the kernel taps
    that reach them (``first::stride``), how many (``taps``), the input padding (left, right; a
    negative value crops) that makes them a stride-1 correlation, and how many such outputs."""
    out_size = (size - 1) * stride + kernel - 2 * padding
    count = max(0, -(-(out_size - phase) // stride))
    first = (phase + padding) % stride
    taps = max(0, -(-(kernel - first) // stride))
    # output stride·m + phase reads x[m + shift - t] with kernel tap first + stride·t
    shift = (phase + padding - first) // stride
    left = taps - 1 - shift
    right = count + taps - 1 - size - left
    return first, taps, left, right, count


def conv_transpose2d_subpixel(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int,
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)`` as stride²
    stride-1 convolutions of the input, one per output phase (sub-pixel convolution).

    x: (B, I, H, W); w: (I, O/groups, kh, kw) in conv_transpose2d's layout. Each phase (a, b) is
    the correlation of x with the taps ``w[..., a'::stride, b'::stride]`` flipped, so there is no
    zero insertion and no transposed convolution; the phases are interleaved into the output.
    """
    batch, in_channels, height, width = x.shape
    _, out_per_group, kh, kw = w.shape
    in_per_group = in_channels // groups
    # conv2d layout (O, I/groups, kh, kw), flipped so that a correlation applies w as conv_transpose2d does
    w = w.reshape(groups, in_per_group, out_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * out_per_group, in_per_group, kh, kw).flip([2, 3])
    rows = [_phase_taps(height, kh, stride, padding[0], a) for a in range(stride)]
    cols = [_phase_taps(width, kw, stride, padding[1], b) for b in range(stride)]
    out_h, out_w = sum(r[4] for r in rows), sum(c[4] for c in cols)
    phases = []
    for a, (r_first, r_taps, r_left, r_right, r_count) in enumerate(rows):
        for b, (c_first, c_taps, c_left, c_right, c_count) in enumerate(cols):
            if r_count == 0 or c_count == 0:
                continue
            if r_taps == 0 or c_taps == 0:  # a kernel smaller than the stride: no tap reaches these
                zeros = x.new_zeros([batch, groups * out_per_group, r_count, c_count])
                phases.append((a, b, zeros))
                continue
            # flipped kernel: the taps first, first + stride, ... read in reverse
            r_idx = kh - 1 - (r_first + stride * (r_taps - 1))
            c_idx = kw - 1 - (c_first + stride * (c_taps - 1))
            sub = w[:, :, r_idx::stride, c_idx::stride][:, :, :r_taps, :c_taps]
            y = F.conv2d(F.pad(x, [c_left, c_right, r_left, r_right]), sub, groups=groups)
            phases.append((a, b, y))
    first = phases[0][2]
    equal = out_h % stride == 0 and out_w % stride == 0 and len(phases) == stride * stride
    if equal:  # one interleave: (B, O, H', W') × s² → (B, O, s·H', s·W')
        y = torch.stack([p[2] for p in phases], dim=2)
        y = y.reshape(batch, -1, stride, stride, out_h // stride, out_w // stride)
        return y.permute(0, 1, 4, 2, 5, 3).reshape(batch, -1, out_h, out_w)
    out = first.new_zeros([batch, first.shape[1], out_h, out_w])
    for a, b, y in phases:
        out[:, :, a::stride, b::stride] = y
    return out


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """2-D convolution with optional FIR up/downsampling, padded once at the start.

    x: (B, I, H, W); w: (O, I/groups, kh, kw); f: FIR filter for the resampling.
    Equivalent to: zero-insert by ``up``, pad by ``padding`` (w.r.t. the upsampled image),
    FIR-filter (gain ``up**2``), convolve with ``w``, FIR-filter and keep every ``down``-th pixel.
    Each case below rearranges that chain into its cheapest equivalent, as the official op does.
    """
    out_channels, in_per_group, kh, kw = w.shape
    fh, fw = f.shape if f is not None else (1, 1)
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    # 1x1 kernel, downsampling: filter and subsample first, then the (cheaper) small convolution.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel, upsampling: convolve at low resolution, then upsample.
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up**2, flip_filter=flip_filter)

    # Downsampling: filter, then a strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: a strided transposed convolution does the zero insertion and the convolution in
    # one go; the FIR filter then smooths the result.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0, px1 = px0 - (kw - 1), px1 - (kw - up)
        py0, py1 = py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        # conv_transpose2d applies its kernel as a convolution, the opposite of conv2d.
        if _impl["upsample"] == "subpixel":
            if flip_weight:  # conv_transpose2d applies its kernel flipped relative to conv2d
                w = w.flip([2, 3])
            x = conv_transpose2d_subpixel(x, w, stride=up, padding=(pyt, pxt), groups=groups)
        else:
            x = _conv(
                x,
                w,
                stride=up,
                padding=(pyt, pxt),
                groups=groups,
                transpose=True,
                flip_weight=not flip_weight,
            )
        x = upfirdn2d(
            x,
            f,
            padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt],
            gain=up**2,
            flip_filter=flip_filter,
        )
        return upfirdn2d(x, f, down=down, flip_filter=flip_filter) if down > 1 else x

    # No resampling and symmetric padding: a plain convolution.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight)

    # Anything else: pad (or crop), then convolve.
    x = F.pad(x, pad)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)


# ---------------------------------------------------------------------------------------------
# modulated convolution


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution (Karras et al. 2020, eq. 1-3).

    x: (B, I, H, W); weight: (O, I, kh, kw); styles: (B, I) per-sample input scales;
    noise: broadcastable to the output, added after demodulation.
    Each sample's kernel is ``w'_oi = s_i w_oi``, demodulated by ``1 / sqrt(Σ_i,k w'_oik² + 1e-8)``.
    ``fused_modconv=True`` builds the per-sample kernels and runs one grouped convolution;
    ``False`` scales the activations before and after a shared convolution instead (the same
    numbers, cheaper when training). Returns (B, O, H*up/down, W*up/down).
    """
    batch_size = x.shape[0]
    _, in_channels, kh, kw = weight.shape

    # In float16 the modulated kernels can overflow; demodulation makes the result invariant to
    # the scale of `weight` and `styles`, so normalise both first.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (
            1
            / math.sqrt(in_channels * kh * kw)
            / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # (B, O, I, kh, kw)
    if demodulate and fused_modconv:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # (B, O)
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    elif demodulate:
        # Σ_ik (s_i w_oik)² = Σ_i s_i² Σ_k w_oik²: a (B, I) @ (I, O) product instead of building
        # the (B, O, I, kh, kw) kernels, which the unfused path never needs otherwise.
        with torch.autocast(x.device.type, enabled=False):  # kept in float32 under autocast
            sq = weight.float().square().sum(dim=[2, 3])  # (O, I)
            dcoefs = (styles.float().square() @ sq.t() + 1e-8).rsqrt()  # (B, O)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(
            x,
            weight.to(x.dtype),
            f=resample_filter,
            up=up,
            down=down,
            padding=padding,
            flip_weight=flip_weight,
        )
        if demodulate and noise is not None:
            return torch.addcmul(
                noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
            )
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            return x.add_(noise.to(x.dtype))
        return x

    # Fused: the batch becomes the group dimension of one grouped convolution.
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(
        x,
        w.to(x.dtype),
        f=resample_filter,
        up=up,
        down=down,
        padding=padding,
        groups=batch_size,
        flip_weight=flip_weight,
    )
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x
