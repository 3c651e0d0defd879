# ukva-lab in a container: the lab, QEMU, the compilers and the Python dependencies, on Debian
# bookworm, with the stock `highpte`/`lowpte` kernel and the guest image already in the cache so
# that `docker run --network none` traces at once. Build with `just image` (vm/docker/image.sh:
# content-key tag, local debian:bookworm base where no registry is reachable). See README "Docker".
#
# Builds with the classic builder and BuildKit alike (no heredocs, no RUN --mount).

# --- stage 1: Python >= 3.11.4 --------------------------------------------------------------
# The lab needs tarfile's extraction filters (PEP 706, Python >= 3.11.4); bookworm's python3 is
# 3.11.2 without them. We build CPython from the upstream tarball that Debian trixie's python3.13
# source package carries: apt-get source fetches it from the Debian archive and checks it against
# the signed Sources index, so it comes from the same trusted place as every other package here
# (no prebuilt interpreter from a third party; none could be downloaded on a registry-less host).
FROM debian:bookworm AS python
ARG PYTHON_SOURCE=python3.13
ARG PYTHON_SUITE=trixie
RUN printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$PYTHON_SUITE" > /etc/apt/sources.list.d/python-src.sources \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        build-essential dpkg-dev xz-utils ca-certificates pkg-config \
        libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev \
        libreadline-dev libncurses-dev uuid-dev
WORKDIR /src
RUN apt-get source --download-only -q "$PYTHON_SOURCE" \
 && tar -xf "$PYTHON_SOURCE"_*.orig.tar.xz \
 && cd Python-* \
 && ./configure -q --prefix=/opt/python --with-ensurepip=install --without-static-libpython \
 && make -s -j"$(nproc)" \
 && make -s install \
 && rm -rf /opt/python/lib/python3*/test /opt/python/lib/python3*/idlelib \
           /opt/python/lib/python3*/tkinter /opt/python/lib/python3*/turtledemo \
 && find /opt/python -name __pycache__ -prune -exec rm -rf {} + \
 && /opt/python/bin/python3 -c 'import sys, tarfile, ssl, sqlite3, lzma, bz2, ctypes, zlib; assert sys.version_info >= (3, 11, 4) and hasattr(tarfile, "data_filter"); print(sys.version)'

# --- stage 2: the lab -------------------------------------------------------------------------
FROM debian:bookworm
# The packages setup.sh installs (less chromium: only the dashboard browser test uses it), the
# kernel build tools (lab kernel build), the ebpf backend's compilers and i386 libraries, and the runtime libraries of stage 1's Python. apt's
# lists stay in the image: the lab resolves the guest's Debian packages with apt-cache.
RUN dpkg --add-architecture i386 \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        qemu-system-x86 gcc gcc-multilib cpio git ca-certificates \
        flex bison bc libelf-dev libssl-dev ccache make xz-utils \
        clang llvm libbpf-dev:i386 libelf-dev:i386 zlib1g-dev:i386 \
        libssl3 zlib1g libffi8 libbz2-1.0 liblzma5 libsqlite3-0 libreadline8 libncursesw6 libuuid1 \
 && apt-get clean
COPY --from=python /opt/python /opt/python
ENV PATH=/opt/python/bin:$PATH \
    XDG_CACHE_HOME=/lab/.cache \
    UKVA_LAB_RESULTS=/lab/results \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /lab
# The dependencies first, from pyproject alone, so a change to the lab's code (or README) does
# not redo them.
COPY pyproject.toml /lab/
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && python3 -m pip install -q --cert /etc/ssl/certs/ca-certificates.crt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY README.md /lab/
COPY lab /lab/lab
COPY vm /lab/vm
# Editable: the lab finds its guest recipe (vm/) beside the package, as in a checkout.
RUN python3 -m pip install -q --cert /etc/ssl/certs/ca-certificates.crt --no-deps -e /lab \
 && python3 vm/docker/prefetch.py highpte \
 && lab --help >/dev/null
VOLUME ["/lab/results"]
CMD ["lab", "--help"]
