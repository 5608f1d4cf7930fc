#!/usr/bin/env bash
# Train the shipped model set on one lent GPU in a single call (see docs/TRAINING.md).
# Phase A (parallel): baseline (RD) codecs at 3 lambdas, align 4 (version 40).
# Phase B (parallel): codec-only fine-tuning (with the bundled baseline classifier fer-resnet18/13)
# and joint training (from the bundled fer-resnet18-webp/2) at the same 3 lambdas, each starting
# from the phase-A codec of its lambda. The baseline classifier is not retrained here: its long
# run needs a call of its own (SET=classifier-long).
# SET=classifier-long: only the long baseline classifier run of configs/gpu/classifier-long.toml.
# Artifacts come back as tarballs in $OUT (the device tool returns at most 8 files of 16 MB).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
LAMBDAS="${LAMBDAS:-0.0018 0.0067 0.025}"
BUDGET_A="${BUDGET_A:-3.0}" BUDGET_B="${BUDGET_B:-2.6}"
OUT="${OUT:-out}"; mkdir -p "$OUT" runs models
EXTRA="${EXTRA:-}"  # e.g. a tiny local dry run: EXTRA="--set epochs=1 --set max_steps_per_epoch=2"
PY="${PY:-python3}"
if [ -z "${DRY_RUN:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.total --format=csv
fi
$PY scripts/device_data.py unpack .data /tmp/fer2013.npz || exit 1
$PY -c "import torch, compressai, numpy; print(torch.__version__, compressai.__version__, numpy.__version__, torch.cuda.is_available())" || exit 1
T="$PY -m cli.main train"
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start ))s] $*"; }

if [ "${SET:-paper}" = "classifier-long" ]; then  # issue 10: one long classifier run only
  log "classifier-long"
  $T classifier --config configs/gpu/classifier-long.toml --out runs/classifier-long \
    --set data="/tmp/fer2013.npz" --set time_budget_min="${BUDGET_LONG:-8.5}" $EXTRA \
    > runs/classifier-long.log 2>&1
  tail -n 5 runs/classifier-long.log
  tar czf "$OUT/m-clf-long.tgz" -C models fer-resnet18/12
  tar czf "$OUT/logs.tgz" runs/classifier-long.log runs/classifier-long/log.csv
  ls -la "$OUT"; log "all done"; exit 0
fi

log "phase A"
for l in $LAMBDAS; do
  $T codec --config configs/gpu/codec.toml --out runs/codec --lambdas $l --set data="/tmp/fer2013.npz" \
    --set time_budget_min=$BUDGET_A $EXTRA > runs/codec-$l.log 2>&1 &
done
wait
log "phase A done"; tail -n 3 runs/*.log; ls models

log "phase B"
for l in $LAMBDAS; do
  $T finetune --config configs/gpu/finetune.toml --out runs/finetune --lambdas $l \
    --set data="/tmp/fer2013.npz" --set time_budget_min=$BUDGET_B $EXTRA > runs/finetune-$l.log 2>&1 &
  $T joint --config configs/gpu/joint.toml --out runs/joint --lambdas $l \
    --set data="/tmp/fer2013.npz" --set time_budget_min=$BUDGET_B $EXTRA > runs/joint-$l.log 2>&1 &
done
wait
log "phase B done"; tail -n 3 runs/finetune-*.log runs/joint-*.log; ls models

# Only the versions this call wrote (the bundled ones stay out: one tarball must be < 16 MB).
pack() { local name=$1; shift; [ $# -gt 0 ] && tar czf "$OUT/$name.tgz" -C models "$@"; }
ver() { for l in $LAMBDAS; do [ -d "models/$1-l$l/$2" ] && echo "$1-l$l/$2"; done; }
pack m-base-codecs $(ver face-hyperprior 40)
pack m-finetune $(ver face-hyperprior-fer 40)
pack m-joint-codecs $(ver face-hyperprior-joint 20)
pack m-joint-clf-a $(ver fer-resnet18-joint 20 | head -n 2)
pack m-joint-clf-b $(ver fer-resnet18-joint 20 | tail -n +3)
find runs -name log.csv -o -name "*.log" | tar czf "$OUT/logs.tgz" -T -
ls -la "$OUT"; log "all done"
