"""The guest: QEMU command line, image provisioning, console watching, the agent channel."""
