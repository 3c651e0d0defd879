#!/usr/bin/env bash
# Build the ukva-lab Docker image unless the one for this checkout's files is already there.
#
# The image is keyed by the content of every file that goes into it (Dockerfile, .dockerignore,
# pyproject.toml, README.md, lab/, vm/): it is tagged ukva-lab:<key> and ukva-lab. When
# ukva-lab:<key> exists the build is skipped, so a warm CI (docker's storage persists on the
# machine) does not rebuild it. The base, debian:bookworm, is pulled where a registry answers and
# otherwise built with vm/docker/base-image.sh (debootstrap + docker import).
#
#   vm/docker/image.sh            build if needed; prints the key tag last
#   vm/docker/image.sh --key      print the content key only (no docker needed)
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=${UKVA_IMAGE:-ukva-lab}

content_key() {
  # the build context as .dockerignore admits it, plus the two files that shape the build
  { printf '%s\n' Dockerfile .dockerignore pyproject.toml README.md
    find lab vm -type f ! -path '*/__pycache__/*' ! -name '*.pyc'
  } | LC_ALL=C sort | while IFS= read -r f; do
    printf '%s  %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"
  done | sha256sum | cut -c1-16
}

key=$(content_key)
if [ "${1:-}" = "--key" ]; then echo "$key"; exit 0; fi

docker info >/dev/null 2>&1 || {
  echo "image: error: no docker daemon answers (start one: vm/docker/dockerd.sh start)" >&2; exit 1; }

if docker image inspect "$NAME:$key" >/dev/null 2>&1; then
  docker tag "$NAME:$key" "$NAME:latest"
  echo "image: $NAME:$key is up to date (no build)"
  echo "$NAME:$key"
  exit 0
fi

if ! docker image inspect debian:bookworm >/dev/null 2>&1; then
  if ! timeout 60 docker pull -q debian:bookworm >/dev/null 2>&1; then
    echo "image: no registry gives debian:bookworm; building it with debootstrap"
    vm/docker/base-image.sh debian:bookworm
  fi
fi

start=$(date +%s)
log=$(mktemp "${TMPDIR:-/tmp}/ukva-image-build.XXXXXX")
echo "image: building $NAME:$key (log: $log)"
# Classic builder: it needs no buildx plugin and reaches the network through the host's (the
# daemon runs with --bridge=none, so there is no default bridge for build steps).
if ! DOCKER_BUILDKIT=0 docker build --network host -t "$NAME:$key" -t "$NAME:latest" \
     --label "org.ukva-lab.key=$key" . >"$log" 2>&1; then
  tail -30 "$log" >&2
  echo "image: error: docker build failed (log: $log)" >&2
  exit 1
fi
# older keys' images go; their layers shared with this one (apt, pip) stay, so the next build
# after a change to lab/, vm/ or the README redoes only the last layers
docker image ls --format '{{.Repository}}:{{.Tag}}' "$NAME" | grep -vx -e "$NAME:$key" -e "$NAME:latest" \
  | xargs -r docker rmi >/dev/null || true
size=$(docker image inspect -f '{{.Size}}' "$NAME:$key" | awk '{printf "%.0f MB", $1/1e6}')
rm -f "$log"
echo "image: built $NAME:$key in $(( $(date +%s) - start )) s, $size"
echo "$NAME:$key"
