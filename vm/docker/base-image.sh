#!/usr/bin/env bash
# Build the `debian:bookworm` base image locally, for hosts that reach Debian's archive but no
# image registry: debootstrap a minbase bookworm root, then `docker import` it under that tag, so
# the lab's Dockerfile (FROM debian:bookworm) builds unchanged on it. Needs root, debootstrap and
# a running dockerd. Where a registry is reachable, `docker pull debian:bookworm` does the same.
#
#   vm/docker/base-image.sh [TAG]        (default TAG: debian:bookworm; MIRROR= to change mirror)
set -euo pipefail
TAG=${1:-debian:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

command -v debootstrap >/dev/null || { echo "base-image: error: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "base-image: error: debootstrap needs root" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ukva-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "base-image: debootstrap bookworm (minbase) from $MIRROR"
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; echo "base-image: error: debootstrap failed (log above)" >&2; exit 1; }

# The same apt sources the official image has (main, updates, security), in deb822 form.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
# Local CA certificates (an egress proxy's, a company's) go into the locally built base: a host
# without a registry is usually one behind such a proxy, and the image's pip must reach PyPI.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
# As the official image: no apt caches or lists in the layer, no downloaded .debs kept.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/log/*.log
printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };' \
  'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };' \
  'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$root/etc/apt/apt.conf.d/docker-clean"

tar --numeric-owner --xattrs -C "$root" -c . | docker import \
  --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
  --message "debootstrap --variant=minbase bookworm $MIRROR" - "$TAG" >/dev/null
echo "base-image: $TAG $(docker image inspect -f '{{.Id}}' "$TAG" | cut -c1-19) ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
