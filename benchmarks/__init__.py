"""Benchmarks: Stamen side by side with Flower 1.42 (see README.md here)."""
