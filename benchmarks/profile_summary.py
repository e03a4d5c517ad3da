"""GPU time per step by kind of kernel, from the Chrome traces that ``train_step.py --profile``
writes (three profiled steps each).

    python benchmarks/profile_summary.py benchmarks/results/h200/fir-profile/*.trace.json.gz

Prints, per trace: kernels launched per step, the GPU's busy time per step (the sum of kernel,
copy and memset durations; below the step's wall time when the host cannot launch fast enough),
that time split by kind (Triton element-wise and reduction kernels, cuDNN convolutions forward and
backward, cuDNN's NCHW↔NHWC layout transforms, matrix products, Adam), and the largest kernels.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from pathlib import Path

KINDS = (  # (kind, substrings of the kernel name), first match wins
    ("triton element-wise", ("triton_poi",)),
    ("triton reduction", ("triton_red", "triton_per")),
    ("layout transform", ("nchwToNhwc", "nhwcToNchw", "tensorTransform", "AddPadding")),
    ("convolution backward", ("dgrad", "wgrad")),
    ("convolution forward", ("fprop",)),
    ("matrix product", ("gemm", "Gemm", "cublas", "nvjet", "splitK")),
    ("Adam", ("adam", "multi_tensor")),
)


def kind(name: str) -> str:
    """The kind of a GPU kernel, from its name (``other`` if none matches)."""
    for label, parts in KINDS:
        if any(p in name for p in parts):
            return label
    return "other"


def summarise(trace: dict, steps: int = 3) -> dict:
    """Per step: ``kernels`` launched, ``busy_ms``, ``by_kind`` (ms) and ``top`` (name → ms)."""
    events = [
        e
        for e in trace["traceEvents"]
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")
    ]
    by_kind: Counter[str] = Counter()
    top: Counter[str] = Counter()
    for e in events:
        by_kind[kind(e["name"])] += e["dur"] / 1000 / steps
        top[e["name"]] += e["dur"] / 1000 / steps
    return {
        "kernels": len(events) / steps,
        "busy_ms": sum(by_kind.values()),
        "by_kind": dict(by_kind.most_common()),
        "top": dict(top.most_common(5)),
    }


def load(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per trace")
    args = parser.parse_args()
    for path in args.traces:
        s = summarise(load(path), args.steps)
        kinds = ", ".join(f"{k} {v:.1f}" for k, v in s["by_kind"].items())
        print(f"{path.name}: {s['kernels']:.0f} kernels, GPU busy {s['busy_ms']:.1f} ms per step")
        print(f"    ms: {kinds}")
        for name, ms in s["top"].items():
            print(f"    {ms:6.2f}  {name[:100]}")


if __name__ == "__main__":
    main()
