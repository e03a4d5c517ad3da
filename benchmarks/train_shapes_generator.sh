#!/usr/bin/env bash
# Reproduces the StyleGAN2 generator shipped for the built-in shapes dataset
# (src/viscoin/assets/shapes-generator.safetensors) on one H200, in two phases of the same run:
#   1. from scratch, R1 γ = 0.2, 5.5 minutes (2 479 steps of 256 images, 635 kimg);
#   2. resumed with R1 γ = 1.0 (the discriminator was winning too clearly), to step 5 500 (1 408 kimg).
# The training state at step 5 500 is in benchmarks/results/shapes-gan/ for whoever continues it.
# Usage: benchmarks/train_shapes_generator.sh RUNS_DIR
set -euo pipefail
runs=${1:-runs}
common=(--config shapes
  --set data.options.n_train=100000 --set data.num_workers=14 --set gan.batch_size=256
  --set gan.kimg=1408 --set gan.snapshot_every=500 --set gan.log_every=50
  --runs-dir "$runs" --name shapes-gan --device cuda)
viscoin train gan "${common[@]}" --set gan.r1_gamma=0.2 --set gan.max_minutes=5.5
viscoin train gan "${common[@]}" --set gan.r1_gamma=1.0 --resume
