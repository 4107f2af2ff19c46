"""End a short-lived Temporal client command without interpreter teardown."""

import os
import sys
from typing import NoReturn


def hard_exit(code: int = 0) -> NoReturn:
    """Teardown can abort (SIGABRT/SIGSEGV, ~1 run in 7 here) while the SDK's Rust client threads are still
    alive (temporalio/sdk-python#300), replacing the exit code. Call only after the last client call; this
    kills the process, so drive such commands from a subprocess in tests."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
