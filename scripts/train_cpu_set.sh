#!/usr/bin/env bash
# Train the shipped CPU model set (models/) on a 2-core machine (steps 1-5 ~3 h, 6-7 ~2 h).
# Two lanes of one thread each; every step is skipped when its artifact already exists, and a
# killed step continues with `--resume` when rerun. Data: $DATA (default ../shared/data/fer2013.npz).
#   bash scripts/train_cpu_set.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
DATA="${DATA:-../shared/data/fer2013.npz}"
F="${FERCOMP:-.venv/bin/fercomp}"
mkdir -p runs

# step ARTIFACT RUN_DIR LOG -- fercomp train args...: skip when done, resume when interrupted
step() {
  local art=$1 run=$2 logf=$3; shift 4
  if [ -f "models/$art/manifest.json" ]; then echo "skip $art (exists)"; return 0; fi
  local resume=""; [ -f "$run/checkpoint.pt" ] && resume="--resume"
  echo "train $art"; "$F" train "$@" --out "${run%/lmbda-*}" $resume --set data="\"$DATA\"" >"$logf" 2>&1
}
wait_for() { until [ -f "models/$1/manifest.json" ]; do sleep 10; done; }

# 1. baseline classifier || baseline codec at lambda 0.0067 from scratch
step fer-resnet18/1 runs/classifier runs/classifier.log -- classifier --config configs/cpu/classifier.toml &
step face-hyperprior-l0.0067/1 runs/codec/lmbda-0.0067 runs/codec-0.0067.log -- \
  codec --config configs/cpu/codec.toml --lambdas 0.0067 &
wait
# 2. the other lambdas warm-start from 0.0067 (3000 steps each), in parallel
for l in 0.0018 0.025; do
  step face-hyperprior-l$l/1 runs/codec/lmbda-$l runs/codec-$l.log -- codec \
    --config configs/cpu/codec.toml --lambdas $l --set epochs=3 --set time_budget_min=12.0 \
    --set init_codec='"models/face-hyperprior-l0.0067/1"' &
done
wait
# 3. codec-only fine-tuning, then joint training (from the fine-tuned codec), two at a time
jobs_list() {
  for l in 0.0018 0.0067 0.025; do echo "finetune $l"; done
  for l in 0.0018 0.0067 0.025; do echo "joint $l"; done
}
run_job() {
  local kind=$1 l=$2
  if [ "$kind" = finetune ]; then
    step face-hyperprior-fer-l$l/1 runs/finetune/lmbda-$l runs/finetune-$l.log -- \
      finetune --config configs/cpu/finetune.toml --lambdas $l
  else
    wait_for face-hyperprior-fer-l$l/1
    step face-hyperprior-joint-l$l/1 runs/joint/lmbda-$l runs/joint-$l.log -- \
      joint --config configs/cpu/joint.toml --lambdas $l
  fi
}
export -f step wait_for run_job; export F DATA
jobs_list | xargs -P 2 -L 1 bash -c 'run_job "$@"' _
# 4. version 2 of each joint pair: 6000 more joint steps from joint v1 (the short v1 runs saw
#    less than one epoch of decoded faces), two lanes, ~30 min. Lower learning rates with a
#    warm-up: restarting at v1's rates knocked validation accuracy down (52% -> 45%).
# joint_from LAMBDA VERSION RUN_DIR INIT_CODEC CLASSIFIER [--set ...]: continue joint training
# of a lambda from a codec + classifier pair at the low codec rate with a half-epoch warm-up
joint_from() {
  local l=$1 v=$2 run=$3 init=$4 clf=$5; shift 5
  step face-hyperprior-joint-l$l/$v "$run" runs/joint-v$v-$l.log -- \
    joint --config configs/cpu/joint.toml --lambdas $l --set "version=\"$v\"" \
    --set lr=5e-5 --set warmup_epochs=0.5 \
    --set init_codec="\"$init\"" --set classifier="\"$clf\"" "$@"
}
export -f joint_from
v2_job() {
  local l=$1
  joint_from $l 2 runs/joint/face-hyperprior-joint-sweep/lmbda-$l \
    models/face-hyperprior-joint-l$l/1 models/fer-resnet18-joint-l$l/1 \
    --set epochs=12 --set classifier_lr=5e-4 --set time_budget_min=60 "${@:2}"
}
export -f v2_job
# 5. a fourth, higher-rate point (lambda 0.08, warm-started from 0.025) through the same chain,
#    run beside step 4: the three lower points stop short of the uncompressed accuracy.
high_rate_chain() {
  local l=0.08
  step face-hyperprior-l$l/1 runs/codec/lmbda-$l runs/codec-$l.log -- codec \
    --config configs/cpu/codec.toml --lambdas $l --set epochs=3 --set time_budget_min=20.0 \
    --set init_codec='"models/face-hyperprior-l0.025/1"'
  step face-hyperprior-fer-l$l/1 runs/finetune/lmbda-$l runs/finetune-$l.log -- \
    finetune --config configs/cpu/finetune.toml --lambdas $l
  step face-hyperprior-joint-l$l/1 runs/joint/lmbda-$l runs/joint-$l.log -- \
    joint --config configs/cpu/joint.toml --lambdas $l
  v2_job $l --set epochs=6 --set time_budget_min=25  # half of step 4: the session's clock
}
export -f high_rate_chain
high_rate_chain &
printf '%s\n' 0.0018 0.0067 0.025 | xargs -P 2 -L 1 bash -c 'v2_job "$@"' _
wait
ls models
# 6. a wider baseline classifier (width 32, 40 epochs, ~75 min on 2 threads): 64.1% -> 66.8% on
#    PublicTest. Run alone; the joint v3 pairs below start from it.
OMP_NUM_THREADS=2 step fer-resnet18/2 runs/classifier-w32 runs/classifier-w32.log -- \
  classifier --config configs/cpu/classifier-w32.toml
# 7. joint v3: the v2 joint codec of each lambda + the width-32 classifier, 3000 joint steps
#    (~27 min per lambda on one thread), two lanes
v3_job() {
  local l=$1
  joint_from $l 3 runs/joint-v3/lmbda-$l models/face-hyperprior-joint-l$l/2 models/fer-resnet18/2 \
    --set epochs=6 --set classifier_lr=1e-3 --set time_budget_min=50
}
export -f v3_job
printf '%s\n' 0.025 0.08 0.0067 | xargs -P 2 -L 1 bash -c 'v3_job "$@"' _
ls models
# 8. the baseline classifier of issue 10 (bf16 + channels_last, erasing, EMA, flip-TTA selection;
#    72 epochs, ~75 min on 2 threads), then 9. its final fit on all Training faces (12 epochs).
#    Interrupted: rerun this script (step resumes from runs/.../checkpoint.pt). On a new machine
#    without runs/: the exported artifacts are the resume points (init_classifier in step 9).
OMP_NUM_THREADS=2 step fer-resnet18/3 runs/classifier-v3 runs/classifier-v3.log -- \
  classifier --config configs/cpu/classifier-v3.toml
OMP_NUM_THREADS=2 step fer-resnet18/4 runs/classifier-v4 runs/classifier-v4.log -- \
  classifier --config configs/cpu/classifier-v4-full.toml
ls models
# 10. issue 10, second cycle: /3 continued 40 epochs on the same split (val 71.3 -> 72.0 % TTA).
#     Its final fit (configs/cpu/classifier-v6-full.toml) measured 68.96 % on PublicTest, below
#     /4 and /5, and is not shipped.
OMP_NUM_THREADS=2 step fer-resnet18/5 runs/classifier-v5 runs/classifier-v5.log -- \
  classifier --config configs/cpu/classifier-v5.toml
# 11. issue 11: latent alignment (y 3x3 for a 48x48 face). The v3 codecs re-exported at align 4
#     with unchanged weights are the starting points; then four lanes of one thread (~45 min):
#     the paper's loss / the same + KD (the ablation), the WebP-adapted classifier, the <=80 B
#     point; then the continuation of the paper-loss pair and the lambda=0.004 pair (~40 min).
[ -f models/face-hyperprior-joint-l0.025/4/manifest.json ] ||
  "$F" realign models/face-hyperprior-joint-l0.025/3 --align 4 --version 4 --export-dir models
[ -f models/face-hyperprior-joint-l0.0018/3/manifest.json ] ||
  "$F" realign models/face-hyperprior-joint-l0.0018/2 --align 4 --version 3 --export-dir models
step face-hyperprior-joint-l0.025/5 runs/joint-align4 runs/joint-align4.log -- \
  joint --config configs/cpu/joint-align4.toml &
step face-hyperprior-joint-l0.025/6 runs/joint-kd runs/joint-kd.log -- \
  joint --config configs/cpu/joint-kd.toml &
step fer-resnet18-webp/1 runs/classifier-webp runs/classifier-webp.log -- \
  classifier --config configs/cpu/classifier-webp.toml &
step face-hyperprior-joint-l0.0018/4 runs/joint-align4-low runs/joint-align4-low.log -- \
  joint --config configs/cpu/joint-align4-low.toml &
wait
step face-hyperprior-joint-l0.025/7 runs/joint-align4-cont runs/joint-align4-cont.log -- \
  joint --config configs/cpu/joint-align4-cont.toml &
step face-hyperprior-joint-l0.004/1 runs/joint-align4-l0.004 runs/joint-align4-l0.004.log -- \
  joint --config configs/cpu/joint-align4-l0.004.toml &
wait
ls models
# 12. issue 11, the <= 80 B point: lambda 0.003 from joint-l0.004/1, then the rate weighted twice,
#     then the width-32 WebP-adapted classifier in place of the inherited width-16 one (~50 min on
#     both cores). Only the last pair is shipped; the first two are its starting points.
[ -f models/face-hyperprior-joint-l0.003/3/manifest.json ] || {
  mkdir -p runs/lowrate-steps
  "$F" train joint --config configs/cpu/joint-align4-l0.003.toml --out runs/joint-align4-l0.003 \
    --set 'export_dir="runs/lowrate-steps"' --set data="\"$DATA\"" --resume
  "$F" train joint --config configs/cpu/joint-align4-l0.003-r2.toml --out runs/joint-align4-l0.003-r2 \
    --set 'export_dir="runs/lowrate-steps"' \
    --set 'init_codec="runs/lowrate-steps/face-hyperprior-joint-l0.003/1"' \
    --set 'classifier="runs/lowrate-steps/fer-resnet18-joint-l0.003/1"' --set data="\"$DATA\"" --resume
  OMP_NUM_THREADS=2 step face-hyperprior-joint-l0.003/3 runs/joint-align4-l0.003-w32 \
    runs/joint-align4-l0.003-w32.log -- joint --config configs/cpu/joint-align4-l0.003-w32.toml \
    --set 'init_codec="runs/lowrate-steps/face-hyperprior-joint-l0.003/2"'
}
ls models
