"""Benchmarks behind `hmr-ros bench ...`: each writes JSON (and a table) under bench/results/."""
