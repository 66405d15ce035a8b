"""The one error type users see: it names the file, the line and the problem."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input. ``str(err)`` is the single line the CLI prints."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(f"{where}{message}")
