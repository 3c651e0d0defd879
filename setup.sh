#!/usr/bin/env bash
# Set up ukva-lab on a fresh Debian bookworm (or Ubuntu) x86_64 machine: system packages via
# apt (needs root or sudo), then a Python virtualenv in .venv with the lab installed editable.
# Safe to re-run. Downloads of kernels and builds happen later, into $XDG_CACHE_HOME/ukva-lab.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  qemu-system-x86        # qemu-system-x86_64 runs the 32-bit PAE guest (TCG)
  gcc gcc-multilib       # static i386 workload programs and the guest agent (gcc -m32 -static)
  cpio                   # tests list the generated initramfs with cpio(1)
  python3 python3-venv python3-dev
  git ca-certificates
  chromium               # the dashboard test renders it in headless Chromium
  flex bison bc libelf-dev libssl-dev ccache make xz-utils   # kernel builds from linux-source-6.1
  clang llvm             # the ebpf backend's BPF programs (clang -target bpf; llvm-objdump)
  libbpf-dev:i386 libelf-dev:i386 zlib1g-dev:i386   # its static i386 loader (gcc -m32 -static -lbpf -lelf -lz)
  debootstrap            # the docker tests build the image's debian:bookworm base without a registry
)
# docker for the image tests (tests/docker); Debian's docker.io, unless a docker engine is
# already installed (docker-ce conflicts with docker.io: apt would remove it)
if ! command -v dockerd >/dev/null; then PACKAGES+=(docker.io); fi

if ! dpkg --print-foreign-architectures | grep -qx i386; then
  echo "setup: adding the i386 architecture to dpkg (32-bit guest packages)"
  $SUDO dpkg --add-architecture i386
fi
# One index can fail to download while a mirror syncs (seen: bookworm-security's i386 list
# for days). The other indexes still update, so warn and go on: apt-get install below fails
# clearly if a package is really missing.
for attempt in 1 2; do
  if $SUDO apt-get update -q; then break; fi
  if [ "$attempt" = 2 ]; then
    echo "setup: warning: apt-get update reported errors (above); using the indexes apt has" >&2
  else
    sleep 5
  fi
done
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

# Python >= 3.11: Debian bookworm's own python3 (3.11.2) does. Bundle import needs tarfile's
# extraction filters (PEP 706, stdlib from 3.11.4); below that pip brings backports.tarfile
# (pyproject.toml). PYTHON=/path/to/python3 picks another interpreter.
py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
PY=${PYTHON:-python3}
if ! py_ok "$PY"; then
  echo "setup: error: need Python >= 3.11; $("$PY" --version 2>&1) is too old (set PYTHON=/path/to/python3)" >&2
  exit 1
fi
if [ -x .venv/bin/python ] && ! py_ok .venv/bin/python; then
  echo "setup: .venv was made with an older Python; making it again with $PY"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
echo "setup: done. Commands: .venv/bin/lab --help   (or: .venv/bin/just --list)"
