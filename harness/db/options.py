"""Adapters for systems splitbrain did not write: etcd and PySyncObj.

Each module registers its DB with ``harness.db.base.register_db`` on import
(``harness.db.base`` imports them lazily by name for ``--db etcd`` and
``--db pysyncobj``). :func:`network_for` is what ``splitbrain run`` asks
to pick and validate ``--net`` for a database: raft_impl and PySyncObj get
the per-link relays by default (the relays know both framings,
``harness.net.framing``), while etcd speaks HTTP between peers and names
members by URL, so its partitions need network namespaces (``--net netns``,
root) and without root it runs with ``--net none`` (no link faults; kill and
pause still work).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from nemesis import faults

if TYPE_CHECKING:
    from harness.db.base import DBOptions

#: Databases whose peers cannot run through the frame relays, and why.
FOREIGN_PEER_PROTOCOL = {
    "etcd": "etcd's peers talk HTTP and name each other by advertised URL",
}
#: Databases whose nodes send every message through the harness (harness.net.router).
ROUTED = frozenset({"maelstrom"})
LINK_FAULTS = frozenset(faults.LINK_FAULTS)


class AdapterOptionError(ValueError):
    """The options do not fit the chosen database (shown to the user as is)."""


def network_for(db: str, requested: str | None, faults: set[str]) -> str:
    """The ``--net`` backend to use for ``db``; AdapterOptionError when impossible.

    ``requested`` is the user's ``--net`` (None: choose), ``faults`` the
    fault packages of the run (those of a schedule file included).
    """
    if db in ROUTED:
        if requested not in (None, "router"):
            raise AdapterOptionError(f"--db {db} uses the harness's own message router "
                                     f"(every link fault works); leave --net out")
        return "router"
    if db not in FOREIGN_PEER_PROTOCOL:
        return requested or "proxy"
    why = FOREIGN_PEER_PROTOCOL[db]
    link_faults = faults & LINK_FAULTS
    if requested == "proxy":
        raise AdapterOptionError(
            f"--db {db} cannot use --net proxy: {why}, so per-link frame relays cannot sit "
            f"between them; use --net netns (root) for partitions, or --net none"
        )
    if requested is None:
        requested = "netns" if os.geteuid() == 0 else "none"
    if requested == "none" and link_faults:
        raise AdapterOptionError(
            f"--db {db} needs --net netns (network namespaces, root) for "
            f"{', '.join(sorted(link_faults))}: {why}"
        )
    return requested


#: Read modes each adapter implements (raft_impl: all of them).
READ_MODES = {
    "etcd": ("read-index", "stale"),
    "pysyncobj": ("log", "stale"),
}
READ_MODE_HELP = {
    "etcd": "read-index (linearizable reads, etcd's default) or stale (serializable reads "
            "served by any member from its local state)",
    "pysyncobj": "log (reads are replicated commands; read-index is taken to mean this, "
                 "as PySyncObj has no read index) or stale (local reads on any node)",
}


def check_read_mode(db: str, read_mode: str) -> None:
    """AdapterOptionError when ``db`` cannot serve reads the way ``read_mode`` asks."""
    modes = READ_MODES.get(db)
    if modes is None or read_mode in modes:
        return
    if db == "pysyncobj" and read_mode == "read-index":
        return
    raise AdapterOptionError(f"--db {db} supports --read-mode {READ_MODE_HELP[db]}, "
                             f"not {read_mode}")


def check_options(db: str, options: DBOptions) -> None:
    """AdapterOptionError when ``options`` ask ``db`` for a read mode it lacks or for planted bugs.

    The adapters' constructors call this, so a DB built without the command
    line (tests, the Python API) refuses the same options ``splitbrain run`` does.
    """
    check_read_mode(db, options.read_mode)
    if options.bugs:
        raise AdapterOptionError("planted bugs (--bug) exist only in raft_impl")
