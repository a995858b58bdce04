"""Benchmarks (``make benchmarks`` runs each ``bench_*.py``); a package so that they share ``serving``."""
