#!/usr/bin/env bash
# make fleet-test: the fleet of deploy/swarm/stack.yml (3 server replicas, PostgreSQL, HAProxy,
# Prometheus) on a single-node Docker Swarm on this machine, without a registry, checked end to
# end by deploy/swarm/fleet_checks.py (docs/DEPLOY.md "Verified here"): predictions read back
# across replicas, a killed task rescheduled with 0 failed requests, a fleet rollout and an
# orchestrator rolling update under traffic, scale 3 -> 1 -> 3 with every acknowledged
# prediction still there.
#
# The engine, the prerequisites and the images are those of `make stack-test`
# (deploy/local/engine.sh), plus fercomp-postgres (deploy/local/Dockerfile.postgres). When the
# node is in no swarm, it runs `docker swarm init` and, at the end, `docker swarm leave
# --force` (only then). The stack is removed at the end, also on Ctrl-C, unless FLEET_KEEP=1.
#
# Env: FERCOMP_STACK_CACHE, FERCOMP_DATA as for stack-test; FLEET_ROLLOUT_CODEC (default
# face-hyperprior-fer-l0.0067/3: a release codec the default classifier reads) is what check 3
# rolls out; FLEET_KEEP=1 leaves the stack, the swarm and the images up. Exit 0 all checks
# passed, 1 a check failed, 2 it cannot run here (no engine, no room for the images, no swarm
# mode; one line says why).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
ENGINE_NAME=fleet-test
# shellcheck source=deploy/local/engine.sh
source "$ROOT/deploy/local/engine.sh"
STACK=fercomp-fleet
PROBE=fercomp-fleet-probe
ROLLOUT_CODEC="${FLEET_ROLLOUT_CODEC:-face-hyperprior-fer-l0.0067/3}"

engine_prerequisites
engine_start
engine_disk_check

# -- swarm ----------------------------------------------------------------------------------
SWARM_INIT=0
swarm_state="$(docker info -f '{{.Swarm.LocalNodeState}}')"
if [ "$swarm_state" = inactive ]; then
  log "docker swarm init (single node; left again at the end)"
  if ! docker swarm init >"$CACHE/swarm-init.log" 2>&1; then
    # Several addresses and none chosen: advertise the one of the default route.
    addr="$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}')"
    docker swarm init --advertise-addr "${addr:-127.0.0.1}" >>"$CACHE/swarm-init.log" 2>&1 \
      || { engine_stop; die_engine "docker swarm init failed: $(tail -1 "$CACHE/swarm-init.log")"; }
  fi
  SWARM_INIT=1
elif [ "$swarm_state" != active ] || [ "$(docker info -f '{{.Swarm.ControlAvailable}}')" != true ]; then
  engine_stop
  die_engine "this node is in a swarm as a worker or in state $swarm_state; a manager can deploy a stack"
fi

remove_stack() {
  docker rm -f "$PROBE" >/dev/null 2>&1 || true
  docker stack rm "$STACK" >/dev/null 2>&1 || true
  for _ in $(seq 120); do
    [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] && break
    sleep 1
  done
  for _ in $(seq 30); do
    docker network inspect "$STACK" >/dev/null 2>&1 || break
    docker network rm "$STACK" >/dev/null 2>&1 || sleep 1
  done
  docker volume ls -q --filter "label=com.docker.stack.namespace=$STACK" | xargs -r docker volume rm >/dev/null || true
}
# Secrets of this run only, never on a command line: the stack reads them as the Docker
# secrets below (files in the containers; docker service inspect shows their names only), the
# checks use the admin token from the environment.
export FERCOMP_ADMIN_TOKEN="${FERCOMP_ADMIN_TOKEN:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
FERCOMP_DB_PASSWORD="${FERCOMP_DB_PASSWORD:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
SECRETS=(fercomp_admin_token fercomp_db_password fercomp_db_url)  # stack.yml's external ones
remove_secrets() {
  docker secret rm "${SECRETS[@]}" >/dev/null 2>&1 || true
}
create_secrets() {
  # A stack left by FLEET_KEEP=1 still uses the last run's secrets: it goes first.
  remove_stack
  remove_secrets
  # printf is a shell builtin: the values go through a pipe, not a process' arguments.
  printf %s "$FERCOMP_ADMIN_TOKEN" | docker secret create fercomp_admin_token - >/dev/null
  printf %s "$FERCOMP_DB_PASSWORD" | docker secret create fercomp_db_password - >/dev/null
  printf %s "postgresql://fercomp:$FERCOMP_DB_PASSWORD@postgres:5432/fercomp" \
    | docker secret create fercomp_db_url - >/dev/null
}
cleanup() {
  rc=$?
  if [ "${FLEET_KEEP:-0}" != 1 ]; then
    remove_stack
    remove_secrets
    if [ "$SWARM_INIT" = 1 ]; then
      log "docker swarm leave --force (this test initialised the swarm)"
      docker swarm leave --force >/dev/null 2>&1 || true
    fi
    remove_images
  fi
  engine_finish "$rc"
}
engine_traps cleanup

# -- images -----------------------------------------------------------------------------------
build_images
log "PostgreSQL image (deploy/local/Dockerfile.postgres)"
timed build-postgres nice -n 10 docker build -q -f deploy/local/Dockerfile.postgres \
  -t fercomp-postgres:local deploy/local >/dev/null
echo "IMAGE fercomp-postgres:local $(docker image inspect -f '{{.Size}}' fercomp-postgres:local)"
ensure_faces

# -- the checks -------------------------------------------------------------------------------
create_secrets
log "fleet checks (stack $STACK, rollout to $ROLLOUT_CODEC)"
# The DB password goes to the checks through the environment (never a command line): check 1
# looks for it in what docker inspect shows.
FERCOMP_DB_PASSWORD="$FERCOMP_DB_PASSWORD" "$PY" deploy/swarm/fleet_checks.py --faces "$FACES" --stack-file deploy/swarm/stack.yml \
  --codec "$ROLLOUT_CODEC"
