"""Errors the checkers raise for bad input.

Kept in a module of its own so every reader (histories, observations) raises the
same exception, and the command line can turn it into a clean message with exit
code 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A malformed input file: names the file, the 1-based line (if known) and what is wrong."""

    def __init__(self, path: str | Path | None, line: int | None, message: str) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"
