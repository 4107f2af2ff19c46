"""Deterministic workflow code only: no I/O, no clock, no randomness outside the SDK's own."""
