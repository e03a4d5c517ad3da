#!/usr/bin/env bash
# Reproduces the StyleGAN2 generator shipped for the built-in shapes dataset
# (src/viscoin/assets/shapes-generator.safetensors) on one H200, in three phases of the same run:
#   1. from scratch, R1 γ = 0.2, 5.5 minutes (2 479 steps of 256 images, 635 kimg);
#   2. resumed with R1 γ = 1.0 (the discriminator was winning too clearly), to step 5 500 (1 408 kimg);
#   3. resumed with the same settings to step 15 625 (4 000 kimg), 23.5 minutes (it was run as three
#      calls of at most 8.6 minutes, `--set gan.max_minutes=8.6 --resume` each time).
# About 35 minutes of H200 time in all (7 steps/s). Fréchet distance to real test images in the
# features of the demo's classifier (benchmarks/generator_fid.py, N = 1 000): 170.1 after phase 2,
# 38.3 at 2 306 kimg, 9.95 at 3 252 kimg, 7.58 at 4 000 kimg; two real splits: 1.10.
# The training state at step 15 625 is in benchmarks/results/shapes-gan/ for whoever continues it.
# It was trained eagerly (gan.cuda_graphs=false): phase 1's step count is that of its time budget.
# Usage: benchmarks/train_shapes_generator.sh RUNS_DIR
set -euo pipefail
runs=${1:-runs}
common=(--config shapes
  --set data.options.n_train=100000 --set data.num_workers=14 --set gan.batch_size=256
  --set gan.snapshot_every=1000 --set gan.log_every=50 --set gan.cuda_graphs=false
  --runs-dir "$runs" --name shapes-gan --device cuda)
viscoin train gan "${common[@]}" --set gan.kimg=1408 --set gan.r1_gamma=0.2 --set gan.max_minutes=5.5
viscoin train gan "${common[@]}" --set gan.kimg=1408 --set gan.r1_gamma=1.0 --resume
viscoin train gan "${common[@]}" --set gan.kimg=4000 --set gan.r1_gamma=1.0 --resume
