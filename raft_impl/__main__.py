"""``python -m raft_impl``: run one node of the raft_impl key/value store.

    python -m raft_impl --id n1 --data-dir DIR \\
        --peer-listen 127.0.0.1:7001 --client-listen 127.0.0.1:8001 \\
        --peer n2=127.0.0.1:7102 --peer n3=127.0.0.1:7103 [--read-mode MODE] [--bug NAME]
        [--election-timeout MIN,MAX] [--max-append-entries N] [--max-inflight-appends N]

``--list-bugs`` prints the planted bugs, one a line. Exit codes: 0 after
SIGTERM/SIGINT, 1 when the node cannot run (WAL corruption, port in use),
2 for a bad command line. The contract (options, stdout events): docs/DESIGN.md, section 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import trio

from .bugs import BUGS
from .client import parse_address
from .core import READ_MODES
from .node import NodeConfig, emit, run_node
from .storage import WalCorruption


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _peer(text: str) -> tuple[str, tuple[str, int]]:
    node_id, sep, address = text.partition("=")
    if not sep or not node_id:
        raise argparse.ArgumentTypeError(f"expected ID=HOST:PORT, got {text!r}")
    return node_id, _address(address)


def _timeouts(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX in seconds, got {text!r}") from None
    if not 0 < low < high:
        raise argparse.ArgumentTypeError(f"need 0 < MIN < MAX, got {text!r}")
    return low, high


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m raft_impl", description="Run one node of the raft_impl Raft KV store."
    )
    parser.add_argument("--list-bugs", action="store_true", help="list planted bugs and exit")
    parser.add_argument("--id", help="this node's id, e.g. n1")
    parser.add_argument("--data-dir", type=Path, help="directory of the WAL and snapshots")
    parser.add_argument("--peer-listen", type=_address, help="HOST:PORT for peer connections")
    parser.add_argument("--client-listen", type=_address, help="HOST:PORT for clients")
    parser.add_argument(
        "--peer", type=_peer, action="append", default=[], metavar="ID=HOST:PORT",
        help="another node and the address to dial it at (repeatable)",
    )
    parser.add_argument("--read-mode", choices=READ_MODES, default="read-index")
    parser.add_argument(
        "--bug", action="append", default=[], choices=sorted(BUGS), metavar="NAME",
        help="enable a planted bug (repeatable; see --list-bugs)",
    )
    parser.add_argument(
        "--election-timeout", type=_timeouts, default=(0.30, 0.60), metavar="MIN,MAX",
        help="election timeout range in seconds (default 0.3,0.6)",
    )
    parser.add_argument(
        "--snapshot-threshold", type=_positive_int, default=10_000, metavar="N",
        help="take a snapshot every this many applied entries (default 10000)",
    )
    parser.add_argument(
        "--max-append-entries", type=_positive_int, default=256, metavar="N",
        help="at most N log entries per AppendEntries message (default 256); 1 or 2 "
             "make a lagging follower catch up one round trip per entry, which keeps "
             "old-term entries and a new leader's no-op in separate messages",
    )
    parser.add_argument(
        "--max-inflight-appends", type=_positive_int, default=64, metavar="N",
        help="at most N unacknowledged AppendEntries per follower (default 64); with "
             "--max-append-entries 1, a follower then gets one entry per round trip",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the node's RNG")
    parser.add_argument("--verbose", action="store_true", help="debug logging on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_bugs:
        width = max(len(name) for name in BUGS)
        for name, line in BUGS.items():
            print(f"{name:<{width}}  {line}")
        return 0
    missing = [
        flag for flag, value in (
            ("--id", args.id), ("--data-dir", args.data_dir),
            ("--peer-listen", args.peer_listen), ("--client-listen", args.client_listen),
        ) if value is None
    ]
    if missing:
        parser.error(f"missing {', '.join(missing)}")
    peers = dict(args.peer)
    if len(peers) != len(args.peer) or args.id in peers:
        parser.error("peer ids must be distinct and differ from --id")
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s {args.id} %(levelname)s %(message)s",
    )
    config = NodeConfig(
        node_id=args.id,
        data_dir=args.data_dir,
        peer_listen=args.peer_listen,
        client_listen=args.client_listen,
        peers=peers,
        read_mode=args.read_mode,
        bugs=frozenset(args.bug),
        election_timeout=args.election_timeout,
        snapshot_threshold=args.snapshot_threshold,
        max_append_entries=args.max_append_entries,
        max_inflight_appends=args.max_inflight_appends,
        seed=args.seed,
    )
    try:
        return trio.run(run_node, config)
    except BaseException as group:  # every failure becomes an error event
        exc = _unwrap(group)
        if isinstance(exc, KeyboardInterrupt):
            return 0
        if isinstance(exc, WalCorruption):
            return _fatal(f"WAL corruption: {exc}")
        if isinstance(exc, OSError):
            return _fatal(f"cannot run node {args.id}: {exc}")
        logging.getLogger("raft_impl").exception("node %s crashed", args.id)
        return _fatal(f"node {args.id} crashed: {type(exc).__name__}: {exc}")


#: Options the harness's adapter sets itself; extra node arguments must not override them.
_ADAPTER_OWNED = ("id", "data_dir", "peer_listen", "client_listen", "peer", "bug", "list_bugs")


def check_tuning_args(words: Sequence[str]) -> None:
    """Raise ValueError unless ``words`` are valid tuning options of a node.

    The harness passes such words through to every node (``splitbrain run
    --node-arg``); checking them here, with the node's own parser, turns a
    typo into a clear message before a run starts instead of five dead nodes.
    Identity, addresses, peers and bugs are the adapter's to set.
    """
    parser = build_parser()

    def fail(message: str) -> NoReturn:
        raise ValueError(message)

    parser.error = fail  # type: ignore[method-assign]
    parsed = parser.parse_args(list(words))
    defaults = parser.parse_args([])
    owned = [name for name in _ADAPTER_OWNED if getattr(parsed, name) != getattr(defaults, name)]
    if owned or parsed.read_mode != defaults.read_mode:
        names = [f"--{name.replace('_', '-')}" for name in owned]
        names += ["--read-mode"] if parsed.read_mode != defaults.read_mode else []
        raise ValueError(f"{', '.join(names)} are set by the harness, not by node arguments")


def _unwrap(exc: BaseException) -> BaseException:
    """The first leaf of nested exception groups (Trio nurseries wrap what tasks raise)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _fatal(message: str) -> int:
    logging.getLogger("raft_impl").error(message)
    emit({"event": "error", "message": message})
    return 1


if __name__ == "__main__":
    sys.exit(main())
