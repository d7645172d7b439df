"""Benchmark suites run by scripts/bench.py: each module exposes run(cfg) -> dict of measured figures."""
