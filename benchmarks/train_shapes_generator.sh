#!/usr/bin/env bash
# Reproduces the StyleGAN2 generator shipped for the built-in shapes dataset
# (src/viscoin/assets/shapes-generator.safetensors): the `shapes` preset's gan section on one GPU,
# 20 000 training images, stopped by the time budget. Usage: benchmarks/train_shapes_generator.sh RUNS_DIR
set -euo pipefail
runs=${1:-runs}
viscoin train gan --config shapes \
  --set data.options.n_train=20000 --set data.num_workers=8 \
  --set gan.kimg=5000 --set gan.max_minutes=7 \
  --set gan.snapshot_every=2000 --set gan.log_every=100 \
  --runs-dir "$runs" --name shapes-gan --device cuda
