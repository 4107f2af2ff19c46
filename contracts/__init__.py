"""Data contracts shared by workflows, activities, the gateway and the agent.

This package imports nothing else from the project; everyone imports it.
"""
