"""A tiny library for the demo agent to change."""


def greet(name: str) -> str:
    return f"Hello, {name}!"
