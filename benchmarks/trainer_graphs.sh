#!/usr/bin/env bash
# The trainer itself (not the benchmark's step) with each compiled mode, on a GPU: a short VisCoIN
# run on `shapes` at 32 px with a tiny random generator, eager bf16, compiled, and compiled with
# CUDA graphs (viscoin.compile_mode=reduce-overhead), the last one then resumed for more steps
# from its checkpoint and compile cache. Prints each run's logged training losses side by side:
# a step that read a CUDA graph's outputs after the next replay would log other numbers.
#   bash benchmarks/trainer_graphs.sh [RUNS_DIR] [ITERATIONS]
set -euo pipefail
root=${1:-runs/trainer-graphs}
iters=${2:-80}
rm -rf "$root" && mkdir -p "$root"
device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
data=(--config shapes --set data.resolution=32 --set data.options.n_train=256
      --set data.options.n_test=64 --device "$device" --runs-dir "$root" --quiet)
python3 - "$root" <<'PY'
import sys
from pathlib import Path

import torch

from viscoin.models import stylegan2

torch.manual_seed(0)
G = stylegan2.Generator(
    z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
    mapping_kwargs={"num_layers": 2}, channel_base=1024, channel_max=64,
)
stylegan2.save_generator(G, Path(sys.argv[1]) / "G.safetensors")
PY
python3 -m viscoin train classifier "${data[@]}" --set classifier.epochs=1 \
  --set classifier.arch=resnet18 --name f
run() {  # NAME ITERATIONS SETTINGS...: one VisCoIN run (or its resume, with --resume in SETTINGS)
  local name=$1 n=$2 start=$SECONDS
  shift 2
  python3 -m viscoin train viscoin "${data[@]}" \
    --classifier "$root/f" --generator "$root/G.safetensors" --name "$name" \
    --set viscoin.iterations="$n" --set viscoin.n_concepts=16 --set viscoin.channels=32 \
    --set viscoin.real_batch=8 --set viscoin.fake_batch=8 --set viscoin.eval_every=0 \
    --set viscoin.log_every=10 --set viscoin.checkpoint_every=20 --set viscoin.warmup=20 \
    --set viscoin.lpips=none --set viscoin.amp=bf16 "$@"
  echo "$name: $((SECONDS - start)) s"
}
run eager "$iters" --set viscoin.compile=false
run compiled "$iters" --set viscoin.compile=true --set viscoin.compile_mode=default
graphs=(--set viscoin.compile=true --set viscoin.compile_mode=reduce-overhead)
run graphs "$iters" "${graphs[@]}"
cp -r "$root/graphs" "$root/graphs-resumed"  # its compile-cache/ too: the resume loads the graphs
run graphs-resumed "$((iters + iters / 2))" "${graphs[@]}" --resume
python3 - "$root" <<'PY'
import json
import sys
from pathlib import Path

root = Path(sys.argv[1])
runs = ["eager", "compiled", "graphs", "graphs-resumed"]
logs = {}
for name in runs:
    lines = (root / name / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    logs[name] = {r["step"]: r["total"] for r in records if r["split"] == "train" and "total" in r}
steps = sorted(set().union(*logs.values()))
print("step  " + "  ".join(f"{n:>14}" for n in runs))
for s in steps:
    print(f"{s:4d}  " + "  ".join(f"{logs[n].get(s, float('nan')):14.5f}" for n in runs))
for name in runs[1:]:
    common = [s for s in logs["eager"] if s in logs[name]]
    worst = max(abs(logs[name][s] - logs["eager"][s]) / abs(logs["eager"][s]) for s in common)
    print(f"{name} vs eager: largest relative difference of the logged total {worst:.4f}")
PY
