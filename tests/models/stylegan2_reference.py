"""An independent, deliberately plain transcription of the official StyleGAN2-ADA formulas.

Written from the official definitions (``upfirdn2d``: zero insertion, padding, FIR convolution,
subsampling; ``modulated_conv2d``; ``bias_act``; the mapping, synthesis and discriminator
forwards) using only a state dict and explicit loops, never the package's ops. Slow, tests only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2)


def fir_filter() -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = f[:, None] * f[None, :]
    return f / f.sum()


def upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Zero-insert by ``up``, pad [px0, px1, py0, py1] (negative crops), convolve, keep every ``down``-th."""
    b, c, h, w = x.shape
    upsampled = x.new_zeros(b, c, h * up, w * up)
    upsampled[:, :, ::up, ::up] = x  # each pixel followed by up-1 zeros
    px0, px1, py0, py1 = pad
    z = F.pad(upsampled, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    z = z[:, :, max(-py0, 0) : z.shape[2] - max(-py1, 0), max(-px0, 0) : z.shape[3] - max(-px1, 0)]
    # True 2-D convolution, tap by tap: out[n] = Σ_t z[n + t] f[k-1-t].
    fh, fw = f.shape
    out_h, out_w = z.shape[2] - fh + 1, z.shape[3] - fw + 1
    out = x.new_zeros(b, c, out_h, out_w)
    for ty in range(fh):
        for tx in range(fw):
            out += z[:, :, ty : ty + out_h, tx : tx + out_w] * (f[fh - 1 - ty, fw - 1 - tx] * gain)
    return out[:, :, ::down, ::down]


def bias_act(x, b, act="linear", gain=None, clamp=None):
    x = x + b.reshape(1, -1, *([1] * (x.ndim - 2))) if b is not None else x
    if act == "lrelu":
        x = torch.where(x >= 0, x, x * 0.2)
        gain = SQRT2 if gain is None else gain
    x = x * (1.0 if gain is None else gain)
    return x.clamp(-clamp, clamp) if clamp is not None else x


def conv2d_resample(x, w, f, up=1, down=1, padding=0, flip_weight=True):
    """The official generic path: upfirdn (up, gain up²), conv2d, then FIR + subsample."""
    fh, fw = f.shape
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    ident = torch.ones(1, 1)
    x = upfirdn2d(x, f if up > 1 else ident, up=up, pad=(px0, px1, py0, py1), gain=up**2)
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]))
    return upfirdn2d(x, f, down=down) if down > 1 else x


def dense(sd, prefix, x, act="linear", lr_multiplier=1.0):
    weight = sd[prefix + "weight"]
    w = weight * (lr_multiplier / math.sqrt(weight.shape[1]))
    b = sd.get(prefix + "bias")
    return bias_act(x @ w.t(), b * lr_multiplier if b is not None else None, act)


def modulated_layer(sd, prefix, x, w, up, noise_mode, conv_clamp, gain=1.0):
    """SynthesisLayer: per sample, modulate, demodulate, convolve (up: a true convolution), noise, bias, lrelu."""
    weight = sd[prefix + "weight"]
    styles = dense(sd, prefix + "affine.", w)
    f = sd[prefix + "resample_filter"]
    outs = []
    for i in range(x.shape[0]):
        wi = weight * styles[i].reshape(1, -1, 1, 1)
        wi = wi * (wi.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        outs.append(conv2d_resample(x[i : i + 1], wi, f, up=up, padding=1, flip_weight=up == 1))
    x = torch.cat(outs)
    if noise_mode == "const":
        x = x + sd[prefix + "noise_const"] * sd[prefix + "noise_strength"]
    clamp = conv_clamp * gain if conv_clamp is not None else None
    return bias_act(x, sd[prefix + "bias"], "lrelu", gain=SQRT2 * gain, clamp=clamp)


def torgb(sd, prefix, x, w, conv_clamp):
    weight = sd[prefix + "weight"]
    styles = dense(sd, prefix + "affine.", w) / math.sqrt(weight.shape[1])
    outs = [F.conv2d(x[i : i + 1], weight * styles[i].reshape(1, -1, 1, 1)) for i in range(len(x))]
    return bias_act(torch.cat(outs), sd[prefix + "bias"], clamp=conv_clamp)


def mapping(sd, prefix, z, c, num_layers, num_ws, psi=1.0, cutoff=None):
    def normalize(v):
        return v / (v.square().mean(dim=1, keepdim=True) + 1e-8).sqrt()

    parts = []
    if z is not None and z.shape[1] > 0:
        parts.append(normalize(z.float()))
    if c is not None and c.shape[1] > 0:
        parts.append(normalize(dense(sd, prefix + "embed.", c.float())))
    x = torch.cat(parts, dim=1)
    for i in range(num_layers):
        x = dense(sd, f"{prefix}fc{i}.", x, act="lrelu", lr_multiplier=0.01)
    if num_ws is None:
        return x
    ws = x[:, None, :].repeat(1, num_ws, 1)
    w_avg = sd[prefix + "w_avg"]
    rows = slice(None) if cutoff is None else slice(0, cutoff)
    ws[:, rows] = w_avg + psi * (ws[:, rows] - w_avg)
    return ws


def generate(sd, config, z, c, psi=1.0, noise_mode="const"):
    """The whole generator (skip architecture), from a state dict and the constructor arguments."""
    syn = config["synthesis_kwargs"]
    clamp = syn.get("conv_clamp")
    resolution = config["img_resolution"]
    resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
    num_ws = 2 * len(resolutions)
    num_layers = config["mapping_kwargs"].get("num_layers", 8)
    ws = mapping(sd, "mapping.", z, c, num_layers, num_ws, psi)
    f = fir_filter()
    x = img = None
    row = 0
    for res in resolutions:
        p = f"synthesis.b{res}."
        if res == 4:
            x = sd[p + "const"][None].repeat(len(ws), 1, 1, 1)
            x = modulated_layer(sd, p + "conv1.", x, ws[:, row], 1, noise_mode, clamp)
            row += 1
        else:
            x = modulated_layer(sd, p + "conv0.", x, ws[:, row], 2, noise_mode, clamp)
            x = modulated_layer(sd, p + "conv1.", x, ws[:, row + 1], 1, noise_mode, clamp)
            row += 2
        y = torgb(sd, p + "torgb.", x, ws[:, row], clamp)
        img = y if img is None else upfirdn2d(img, f, up=2, pad=(2, 1, 2, 1), gain=4) + y
    return img


def conv_layer(sd, prefix, x, act="lrelu", down=1, gain=1.0, clamp=None):
    """Conv2dLayer: equalised-lr conv (3×3 'same' or 1×1), optional FIR downsampling, bias_act."""
    weight = sd[prefix + "weight"]
    w = weight / math.sqrt(weight[0].numel())
    pad = weight.shape[-1] // 2
    if down == 1:
        x = F.conv2d(F.pad(x, [pad] * 4), w)
    elif weight.shape[-1] == 1:  # 1×1: FIR-downsample, then convolve
        x = F.conv2d(upfirdn2d(x, sd[prefix + "resample_filter"], down=2, pad=(1, 1, 1, 1)), w)
    else:  # 3×3: FIR at full resolution, then a strided (subsampled) convolution
        x = F.conv2d(upfirdn2d(x, sd[prefix + "resample_filter"], pad=(2, 2, 2, 2)), w)[
            :, :, ::2, ::2
        ]
    act_gain = (SQRT2 if act == "lrelu" else 1.0) * gain
    return bias_act(
        x, sd.get(prefix + "bias"), act, gain=act_gain, clamp=clamp * gain if clamp else None
    )


def minibatch_std(x, group_size):
    n = x.shape[0]
    g = min(group_size, n)
    out = []
    for j in range(n // g):
        members = x[[j + k * (n // g) for k in range(g)]]  # sample i belongs to group i % (n/g)
        out.append(members.var(dim=0, unbiased=False).add(1e-8).sqrt().mean())
    std = torch.stack(out)
    extra = std[[i % (n // g) for i in range(n)]].reshape(n, 1, 1, 1).expand(n, 1, *x.shape[2:])
    return torch.cat([x, extra], dim=1)


def discriminate(sd, config, img, c):
    """The whole resnet discriminator from a state dict and its constructor arguments."""
    resolution = config["img_resolution"]
    clamp = config.get("conv_clamp")
    mbstd = config.get("epilogue_kwargs", {}).get("mbstd_group_size", 4)
    x = None
    for res in [2**i for i in range(int(math.log2(resolution)), 2, -1)]:
        p = f"b{res}."
        if x is None:
            x = conv_layer(sd, p + "fromrgb.", img, clamp=clamp)
        y = conv_layer(sd, p + "skip.", x, act="linear", down=2, gain=math.sqrt(0.5))
        x = conv_layer(sd, p + "conv0.", x, clamp=clamp)
        x = conv_layer(sd, p + "conv1.", x, down=2, gain=math.sqrt(0.5), clamp=clamp)
        x = x + y
    x = minibatch_std(x, mbstd)
    x = conv_layer(sd, "b4.conv.", x, clamp=clamp)
    x = dense(sd, "b4.fc.", x.flatten(1), act="lrelu")
    x = dense(sd, "b4.out.", x)
    if config["c_dim"] > 0:
        cmap = mapping(
            sd, "mapping.", None, c, config.get("mapping_kwargs", {}).get("num_layers", 8), None
        )
        x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(cmap.shape[1])
    return x
