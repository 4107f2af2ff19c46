"""Benchmarks (`make bench`): each prints its figure as a ratio against a raw baseline from the same run."""
