"""What one slider move of ``viscoin explore`` costs for a run: milliseconds from the request to the
answer, and its parts.

A move regenerates the image held by the explorer (Ψ's output on it cached): Ω on the modified
concept maps, G's synthesis, f and g on the regenerated image, then PNG encoding. Each move draws a
new λ in [0, 4] (step 0.25) for every shown concept. Rows: the explorer's ``regenerate`` (what the
server runs per move), its parts, and the whole HTTP answer through the Starlette app (in-process
client, JSON and base64 included, no network). Never run by the test suite on a real run.

    python benchmarks/explore_latency.py runs/demo/viscoin                # CPU or CUDA (auto)
    python benchmarks/explore_latency.py runs/demo/viscoin --device cpu --threads 1 --moves 100
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from viscoin.app.state import LAMBDA_STEP, MAX_LAMBDA, Explorer, explore_target, open_explorer
from viscoin.interpret.amplify import predict
from viscoin.utils.device import resolve_device
from viscoin.utils.figures import image_array, png_bytes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], moves: int, warmup: int, device: torch.device) -> list[float]:
    """Milliseconds of each of ``moves`` calls of ``fn`` after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(moves):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "mean_ms": statistics.fmean(ordered),
    }


def _image_key(explorer: Explorer, index: int, seed: int) -> dict:
    """Hold dataset image ``index``, or, without a dataset, an upload of random pixels."""
    if explorer.dataset is not None:
        return explorer.select(index)
    from PIL import Image

    rng = np.random.default_rng(seed)
    size = explorer.model.resolution
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return explorer.upload(buffer.getvalue(), "random.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a VisCoIN run directory or bundle")
    parser.add_argument("--dataset", default=None, help="the dataset of a bundle")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--moves", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=5, help="concepts with a slider")
    parser.add_argument("--image", type=int, default=0, help="dataset image to explore")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    explorer = open_explorer(
        *explore_target(args.run, args.dataset), device=device, top_k=args.top_k
    )
    model = explorer.model
    analysis = _image_key(explorer, args.image, args.seed)
    key, shown = analysis["id"], [c["concept"] for c in analysis["concepts"]]
    rng = random.Random(args.seed)
    steps = int(MAX_LAMBDA / LAMBDA_STEP)

    def lambdas() -> dict[str, float]:
        return {str(k): rng.randint(0, steps) * LAMBDA_STEP for k in shown}

    rows: dict[str, list[float]] = {}
    rows["regenerate (one slider move)"] = timed(
        lambda: explorer.regenerate(key, lambdas()), args.moves, args.warmup, device
    )
    # its parts, on the same image
    with torch.no_grad():
        out = explorer.held(key).out  # what regenerate works from

        def intervene() -> torch.Tensor:
            scale = explorer.scales(lambdas()).to(out.concept_maps)
            return model.decode_intervention(out.concept_maps * scale[None, :, None, None], out)

        generated = intervene()
        rows["  Ω + G (decode_intervention)"] = timed(intervene, args.moves, args.warmup, device)
        rows["  f and g on the new image"] = timed(
            lambda: predict(model, generated), args.moves, args.warmup, device
        )
        rows["  PNG encoding"] = timed(
            lambda: png_bytes(image_array(generated[0])), args.moves, args.warmup, device
        )
    try:
        from starlette.testclient import TestClient

        from viscoin.app.server import create_app
    except ImportError:
        print("(the HTTP row needs starlette and httpx: pip install 'viscoin[app]' httpx)")
    else:
        with TestClient(create_app(explorer)) as client:

            def answer() -> None:
                response = client.post("/api/regenerate", json={"image": key, "lambdas": lambdas()})
                response.raise_for_status()

            rows["HTTP answer (in-process client)"] = timed(answer, args.moves, args.warmup, device)

    name = explorer.name or args.run
    print(
        f"{name}: {model.resolution} px, {model.n_concepts} concepts, {len(shown)} sliders, "
        f"device {device}, {torch.get_num_threads()} CPU threads, {args.moves} moves"
    )
    width = max(len(label) for label in rows)
    print(f"{'':{width}}  median ms   p90 ms")
    results = {}
    for label, times in rows.items():
        stats = summary(times)
        results[label.strip()] = stats
        print(f"{label:{width}}  {stats['median_ms']:9.1f} {stats['p90_ms']:8.1f}")
    if args.json:
        meta = {
            "run": str(args.run),
            "resolution": model.resolution,
            "n_concepts": model.n_concepts,
            "sliders": len(shown),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "moves": args.moves,
            "torch": torch.__version__,
        }
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
