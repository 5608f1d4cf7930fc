#!/usr/bin/env bash
# Base images for the registry-less path (deploy/local/compose.yml), made here from Debian
# packages and PyPI wheels, no container registry involved:
#
#   fercomp-debian:bookworm     debootstrap --variant=minbase bookworm from the configured
#                               Debian mirror (/etc/apt/sources.list*), then docker import
#   fercomp-python:3.11-bookworm  + Debian's python3 (3.11), python3-venv
#   fercomp-pydeps:local        + /opt/venv with every third-party wheel of the server, and
#                               /opt/edge with the torch-free edge client's (build stage of
#                               deploy/Dockerfile and deploy/Dockerfile.client)
#
# Each image is only (re)built when missing (or, for pydeps, when the requirements changed).
# Wheels are downloaded once into $FERCOMP_STACK_CACHE/wheels (outside git, never in an image
# or a build context) and served to the pydeps build over HTTP on the docker bridge.
# Needs: docker (daemon running), debootstrap, python3.11. Prints "TIMING <step> <seconds>".
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${FERCOMP_STACK_CACHE:-/var/cache/fercomp-stack}"
PY="${PY:-python3.11}"
mkdir -p "$CACHE"
log() { printf '[build] %s\n' "$*" >&2; }
timed() {  # timed NAME CMD...: run, print its wall time
  local name=$1 t0=$SECONDS; shift
  "$@"
  echo "TIMING $name $((SECONDS - t0))" >&2
}
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror this machine is configured with (first bookworm "main" source that is not
# the security archive), from one-line and deb822 sources.
debian_mirror() {
  "$PY" - <<'PY'
import glob, re, sys
files = glob.glob("/etc/apt/sources.list") + sorted(glob.glob("/etc/apt/sources.list.d/*"))
for f in files:
    try:
        text = open(f).read()
    except OSError:
        continue
    if f.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            suites = fields.get("Suites", "").split()
            if "bookworm" in suites and "main" in fields.get("Components", "").split():
                for uri in fields.get("URIs", "").split():
                    if "security" not in uri:
                        print(uri); sys.exit(0)
    else:
        for line in text.splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s+.*\bmain\b", line)
            if m and "security" not in m.group(1):
                print(m.group(1)); sys.exit(0)
print("http://deb.debian.org/debian")
PY
}

build_debian() {
  local mirror rootfs="$CACHE/rootfs"
  mirror="$(debian_mirror)"
  log "debootstrap minbase bookworm from $mirror"
  rm -rf "$rootfs"
  nice -n 10 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; return 1; }
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - fercomp-debian:bookworm >/dev/null
  rm -rf "$rootfs"
}

download_wheels() {  # $@: requirements files (each resolved on its own: two virtual envs)
  local venv="$CACHE/tools" r
  [ -x "$venv/bin/pip" ] || "$PY" -m venv "$venv"
  for r in "$@"; do
    # Offline first: an older pip fetches every wheel again just to read its metadata, even
    # when the file is already in the wheelhouse (3 GB, about 12 minutes here).
    if "$venv/bin/pip" download -q --no-index --find-links "$CACHE/wheels" --only-binary=:all: \
        -d "$CACHE/wheels" -r "$r" >/dev/null 2>&1; then
      continue
    fi
    log "pip download into $CACHE/wheels ($(basename "$r"))"
    nice -n 10 "$venv/bin/pip" download -q --only-binary=:all: -d "$CACHE/wheels" -r "$r"
  done
}

build_pydeps() {  # $1: requirements file, $2: their hash, $3: the edge client's requirements
  local ctx="$CACHE/pydeps-ctx" ip port pid rc=0
  rm -rf "$ctx"; mkdir -p "$ctx"; cp "$1" "$ctx/requirements.txt"; cp "$3" "$ctx/edge-requirements.txt"
  # The default bridge's gateway (the host side, docker0); dockerd 20.10 reports only the subnet.
  ip="$(docker network inspect bridge -f '{{(index .IPAM.Config 0).Gateway}}')"
  if [ -z "$ip" ]; then
    ip="$("$PY" -c 'import ipaddress, sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' \
      "$(docker network inspect bridge -f '{{(index .IPAM.Config 0).Subnet}}')")"
  fi
  port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')"
  "$PY" -m http.server "$port" --bind "$ip" --directory "$CACHE/wheels" >"$CACHE/wheelhouse-http.log" 2>&1 &
  pid=$!
  sleep 1
  log "building fercomp-pydeps:local (wheelhouse http://$ip:$port/)"
  nice -n 10 docker build -q -f "$ROOT/deploy/local/Dockerfile.pydeps" \
    --build-arg WHEELHOUSE_URL="http://$ip:$port/" --label "fercomp.requirements=$2" \
    -t fercomp-pydeps:local "$ctx" >/dev/null || rc=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return "$rc"
}

have_image fercomp-debian:bookworm || timed base-debian build_debian
timed base-python nice -n 10 docker build -q -f "$ROOT/deploy/local/Dockerfile.python" \
  -t fercomp-python:3.11-bookworm "$ROOT/deploy/local" >/dev/null

req="$CACHE/requirements.txt"
edge_req="$CACHE/edge-requirements.txt"
"$PY" "$ROOT/deploy/local/requirements.py" >"$req"
"$PY" "$ROOT/deploy/local/requirements.py" --edge >"$edge_req"
hash="$(cat "$req" "$edge_req" | sha256sum | cut -c1-16)"
if [ "$(cat "$CACHE/wheels.stamp" 2>/dev/null)" != "$hash" ]; then
  timed wheels download_wheels "$req" "$edge_req"
  echo "$hash" >"$CACHE/wheels.stamp"
fi
if [ "$(docker image inspect -f '{{index .Config.Labels "fercomp.requirements"}}' fercomp-pydeps:local 2>/dev/null)" != "$hash" ]; then
  timed base-pydeps build_pydeps "$req" "$hash" "$edge_req"
fi
