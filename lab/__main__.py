"""``python -m lab`` runs the CLI."""

from .cli import main

if __name__ == "__main__":  # not again in a Dask worker process (spawn)
    main()
