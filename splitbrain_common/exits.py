"""Exit codes of every splitbrain command (docs/DESIGN.md §10), defined once.

0 valid, 1 invalid, 2 unknown or could not run. 1 means "invalid" and nothing
else: a user mistake, an internal error or an interruption is 2, so a script
can tell a found bug from everything else.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2
ALL = (EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN)


def for_validity(valid: object) -> int:
    """The code of a verdict: True 0, False 1, anything else (``"unknown"``, missing) 2."""
    if valid is True:
        return EXIT_VALID
    if valid is False:
        return EXIT_INVALID
    return EXIT_UNKNOWN


def worst(codes: Iterable[int]) -> int:
    """The code of a batch: invalid beats unknown beats valid (a found bug is the news)."""
    codes = set(codes)
    if EXIT_INVALID in codes:
        return EXIT_INVALID
    if EXIT_UNKNOWN in codes:
        return EXIT_UNKNOWN
    return EXIT_VALID
