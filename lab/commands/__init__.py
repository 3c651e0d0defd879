"""CLI command modules: thin Typer wrappers around plain functions that return data.

Split by job: guest (up, status, exec, down), measure (trace, study, profile), results
(runs, show; show_render formats a run's report), dashboards (dashboard), reports (report:
mail text, Markdown, study folders), bundle, kernel.
"""
