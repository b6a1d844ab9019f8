"""Appending whole lines to a JSONL file, or nothing.

Every JSONL file a run writes as it goes (history, observations, message
trace, node output) must stay readable line by line whatever stops the
writing: a full disk, an I/O error, a crash. A buffered text file flushed per
line is not enough: when the disk fills, ``write`` stores part of a line and
fails, and the torn tail makes the whole file suspect (issue 16: ``check
RUN_DIR`` refused such a run). :class:`LineAppender` writes with ``os.write``,
remembers where the last whole line ended, and when a write fails it cuts the
file back to there (``ftruncate`` needs no free space) and raises
:class:`LineWriteError`, so the caller can stop at once with what is on disk
intact.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class LineWriteError(OSError):
    """A line could not be appended (disk full, I/O error, read-only filesystem);
    the file holds every line before it, whole. ``errno`` is the system's."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path = path

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror}"


class LineAppender:
    """An append-only file of whole lines; see the module docstring.

    :meth:`write` takes one or more complete lines (``\\n``-terminated) and
    writes them at once. After a :class:`LineWriteError` the appender is
    broken: later writes raise the same error without touching the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        #: Where the last whole line ends (the file's size, as far as we wrote it).
        self._whole = os.fstat(self._fd).st_size
        self.failed: LineWriteError | None = None

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.failed is not None:
            raise self.failed
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        if not data:
            return
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._whole)
            self.failed = LineWriteError(self.path, exc)
            raise self.failed from None
        self._whole += len(data)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None
