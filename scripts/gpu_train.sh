#!/usr/bin/env bash
# Train the shipped model set on one lent GPU in a single call (see docs/TRAINING.md).
# Phase A (parallel): baseline classifier + baseline codecs at 3 lambdas.
# Phase B (parallel): codec-only fine-tuning and joint training at the same 3 lambdas, each
# starting from the baseline codec of its lambda and the baseline classifier.
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
$T classifier --config configs/gpu/classifier.toml --out runs/classifier --set data="/tmp/fer2013.npz" \
  --set time_budget_min=$BUDGET_A ${EXTRA_CLF:-} > runs/classifier.log 2>&1 &
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

pack() { local name=$1; shift; [ $# -gt 0 ] && tar czf "$OUT/$name.tgz" -C models "$@"; }
(cd models && ls -d face-hyperprior-l* fer-resnet18 face-hyperprior-fer-l* face-hyperprior-joint-l* \
  fer-resnet18-joint-l* 2>/dev/null) > /tmp/arts
pack m-base-codecs $(grep -E '^face-hyperprior-l' /tmp/arts)
pack m-base-clf $(grep -E '^fer-resnet18$' /tmp/arts)
pack m-finetune $(grep -E '^face-hyperprior-fer-l' /tmp/arts)
pack m-joint-codecs $(grep -E '^face-hyperprior-joint-l' /tmp/arts)
pack m-joint-clf-a $(grep -E '^fer-resnet18-joint-l' /tmp/arts | head -n 2)
pack m-joint-clf-b $(grep -E '^fer-resnet18-joint-l' /tmp/arts | tail -n +3)
find runs -name log.csv -o -name "*.log" | tar czf "$OUT/logs.tgz" -T -
ls -la "$OUT"; log "all done"
