"""Which consistency models an anomaly rules out.

Each anomaly is forbidden by some weakest model (Adya's PL levels, Berenson
et al. for lost update, Adya/Cerone et al. for the session and real-time
variants); every model at least that strong is then ruled out too. The
models, with what each one implies:

- ``strict-serializable`` -> ``strong-session-serializable`` -> ``serializable``
  and ``strong-session-snapshot-isolation``;
- ``serializable`` -> ``repeatable-read``, ``snapshot-isolation``;
- ``strong-session-snapshot-isolation`` -> ``snapshot-isolation``;
- ``repeatable-read`` and ``snapshot-isolation`` -> ``read-committed``
  -> ``read-uncommitted``.

A process edge is also a real-time edge (a client runs one transaction at a
time), so a ``-process`` cycle rules out the strong-session models and
strict serializability; a ``-realtime`` cycle only strict serializability.
Garbage reads, duplicate elements, inconsistent orders of versions and
internal inconsistency break every model here: no model lets a read return
what was never written, or a transaction not see its own writes.
"""

from __future__ import annotations

from collections.abc import Iterable

#: model -> the models it directly implies
IMPLIES: dict[str, tuple[str, ...]] = {
    "strict-serializable": ("strong-session-serializable",),
    "strong-session-serializable": ("serializable", "strong-session-snapshot-isolation"),
    "serializable": ("repeatable-read", "snapshot-isolation"),
    "strong-session-snapshot-isolation": ("snapshot-isolation",),
    "repeatable-read": ("read-committed",),
    "snapshot-isolation": ("read-committed",),
    "read-committed": ("read-uncommitted",),
    "read-uncommitted": (),
}
MODELS = tuple(IMPLIES)

#: anomaly -> the weakest models that forbid it
FORBIDDEN_BY: dict[str, tuple[str, ...]] = {
    "G0": ("read-uncommitted",),
    "G1a": ("read-committed",),
    "G1b": ("read-committed",),
    "G1c": ("read-committed",),
    "G-single": ("repeatable-read", "snapshot-isolation"),
    "G2-item": ("repeatable-read",),
    "lost-update": ("repeatable-read", "snapshot-isolation"),
    "internal": ("read-uncommitted",),
    "garbage": ("read-uncommitted",),
    "duplicate-elements": ("read-uncommitted",),
    "incompatible-order": ("read-uncommitted",),
    "cyclic-versions": ("read-uncommitted",),
}
for _base in ("G0", "G1c", "G-single", "G2-item"):
    FORBIDDEN_BY[_base + "-process"] = ("strong-session-snapshot-isolation",
                                        "strong-session-serializable")
    FORBIDDEN_BY[_base + "-realtime"] = ("strict-serializable",)
# a data cycle without rw is no snapshot-isolation either (PL-SI forbids G1 and G-single)
FORBIDDEN_BY["G2-item-process"] = ("strong-session-serializable",)


def stronger_or_equal(model: str) -> set[str]:
    """Every model that implies ``model`` (itself included)."""
    return {m for m in MODELS if model in implied_by(m)}


def implied_by(model: str) -> set[str]:
    """``model`` and everything it implies."""
    out = {model}
    stack = [model]
    while stack:
        for weaker in IMPLIES[stack.pop()]:
            if weaker not in out:
                out.add(weaker)
                stack.append(weaker)
    return out


def ruled_out(anomalies: Iterable[str]) -> list[str]:
    """The models the anomalies rule out, strongest first (in MODELS order)."""
    out: set[str] = set()
    for anomaly in anomalies:
        for model in FORBIDDEN_BY.get(anomaly, ()):
            out |= stronger_or_equal(model)
    return [m for m in MODELS if m in out]


__all__ = ["FORBIDDEN_BY", "IMPLIES", "MODELS", "implied_by", "ruled_out", "stronger_or_equal"]
