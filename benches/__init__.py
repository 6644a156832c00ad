"""Benchmarks: each ``bench_*.py`` module measures one thing against a baseline measured
in the same run, and prints its figures and the ratio. ``make bench`` runs them all."""
