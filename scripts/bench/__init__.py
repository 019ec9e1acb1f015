"""Benchmarks (`python -m scripts.bench scan|model|metrics`): tables that compare side by side in one run."""
