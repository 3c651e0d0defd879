"""ukva-lab: count what highmem page tables cost on a real 32-bit PAE guest."""

__all__ = ["__version__"]
__version__ = "0.1.0"
