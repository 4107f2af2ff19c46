"""What every intake parser shares: the poison error, and JSON that is safe to walk before any parser does."""

import json
from typing import Any


class PoisonMessage(ValueError):
    """A message the conductor can never act on; `reason` is one readable line for the log and DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Jira's ADF descriptions are the deepest real shape: a few levels per nested list, well under this.
MAX_JSON_DEPTH = 100


def load_json(text: str, what: str) -> Any:
    """JSON that is safe to walk: bounded depth, no NUL in any key or string; else PoisonMessage."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise PoisonMessage(f"{what} is not JSON ({err.msg})") from err
    except RecursionError as err:  # the C decoder's own guard, far below a crash
        raise PoisonMessage(f"{what} is JSON nested deeper than {MAX_JSON_DEPTH} levels") from err
    _check_tree(doc, what)
    return doc


def _check_tree(doc: Any, what: str) -> None:
    """Iterative, so a deep document cannot exhaust the stack here either."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise PoisonMessage(f"{what} is JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            for key, value in node.items():
                if "\x00" in key:
                    raise PoisonMessage(f"{what} has a NUL character in a key")
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str) and "\x00" in node:
            raise PoisonMessage(f"{what} has a NUL character in a string")
