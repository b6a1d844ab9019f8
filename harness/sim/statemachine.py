"""The bridge from the simulator to raft_impl's key/value state machine.

The simulated node applies exactly the commands a real node applies, encoded
the same way (``raft_impl.kv.Command``), so a log dump, a state digest or the
planted ``no-dedup`` bug mean the same thing in both worlds. Everything the
simulator needs from ``raft_impl.kv`` goes through this module.
"""

from __future__ import annotations

from typing import Any

from raft_impl.kv import Command, KVStateMachine
from raft_impl.types import Entry, EntryKind


def new_state_machine(bugs: frozenset[str]) -> KVStateMachine:
    return KVStateMachine(dedup="no-dedup" not in bugs)


def encode_command(request: dict[str, Any]) -> bytes:
    return Command.from_request(request).encode()


def entry_command(entry: Entry) -> Command | None:
    if entry.kind is not EntryKind.COMMAND or not entry.data:
        return None
    return Command.decode(entry.data)


def answers(command: Command | None, request: dict[str, Any]) -> bool:
    """True when the applied ``command`` is the one ``request`` proposed (same session)."""
    return (command is not None and command.client == request.get("client")
            and command.seq == request.get("seq") and command.op == request.get("op"))
