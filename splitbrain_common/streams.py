"""Reading a child process's output as lines, as it arrives (Trio)."""

from __future__ import annotations

from collections.abc import Callable

import trio


async def pump_lines(
    stream: trio.abc.ReceiveStream, on_lines: Callable[[list[bytes]], None]
) -> None:
    """Hand a node's output to ``on_lines`` as lines (newlines stripped) until it ends.

    ``on_lines`` gets the complete lines of each chunk as it arrives (so
    events are seen as they happen), and at the end a last line that had no
    newline. A closed or broken stream ends the output like EOF does.
    """
    buffer = b""
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            break
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        on_lines(lines)
    if buffer:
        on_lines([buffer])
