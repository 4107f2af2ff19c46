"""Simulation: a scenario of intake messages run through the real workflows with recorded activities."""
