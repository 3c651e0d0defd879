# ukva-lab in a container: the lab, QEMU, the compilers and the Python dependencies, on Debian
# bookworm, with the stock `highpte`/`lowpte` kernel and the guest image already in the cache so
# that `docker run --network none` traces at once. Build with `just image` (vm/docker/image.sh:
# content-key tag, local debian:bookworm base where no registry is reachable). See README "Docker".
#
# Builds with the classic builder and BuildKit alike (no heredocs, no RUN --mount).

FROM debian:bookworm
# The packages setup.sh installs (less chromium: only the dashboard browser test uses it), the
# kernel build tools (lab kernel build), the ebpf backend's compilers and i386 libraries, and
# Debian's python3 (3.11.2: the lab's virtualenv adds backports.tarfile for the extraction
# filters, as on the host). apt's lists stay in the image: the lab resolves the guest's Debian
# packages with apt-cache.
RUN dpkg --add-architecture i386 \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        qemu-system-x86 gcc gcc-multilib cpio git ca-certificates \
        flex bison bc libelf-dev libssl-dev ccache make xz-utils \
        clang llvm libbpf-dev:i386 libelf-dev:i386 zlib1g-dev:i386 \
        python3 python3-venv \
 && apt-get clean \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
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
