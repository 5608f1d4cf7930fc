#!/usr/bin/env bash
# The serving benchmarks of issue 33 on one lent GPU in a single call (docs/SERVING.md, "Speed"):
# the per-stage breakdown (entropy on the CPU, synthesis and classifier on the GPU, fp32 vs the
# served precision), the v1/v2 entropy table and the served throughput. Tables come back as
# markdown files in $OUT. Same setup as scripts/gpu_train.sh: the packages travel as wheels in
# .whl/ and the faces as the packed mosaic in .data/ (scripts/device_data.py pack).
# CPU dry run here: OUT=/tmp/out DRY_RUN=1 PY=.venv/bin/python DEVICE=cpu FACES=64 \
#   bash scripts/gpu_bench.sh
set -u
export PYTHONUNBUFFERED=1
OUT="${OUT:-out}"; mkdir -p "$OUT"
PY="${PY:-python3}"
DEVICE="${DEVICE:-cuda}"
FACES="${FACES:-2048}"
if [ -z "${DRY_RUN:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.total --format=csv
fi
$PY scripts/device_data.py unpack .data /tmp/fer2013.npz || exit 1
run() {  # name, then the command; its table goes to $OUT/name.md
  local name=$1; shift
  echo "== $name"; "$@" > "$OUT/$name.md" 2> "$OUT/$name.err"; local rc=$?
  cat "$OUT/$name.md"; [ $rc -eq 0 ] || { echo "$name failed ($rc)"; tail -n 20 "$OUT/$name.err"; }
}
for threads in 1 4; do
  run "stages-$DEVICE-t$threads" $PY -m benchmarks.server_stages --data /tmp/fer2013.npz \
    --faces "$FACES" --batch 64 --threads $threads --device "$DEVICE"
done
run "bitstream-v2" $PY -m benchmarks.bitstream_v2 --data /tmp/fer2013.npz --faces "$FACES" \
  --threads 1 --codec models/face-hyperprior-fer-l0.025/2
run "served" $PY -m benchmarks.served_throughput --data /tmp/fer2013.npz --faces "$FACES" \
  --concurrency 16 --device "$DEVICE"
ls -la "$OUT"
