"""The one rule for task file paths, applied by the conductor when staging and by the agent before writing."""

from pathlib import PurePosixPath


class TaskFilePathError(ValueError):
    """A task file path that is absolute, empty, or escapes its directory."""


def check_relative_path(path: str) -> PurePosixPath:
    """Accept only plain relative POSIX paths: no leading `/` or `~`, no `..`, `.` or empty parts."""
    if not path or path.startswith(("/", "~")) or "\\" in path or "\x00" in path:
        raise TaskFilePathError(f"task file path must be a relative POSIX path: {path!r}")
    if any(part in ("..", ".", "") for part in path.split("/")):
        raise TaskFilePathError(f"task file path must not contain '..', '.' or empty parts: {path!r}")
    return PurePosixPath(path)
