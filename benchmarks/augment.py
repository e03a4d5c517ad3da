"""The ADA augmentation pipe on the machine at hand: its double backward checked against finite
differences in float64, then the time of one pass and of R1's gradient through it.

    python benchmarks/augment.py --device cuda --json augment.json

R1 differentiates D(augment(x)) with respect to x and backpropagates that gradient, so the pipe's
resampling needs a correct double backward on every device and torch version; the check runs the
whole pipe at p = 1 on a tiny image with fixed draws (``torch.autograd.gradgradcheck``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from viscoin.train.augment import AugmentPipe


def check_double_backward(device: torch.device) -> dict[str, bool]:
    """gradcheck and gradgradcheck of the whole pipe (p = 1, fixed draws) in float64."""
    pipe = AugmentPipe(p=1.0).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    image = torch.rand(2, 3, 8, 8, device=device, dtype=torch.float64) * 2 - 1
    draws = pipe.draw(2, 8, 8, device, gen)
    weight = torch.randn(3, 8, 8, device=device, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:  # a non-linear stand-in for D
        return (pipe.apply(x, draws).tanh() * weight).sum(dim=(1, 2, 3))

    x = image.requires_grad_(True)
    # the scatter-adds of the backward on CUDA are equal up to rounding, not bits
    tol = {"nondet_tol": 1e-10} if device.type == "cuda" else {}
    return {
        "gradcheck": bool(torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5, **tol)),
        "gradgradcheck": bool(torch.autograd.gradgradcheck(f, (x,), eps=1e-6, atol=1e-5, **tol)),
    }


def time_pipe(
    device: torch.device, resolution: int, batch: int, p: float, iters: int
) -> dict[str, float]:
    """Milliseconds per augmentation pass and per R1 gradient (forward, grad, backward)."""
    pipe = AugmentPipe(p=p).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward() -> None:
        pipe(images, gen)

    def r1() -> None:
        x = images.detach().requires_grad_(True)
        out = pipe(x, gen).square().mean()
        (grad,) = torch.autograd.grad(out, x, create_graph=True)
        grad.square().sum().backward()

    result = {}
    for name, fn in (("forward_ms", forward), ("r1_ms", r1)):
        for _ in range(3):
            fn()
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        result[name] = (time.perf_counter() - start) / iters * 1000
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 256])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    result: dict = {"device": str(device), "torch": torch.__version__}
    result["check"] = check_double_backward(device)
    print(f"double backward on {device}: {result['check']}", flush=True)
    result["timings"] = {}
    for res in args.resolutions:
        t = time_pipe(device, res, args.batch, args.p, args.iters)
        result["timings"][str(res)] = t
        print(
            f"{res} px, batch {args.batch}, p {args.p}: augment {t['forward_ms']:.2f} ms, "
            f"R1 through it {t['r1_ms']:.2f} ms",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if all(result["check"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
