"""Transactions: what the dependency-graph checkers read from a history.

A transaction is one client operation with ``f = "txn"`` whose value is a list
of *micro-operations* ``[f, key, value]``:

- ``["append", k, v]`` appends ``v`` to the list at ``k`` (list-append);
- ``["w", k, v]`` writes ``v`` to the register ``k`` (rw-register);
- ``["r", k, v]`` reads ``k``: ``v`` is null in the invocation and what was
  read in the completion (a list for list-append, a value or null for a
  register; null is the initial, never-written state).

``read``/``write`` are accepted as spellings of ``r``/``w`` (Knossos's
multi-register). Keys and values may be any JSON / EDN scalars; lists are
frozen to tuples so they can be hashed.

The micro-ops of an ``ok`` transaction come from its completion (that is where
the reads' results are); those of an ``info`` transaction (outcome unknown)
from its invocation, with its reads unknown; a ``fail`` transaction certainly
did not commit, so its writes must never be seen by anyone (G1a).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from checker.history import History, Op
from checker.models import ModelError, freeze, show_value

APPEND, READ, WRITE = "append", "r", "w"
_F_NAMES = {"append": APPEND, "r": READ, "read": READ, "w": WRITE, "write": WRITE}

#: a micro-op as the checkers see it: (f, key, value), all hashable
MicroOp = tuple[str, Any, Any]


@dataclass(slots=True)
class Txn:
    """One transaction: its micro-ops and where it sits in real time.

    ``call``/``complete`` are event positions in the history (``complete`` is
    None when it never completed); ``type`` is ``ok``, ``fail`` or ``info``.
    """

    id: int
    process: Any
    type: str
    mops: tuple[MicroOp, ...]
    call: int
    complete: int | None
    call_time: int | None = None
    complete_time: int | None = None

    @property
    def committed(self) -> bool:
        return self.type == "ok"

    def view(self) -> dict[str, Any]:
        """A JSON-friendly description for evidence (micro-ops as lists, as in the input)."""
        out: dict[str, Any] = {
            "id": self.id, "process": self.process, "type": self.type,
            "value": [[f, _thaw(k), _thaw(v)] for f, k, v in self.mops],
            "invoke": self.call, "complete": self.complete,
        }
        if self.call_time is not None:
            out["invoke_time"] = self.call_time
        if self.complete_time is not None:
            out["complete_time"] = self.complete_time
        return out

    def describe(self) -> str:
        """A short text like ``T12 [append x 3] [r y [1 2]]`` for explanations."""
        parts = " ".join(f"[{f} {show_value(k)} {show_value(v)}]" for f, k, v in self.mops)
        return f"T{self.id} {parts}".rstrip()


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


_SCALARS = (int, str, type(None), bool, float)


def _freeze(value: Any) -> Any:
    """:func:`checker.models.freeze`, with a fast path for scalars and flat lists."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        frozen = tuple(value)
        if all(type(v) in _SCALARS for v in frozen):
            return frozen
    return freeze(value)


def _parse_mops(op: Op, raw: Any, from_invocation: bool) -> tuple[MicroOp, ...]:
    if not isinstance(raw, list | tuple):
        raise ModelError(f"a txn's value must be a list of micro-ops, got {raw!r} (op {op.id})")
    mops = []
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise ModelError(f"a micro-op must be [f, key, value], got {item!r} (op {op.id})")
        f = _F_NAMES.get(item[0]) if isinstance(item[0], str) else None
        if f is None:
            raise ModelError(f"unknown micro-op {item[0]!r}: expected append, r or w "
                             f"(op {op.id})")
        value = None if (f == READ and from_invocation) else _freeze(item[2])
        mops.append((f, _freeze(item[1]), value))
    return tuple(mops)


def _is_read(item: Any) -> bool:
    return (isinstance(item, list | tuple) and len(item) > 0 and isinstance(item[0], str)
            and _F_NAMES.get(item[0]) == READ)


def txn_from_op(op: Op) -> Txn:
    """The transaction an operation stands for; ModelError if it is not a txn."""
    if op.f != "txn":
        raise ModelError(f"expected only txn operations, got {op.f!r} (op {op.id})")
    use_output = op.type == "ok"
    raw = op.output if use_output else op.value
    if use_output and raw is None:  # some writers leave an ok's value off: use the invocation
        raw, use_output = op.value, False
        if isinstance(raw, list | tuple) and any(_is_read(m) for m in raw):
            raise ModelError(f"an ok txn must carry its reads in the completion (op {op.id})")
    return Txn(op.id, op.process, op.type, _parse_mops(op, raw, not use_output), op.call,
               op.complete, op.call_time, op.complete_time)


def txns_from_history(history: History | Iterable[Op]) -> list[Txn]:
    """Every txn operation of a history, in invocation order."""
    ops = history.ops if isinstance(history, History) else history
    return [txn_from_op(op) for op in ops]


__all__ = ["APPEND", "READ", "WRITE", "MicroOp", "Txn", "show_value", "txn_from_op",
           "txns_from_history"]
