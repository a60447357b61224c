"""Tureen's forwarding benchmark (issue 7): C load tools, scenarios over the control API,
a C baseline in the same run, saturation search, table, JSON and plot.

Run it with `make bench` (or `python -m benchmarks.run --help`); docs/benchmarks.md explains
what is measured and how to read it.
"""
