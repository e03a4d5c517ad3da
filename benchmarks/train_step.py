"""One VisCoIN training step at the paper's configuration, timed by part.

ResNet-50 classifier at 256×256, StyleGAN2 generator at 256×256 (z 512, w 512, 2 mapping layers,
channel_max 512, channel_base 16384 or 32768), K = 256, every loss including LPIPS-VGG, random
weights. The step is the trainer's own code (``viscoin.train.step.StepCompute``): sampling the
generated half, the losses, backward, two Adam updates. Reports iterations/s, ms per part (CUDA
events, no host sync inside the step; parts are only resolved when the step is not compiled),
peak GPU memory, floating-point operations per step and the achieved TFLOP/s.

A *variant* names the speed options, joined by ``+``: ``fp32`` or ``bf16`` (autocast, bf16
synthesis), ``cl`` (channels_last), ``compile`` (torch.compile), ``graphs`` (torch.compile with
CUDA graphs), ``fused`` (the fused modulated convolution for the reconstruction too, the path of
an eval-mode generator before this option existed), ``subpx`` (the synthesis network's upsampling
convolutions as stride-1 sub-pixel convolutions instead of transposed ones), ``regional`` (with
``compile`` or ``graphs``: each repeated block of f, G and LPIPS compiled on its own instead of
the whole step as one graph), ``pwfir`` (compiled: the loss computation's FIR filters as a
weighted sum of shifted views that Inductor fuses, instead of the default two matrix products).

    python benchmarks/train_step.py --batch 8 64 --variants fp32 bf16+cl+compile     # on a GPU
    python benchmarks/train_step.py --curve 200 --variants fp32 fp32 bf16+cl         # loss curves

With ``--curve`` every variant is compared with the first, step by step (mean and largest relative
difference of each loss); a variant named twice runs twice, so ``fp32 fp32`` puts the first
variant's own run-to-run spread (nondeterministic kernels) beside the others: their null.
    python benchmarks/train_step.py --tiny                                          # CPU smoke run
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from viscoin.models.classifier import Classifier
from viscoin.models.stylegan2 import Generator
from viscoin.models.stylegan2.ops import use_upsample_impl
from viscoin.models.viscoin import build_core
from viscoin.train.step import SpeedOptions, StepCompute, make_optimizers
from viscoin.train.viscoin import LossWeights

TOKENS = {"fp32", "bf16", "cl", "compile", "graphs", "fused", "subpx", "regional", "pwfir"}


def parse_variant(name: str) -> tuple[SpeedOptions, bool]:
    """``bf16+cl+compile`` → (SpeedOptions, fused reconstruction?)."""
    tokens = set(name.split("+"))
    if not tokens <= TOKENS or len(tokens & {"fp32", "bf16"}) > 1:
        raise SystemExit(f"bad variant {name!r}: tokens are {sorted(TOKENS)}")
    mode = "reduce-overhead" if "graphs" in tokens else "default" if "compile" in tokens else "none"
    if "regional" in tokens and mode == "none":
        raise SystemExit(f"bad variant {name!r}: 'regional' needs 'compile' or 'graphs'")
    scope = "regional" if "regional" in tokens else "whole"
    fir = "pointwise" if "pwfir" in tokens else "matmul"
    options = SpeedOptions("bf16" if "bf16" in tokens else "none", "cl" in tokens, mode, scope, fir)
    return options, "fused" in tokens


def build(tiny: bool, channel_base: int, device: torch.device, lpips_on: bool):
    if tiny:
        res, arch, k, channels, z, w, cmax, cb = 32, "resnet18", 8, 16, 16, 16, 32, 512
    else:
        res, arch, k, channels, z, w, cmax, cb = (
            256,
            "resnet50",
            256,
            512,
            512,
            512,
            512,
            channel_base,
        )
    f = Classifier(arch, 200).to(device).eval().requires_grad_(False)
    G = Generator(
        z, 0, w, res, 3, mapping_kwargs={"num_layers": 2}, channel_base=cb, channel_max=cmax
    )
    G = G.to(device).eval().requires_grad_(False)
    core = build_core(f, G, res, n_concepts=k, channels=channels).to(device).train()
    lpips = None
    if lpips_on:
        from viscoin.train.losses import LPIPS

        lpips = LPIPS(random_backbone=True).to(device)  # same cost as the real VGG-16
    return f, G, core, lpips, res


class Step:
    """The benchmark's training step: sample, losses, backward, two Adam updates."""

    def __init__(self, args, variant: str, channel_base: int, device: torch.device) -> None:
        torch.manual_seed(0)
        f, G, core, lpips, self.res = build(args.tiny, channel_base, device, not args.no_lpips)
        options, fused = parse_variant(variant)
        self.compute = StepCompute(f, core, G, lpips, LossWeights(), options, device)
        if fused:
            self.compute.synthesis_kwargs["fused_modconv"] = True
        self.G, self.core, self.device = G, core, device
        self.opts = make_optimizers(core, 1e-4, device)

    def __call__(self, real: torch.Tensor, z: torch.Tensor, mark=None) -> dict[str, torch.Tensor]:
        mark = mark or (lambda name: None)
        fake = self.compute.sample(z, torch.zeros(len(z), 0, device=self.device))
        mark("sample G")
        terms = self.compute.losses(torch.cat([real, fake]), True, 0.1, mark=mark)
        if self.compute.options.compile != "none":
            mark("losses")
        terms["total"].backward()
        mark("backward")
        for opt in self.opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
        mark("optimiser")
        return {k: v.detach().clone() for k, v in terms.items()}


class EventMarks:
    """Records a CUDA event at each mark; durations are read after the last step's sync."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.steps: list[list[tuple[str, object]]] = []

    def start(self) -> None:
        self.steps.append([("start", self._now())])

    def _now(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def __call__(self, name: str) -> None:
        self.steps[-1].append((name, self._now()))

    def mean_ms(self) -> dict[str, float]:
        """Mean duration of each part over the recorded steps."""
        out: dict[str, float] = defaultdict(float)
        for events in self.steps:
            for (_, a), (name, b) in itertools.pairwise(events):
                ms = a.elapsed_time(b) if self.cuda else (b - a) * 1000
                out[name] += ms / len(self.steps)
        return dict(out)


@functools.cache
def count_flops(tiny: bool, batch: int, channel_base: int, lpips_on: bool) -> float:
    """Floating-point operations of one step (multiply-add = 2), counted on CPU in float32.

    Counted on the unfused modulated-convolution path: the fused one is a grouped convolution
    with one group per image, which torch's flop counter charges B times too much.
    """
    from torch.utils.flop_counter import FlopCounterMode

    args = argparse.Namespace(tiny=tiny, no_lpips=not lpips_on)
    step = Step(args, "fp32", channel_base, torch.device("cpu"))
    synthesis = step.G.synthesis.forward
    step.G.synthesis.forward = functools.partial(synthesis, fused_modconv=False)
    real = torch.rand(batch, 3, step.res, step.res) * 2 - 1
    z = torch.randn(batch, step.G.z_dim)
    with FlopCounterMode(display=False) as counter:
        step(real, z)
    return float(counter.get_total_flops())


def bench(args, batch: int, variant: str, channel_base: int, device: torch.device) -> dict:
    step = Step(args, variant, channel_base, device)
    real = torch.rand(batch, 3, step.res, step.res, device=device) * 2 - 1
    z = torch.randn(batch, step.G.z_dim, device=device)
    metrics = compile_metrics()
    metrics.clear()
    t0 = time.perf_counter()
    first_step_s = 0.0
    for i in range(args.warmup):
        step(real, z)
        if i == 0:
            if device.type == "cuda":
                torch.cuda.synchronize()
            first_step_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - t0
    # where the warm-up went: seconds per compiler stage (Dynamo, AOTAutograd, Inductor, Triton)
    compile_s = {k: round(sum(v), 3) for k, v in metrics.items()}
    marks = EventMarks(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        marks.start()
        step(real, z, marks)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / args.steps
    parts = marks.mean_ms()  # read once every step has run (reading earlier would sync)
    if args.profile:
        profile(step, real, z, args.profile / f"{variant.replace('+', '_')}-{batch}")
    flops = count_flops(args.tiny, batch, channel_base, not args.no_lpips) if args.flops else 0.0
    result = {
        "batch": f"{batch}+{batch}",
        "variant": variant,
        "channel_base": channel_base,
        "ms_per_iter": seconds * 1000,
        "it_per_s": 1 / seconds,
        "images_per_s": 2 * batch / seconds,
        "parts_ms": dict(parts),
        "warmup_s": warmup_s,
        "first_step_s": first_step_s,
        "compile_s": compile_s,
        "gflop_per_iter": flops / 1e9,
        "achieved_tflops": flops / seconds / 1e12,
    }
    if device.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def compile_metrics() -> dict[str, list[float]]:
    """torch.compile's own timings so far (stage name → seconds per call); empty if unavailable."""
    try:
        from torch._dynamo.utils import compilation_time_metrics
    except ImportError:
        return {}
    return compilation_time_metrics


def profile(step: Step, real: torch.Tensor, z: torch.Tensor, path: Path) -> None:
    """Three profiled steps: the kernels that take the most GPU time, and a Chrome trace."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with torch_profile(activities=activities) as prof:
        for _ in range(3):
            step(real, z)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    path.parent.mkdir(parents=True, exist_ok=True)
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=90)
    path.with_suffix(".txt").write_text(table)
    prof.export_chrome_trace(str(path.with_suffix(".trace.json")))
    print(table, flush=True)


def loss_curve(args, variant: str, channel_base: int, device: torch.device) -> dict:
    """``args.curve`` steps from the same initial weights on the same batches; every loss term."""
    step = Step(args, variant, channel_base, device)
    gen = torch.Generator().manual_seed(1)
    curve: dict[str, list[float]] = defaultdict(list)
    batch = args.batch[0]
    for _ in range(args.curve):
        low = torch.rand(batch, 3, 8, 8, generator=gen) * 2 - 1  # smooth images, like photos
        real = torch.nn.functional.interpolate(low, size=step.res, mode="bilinear")
        z = torch.randn(batch, step.G.z_dim, generator=gen)
        terms = step(real.to(device), z.to(device))
        for k, v in terms.items():
            curve[k].append(v)
    return {k: torch.stack(v).float().cpu().tolist() for k, v in curve.items()}


def compare_curves(curves: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict]]:
    """Every curve against the first, per loss term: the mean and the largest relative difference
    over the steps (|b − a| / |a|)."""
    names = list(curves)
    ref = curves[names[0]]
    out: dict[str, dict[str, dict]] = {}
    for name in names[1:]:
        out[name] = {}
        for term in ("total", "mse", "lpips", "ce_rec", "of"):
            if term not in ref or term not in curves[name]:
                continue
            a, b = torch.tensor(ref[term]), torch.tensor(curves[name][term])
            rel = (a - b).abs() / a.abs().clamp_min(1e-6)
            out[name][term] = {"mean": rel.mean().item(), "max": rel.max().item()}
    return out


def matmul_peak(device: torch.device, n: int = 8192, iters: int = 50) -> float:
    """Measured bf16 matrix-multiply rate in TFLOP/s (the reference for the achieved fraction)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


_TORCH_COMPILE = torch.compile
BACKEND_COMPILED: list[str] = []  # what compile_with_backend compiled


def compile_with_backend(backend: str, fn, mode: str | None = None, dynamic=None, **kwargs):
    """``torch.compile`` with another backend than Inductor (``--compile-backend``): the mode
    (Inductor's) is dropped, the rest kept."""
    BACKEND_COMPILED.append(getattr(fn, "__name__", type(fn).__name__))
    return _TORCH_COMPILE(fn, backend=backend, dynamic=dynamic, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU (smoke test)")
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--variants", nargs="+", default=["fp32"])
    parser.add_argument("--channel-base", type=int, nargs="+", default=[32768])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument("--no-flops", dest="flops", action="store_false")
    parser.add_argument("--curve", type=int, default=0, help="record the losses of N steps")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", type=Path, help="profile 3 steps of each run into this folder")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend of the compiled variants: inductor (what the trainer uses), or "
        "eager / aot_eager to time the warm-up's tracing alone (Dynamo; Dynamo + AOTAutograd)",
    )
    args = parser.parse_args()
    if args.compile_backend != "inductor":
        torch.compile = functools.partial(compile_with_backend, args.compile_backend)
    for v in args.variants:
        parse_variant(v)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    info = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "compile_backend": args.compile_backend,
    }
    if device.type == "cuda":
        info["bf16_matmul_tflops"] = matmul_peak(device)
        print(
            f"{info['device']}, torch {info['torch']}: bf16 matmul {info['bf16_matmul_tflops']:.0f} TFLOP/s"
        )
    out: dict = {"info": info, "results": [], "curves": {}}

    def save() -> None:
        if args.compile_backend != "inductor":  # the functions compiled with it so far
            info["compiled_with_backend"] = len(BACKEND_COMPILED)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))

    for cb in args.channel_base:
        for variant in args.variants:
            if args.curve:
                with use_upsample_impl(
                    "subpixel" if "subpx" in variant.split("+") else "transpose"
                ):
                    curve = loss_curve(args, variant, cb, device)
                key, run = f"{variant} cb{cb}", 1
                while key in out["curves"]:  # the same variant again: its run-to-run spread
                    run += 1
                    key = f"{variant} cb{cb} (run {run})"
                out["curves"][key] = curve
                print(
                    f"curve {variant}: total {curve['total'][0]:.4f} → {curve['total'][-1]:.4f}",
                    flush=True,
                )
                save()
                continue
            for batch in args.batch:
                with use_upsample_impl(
                    "subpixel" if "subpx" in variant.split("+") else "transpose"
                ):
                    r = bench(args, batch, variant, cb, device)
                out["results"].append(r)
                save()
                parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts_ms"].items())
                mem = f", peak {r['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in r else ""
                print(
                    f"cb {cb} {variant:>18} batch {r['batch']:>7}: {r['ms_per_iter']:.1f} ms/it "
                    f"({r['it_per_s']:.2f} it/s, {r['images_per_s']:.0f} img/s), "
                    f"{r['gflop_per_iter']:.0f} GFLOP/it = {r['achieved_tflops']:.1f} TFLOP/s{mem}, "
                    f"warm-up {r['warmup_s']:.0f} s (first step {r['first_step_s']:.0f} s)"
                    f"\n    [ms: {parts}]",
                    flush=True,
                )
                stages = sorted(r["compile_s"].items(), key=lambda kv: -kv[1])[:6]
                if stages:
                    print("    [compile s: " + ", ".join(f"{k} {v:.1f}" for k, v in stages) + "]")
    if args.curve and len(out["curves"]) > 1:
        out["comparisons"] = compare_curves(out["curves"])
        first = next(iter(out["curves"]))
        for name, terms in out["comparisons"].items():
            for term, d in terms.items():
                print(
                    f"{name} vs {first}: {term} relative difference mean {d['mean']:.4f}, "
                    f"max relative difference {d['max']:.4f}"
                )
    save()


if __name__ == "__main__":
    main()
