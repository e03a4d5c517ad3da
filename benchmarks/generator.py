"""Generator throughput: images/s of the pure-PyTorch StyleGAN2 at inference (eval, no grad).

Rows: channel_base 16384 and 32768 × precision (fp32; bf16 autocast; fp16 blocks, i.e. the official
``num_fp16_res`` layers, which only run in float16 on CUDA). Random weights: speed does not depend
on them. Never run by the test suite.

    python benchmarks/generator.py                     # 256 px, batch 32, on the GPU
    python benchmarks/generator.py --tiny              # seconds on a CPU (32 px, batch 4, channel_base 1024)
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from viscoin.models.stylegan2 import Generator


def build(resolution: int, channel_base: int, num_fp16_res: int, device: torch.device) -> Generator:
    G = Generator(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={
            "channel_base": channel_base,
            "channel_max": 512,
            "num_fp16_res": num_fp16_res,
            "conv_clamp": 256 if num_fp16_res else None,
        },
    )
    return G.eval().requires_grad_(False).to(device)


def images_per_second(
    G: Generator, batch: int, variant: str, device: torch.device, warmup: int, iters: int
) -> float:
    """``variant``: ``fp32`` | ``bf16`` (every block in bfloat16) | ``fp16`` (the network's own
    float16 blocks), plus ``+cl`` (channels_last), ``+unfused`` (modulate the activations instead of
    the weights), ``+compile`` (torch.compile of the whole generator call)."""
    tokens = set(variant.split("+"))
    z = torch.randn(batch, G.z_dim, device=device)
    c = torch.zeros(batch, 0, device=device)
    kwargs = {
        "noise_mode": "const",
        "force_fp32": "fp16" not in tokens,
        "dtype": torch.bfloat16 if "bf16" in tokens else None,
        "channels_last": True if "cl" in tokens else None,
        "fused_modconv": False if "unfused" in tokens else None,
    }
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if "bf16" in tokens
        else contextlib.nullcontext()
    )

    def generate() -> torch.Tensor:
        with autocast:
            return G.synthesis(G.mapping(z, c), **kwargs)

    run = torch.compile(generate) if "compile" in tokens else generate

    def step() -> None:
        with torch.no_grad():
            run()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="small CPU run (32 px, batch 4, channel_base 1024)"
    )
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--num-fp16-res", type=int, default=4)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--channel-base", type=int, nargs="+", default=[16384, 32768])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["fp32", "bf16", "bf16+cl", "fp16"],
        help="see images_per_second",
    )
    args = parser.parse_args()
    if args.tiny:
        args.resolution, args.batch, args.iters, args.channel_base = 32, 4, 3, [1024]
        args.device = "cpu" if args.device == "auto" else args.device
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"StyleGAN2 generator, {args.resolution} px, batch {args.batch}, {name}")
    print(f"{'channel_base':>12}  {'variant':<18} {'images/s':>10}")
    warmup = 1 if args.tiny else 5
    for channel_base in args.channel_base:
        G = build(args.resolution, channel_base, 0, device)
        G16 = build(args.resolution, channel_base, args.num_fp16_res, device)
        for variant in args.variants:
            model = G16 if "fp16" in variant else G
            if "fp16" in variant and (device.type != "cuda" or args.num_fp16_res == 0):
                print(f"{channel_base:>12}  {variant:<18} {'n/a (CUDA only)':>10}")
                continue
            ips = images_per_second(model, args.batch, variant, device, warmup, args.iters)
            print(f"{channel_base:>12}  {variant:<18} {ips:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
