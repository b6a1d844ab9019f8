"""Errors every layer may raise and the command line knows how to show."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad argument, missing file): printed, never a traceback.

    ``splitbrain`` prints it as one line (``splitbrain: error: …``) and exits 2;
    a schedule file the nemesis refuses and a store that cannot be written are
    user errors too, so the layers below the CLI raise it without knowing the CLI.
    """
