"""``python -m lab`` runs the CLI."""

from .cli import main

main()
