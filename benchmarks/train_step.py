"""One VisCoIN training step at the paper's configuration, timed by part.

ResNet-50 classifier at 256×256, StyleGAN2 generator at 256×256 (z 512, w 512, 2 mapping layers,
channel_max 512, channel_base 16384 or 32768), K = 256, every loss including LPIPS-VGG, random
weights. Reports iterations/s, ms per part (CUDA events, no host sync inside the step), peak GPU
memory, floating-point operations per step and the achieved TFLOP/s.

    python benchmarks/train_step.py --batch 8 32 64 --amp none bf16          # on a GPU
    python benchmarks/train_step.py --tiny                                  # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from viscoin.models.classifier import Classifier
from viscoin.models.stylegan2 import Generator
from viscoin.models.viscoin import build_core
from viscoin.train.viscoin import LossWeights, viscoin_losses


def build(tiny: bool, channel_base: int, device: torch.device, lpips_on: bool):
    if tiny:
        res, arch, k, channels, z, w, cmax = 32, "resnet18", 8, 16, 16, 16, 32
    else:
        res, arch, k, channels, z, w, cmax = 256, "resnet50", 256, 512, 512, 512, 512
    f = Classifier(arch, 200).to(device).eval().requires_grad_(False)
    G = (
        Generator(
            z,
            0,
            w,
            res,
            3,
            mapping_kwargs={"num_layers": 2},
            channel_base=channel_base if not tiny else 512,
            channel_max=cmax,
        )
        .to(device)
        .eval()
        .requires_grad_(False)
    )
    core = build_core(f, G, res, n_concepts=k, channels=channels).to(device).train()
    lpips = None
    if lpips_on:
        from viscoin.train.losses import LPIPS

        lpips = LPIPS(random_backbone=True).to(device)  # same cost as the real VGG-16
    return f, G, core, lpips, res


def step_fn(f, G, core, lpips, opts, device, amp, channels_last):
    weights = LossWeights()

    def run(real: torch.Tensor, z: torch.Tensor, marks):
        with torch.no_grad():
            fake = G.synthesis(G.mapping(z, None), noise_mode="const")
        marks("sample G")
        images = torch.cat([real, fake])
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            terms = viscoin_losses(images, f, core, G, weights, lpips, warm=True, mark=marks)
        terms["total"].backward()
        marks("backward")
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
        marks("optimiser")
        return terms["total"].detach()

    return run


class EventMarks:
    """Records a CUDA event at each mark; durations are read after the step's final sync."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.events: list[tuple[str, object]] = []

    def start(self) -> None:
        self.events = [("start", self._now())]

    def _now(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def __call__(self, name: str) -> None:
        self.events.append((name, self._now()))

    def durations_ms(self) -> dict[str, float]:
        out = {}
        for (_, a), (name, b) in zip(self.events, self.events[1:], strict=False):
            out[name] = out.get(name, 0.0) + (a.elapsed_time(b) if self.cuda else (b - a) * 1000)
        return out


def count_flops(run, G, real, z) -> float:
    """Floating-point operations of one step (multiply-add = 2).

    The fused modulated convolution is a grouped convolution with one group per image, which
    torch's flop counter charges as if every group saw every image's channels (B times too
    much); the unfused path does the same arithmetic with plain convolutions, so it is counted.
    """
    import functools

    from torch.utils.flop_counter import FlopCounterMode

    synthesis_forward = G.synthesis.forward
    G.synthesis.forward = functools.partial(synthesis_forward, fused_modconv=False)
    try:
        with FlopCounterMode(display=False) as counter:
            run(real, z, lambda name: None)
    finally:
        G.synthesis.forward = synthesis_forward
    return float(counter.get_total_flops())


def bench(args, batch: int, amp: str, channel_base: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    f, G, core, lpips, res = build(args.tiny, channel_base, device, not args.no_lpips)
    if args.channels_last:
        f = f.to(memory_format=torch.channels_last)
    opts = [
        torch.optim.Adam([*core.extractor.parameters(), *core.head.parameters()], lr=1e-4),
        torch.optim.Adam(core.translator.parameters(), lr=1e-4),
    ]
    run = step_fn(f, G, core, lpips, opts, device, amp, args.channels_last)
    if args.compile:
        core.forward = torch.compile(core.forward)
    real = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    z = torch.randn(batch, G.z_dim, device=device)
    marks = EventMarks(device)
    flops = count_flops(run, G, real, z)
    for _ in range(args.warmup):
        run(real, z, lambda name: None)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    parts: dict[str, float] = defaultdict(float)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        marks.start()
        run(real, z, marks)
        if device.type == "cuda":
            torch.cuda.synchronize()
        for name, ms in marks.durations_ms().items():
            parts[name] += ms / args.steps
    seconds = (time.perf_counter() - t0) / args.steps
    result = {
        "batch": f"{batch}+{batch}",
        "amp": amp,
        "channel_base": channel_base,
        "ms_per_iter": seconds * 1000,
        "it_per_s": 1 / seconds,
        "images_per_s": 2 * batch / seconds,
        "parts_ms": dict(parts),
        "gflop_per_iter": flops / 1e9,
        "achieved_tflops": flops / seconds / 1e12,
    }
    if device.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU (smoke test)")
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--amp", nargs="+", default=["none"], choices=["none", "bf16"])
    parser.add_argument("--channel-base", type=int, nargs="+", default=[32768])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    results = []
    for cb in args.channel_base:
        for amp in args.amp:
            for batch in args.batch:
                r = bench(args, batch, amp, cb, device)
                results.append(r)
                parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts_ms"].items())
                mem = f", peak {r['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in r else ""
                print(
                    f"cb {cb} {amp:>4} batch {r['batch']:>7}: {r['ms_per_iter']:.1f} ms/it "
                    f"({r['it_per_s']:.2f} it/s, {r['images_per_s']:.0f} img/s), "
                    f"{r['gflop_per_iter']:.0f} GFLOP/it = {r['achieved_tflops']:.1f} TFLOP/s{mem}\n    [{parts}]",
                    flush=True,
                )
    info = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
