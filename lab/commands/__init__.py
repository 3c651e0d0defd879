"""CLI command modules: thin Typer wrappers around plain functions that return data."""
