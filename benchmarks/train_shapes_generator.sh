#!/usr/bin/env bash
# Reproduces the StyleGAN2 generator shipped for the built-in shapes dataset
# (src/viscoin/assets/shapes-generator.safetensors): the `shapes` preset's gan section on one H200,
# 100 000 procedurally drawn training images, batch 256, stopped by the time budget.
# Usage: benchmarks/train_shapes_generator.sh RUNS_DIR [MINUTES]
set -euo pipefail
runs=${1:-runs}
minutes=${2:-6}
viscoin train gan --config shapes \
  --set data.options.n_train=100000 --set data.num_workers=14 \
  --set gan.batch_size=256 --set gan.r1_gamma=0.2 \
  --set gan.kimg=50000 --set gan.max_minutes="$minutes" \
  --set gan.snapshot_every=500 --set gan.log_every=50 \
  --runs-dir "$runs" --name shapes-gan --device cuda
