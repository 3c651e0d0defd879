"""Fetch the named configurations' kernels and build the guest image into the lab's cache.

Run while building the Docker image (the only step with network), so that a container started
with ``--network none`` boots those configurations at once. Nothing is booted here.

    python3 vm/docker/prefetch.py highpte lowpte
"""

from __future__ import annotations

import sys

from lab.config import load_config
from lab.guest.image import ensure_image, plan_image
from lab.kernels import provider_for
from lab.kernels.description import load_kernel_description


def main(names: list[str]) -> None:
    for name in names:
        desc = load_kernel_description(load_config(name).kernel)
        print(f"prefetch: {name}: {provider_for(desc).ensure(desc).bzimage}")
    print(f"prefetch: guest image {ensure_image(plan_image())}")


if __name__ == "__main__":
    main(sys.argv[1:])
