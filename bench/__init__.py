"""Benchmarks: run one with `python -m bench.<name>`; no test asserts their numbers."""
