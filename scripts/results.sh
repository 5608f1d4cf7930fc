#!/usr/bin/env bash
# Regenerate docs/RESULTS.md and its figures from the shipped models on FER2013 PublicTest.
#   bash scripts/results.sh            (DATA=path/to/fer2013.npz to override; ~45 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/fer2013.npz}"
F="${FERCOMP:-.venv/bin/fercomp}"
L="0.0018 0.0067 0.025"
mkdir -p docs/results docs/figures
# 1. generic codecs with the baseline classifier
[ -f docs/results/publictest-baselines.json ] || "$F" eval --data "$DATA" --split PublicTest \
  --codec none --classifier fer-resnet18/1 --baselines jpeg,webp,avif \
  --qualities 5,10,20,30,50,75,90 --json docs/results/publictest-baselines.json
# 2. learned codecs: baseline (RD), codec-only fine-tuned, joint (each joint codec is also
#    scored with its own jointly trained classifier); uncompressed accuracy of every classifier
codecs=(); clfs=(--classifier fer-resnet18/1)
for fam in face-hyperprior face-hyperprior-fer face-hyperprior-joint; do
  for l in $L; do codecs+=(--codec "$fam-l$l/1"); done
done
for l in $L; do clfs+=(--classifier "fer-resnet18-joint-l$l/1"); done
[ -f docs/results/publictest-learned.json ] || "$F" eval --data "$DATA" --split PublicTest \
  "${codecs[@]}" "${clfs[@]}" --baselines none --samples-png docs/figures/samples.png \
  --json docs/results/publictest-learned.json
# 2b. the points trained after the first set: lambda 0.08 (all three stages) and the version-2
#     joint pairs (6000 more joint steps); every classifier is scored again on uncompressed faces
H=0.08; V2="0.0018 0.0067 0.025 $H"
codecs2=(--codec "face-hyperprior-l$H/1" --codec "face-hyperprior-fer-l$H/1" \
  --codec "face-hyperprior-joint-l$H/1")
clfs2=("${clfs[@]}" --classifier "fer-resnet18-joint-l$H/1"); v2fam=()
for l in $V2; do
  codecs2+=(--codec "face-hyperprior-joint-l$l/2"); clfs2+=(--classifier "fer-resnet18-joint-l$l/2")
  v2fam+=("face-hyperprior-joint-l$l/2")
done
[ -f docs/results/publictest-learned-2.json ] || "$F" eval --data "$DATA" --split PublicTest \
  "${codecs2[@]}" "${clfs2[@]}" --baselines none --json docs/results/publictest-learned-2.json
# 3. tables, BD-rates and plots (joint v2 drawn as its own curve, "joint-v2")
"$F" report --eval docs/results/publictest-baselines.json \
  --eval docs/results/publictest-learned.json --eval docs/results/publictest-learned-2.json \
  --family "joint-v2=$(IFS=,; echo "${v2fam[*]}")" --out docs
