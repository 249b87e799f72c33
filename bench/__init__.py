"""Benchmarks: each module measures into a dict and formats it (`make bench-runtime`, ...)."""
