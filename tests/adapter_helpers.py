"""Shared by the adapter tests (etcd, PySyncObj): one short real run with faults."""

from __future__ import annotations

import json
from pathlib import Path

from harness.run.run import RunConfig, RunOutcome, run_test


def netns_usable() -> bool:
    """True when partitions can be made here (network namespaces: root, iproute2, iptables)."""
    from harness.net.netns import NetnsUnavailable, check_available

    try:
        check_available()
    except NetnsUnavailable:
        return False
    return True


def short_schedule(tmp_path: Path, partitions: bool) -> Path:
    """Isolate one node (with netns), heal, then kill one node and restart it."""
    steps = [{"at": 3.5, "f": "kill", "value": "one"}, {"at": 5.0, "f": "start", "value": "all"}]
    if partitions:
        steps = [{"at": 1.0, "f": "partition", "value": {"shape": "isolate-one"}},
                 {"at": 2.5, "f": "heal", "value": None}, *steps]
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(steps))
    return path


def short_run_with_faults(db: str, tmp_path: Path, *, rate: int, seed: int,
                          net: str | None = None, workload: str = "register") -> RunOutcome:
    """Six seconds of a three-node ``db`` under :func:`short_schedule`, stored in ``tmp_path``.

    With ``net="proxy"`` (the relays know the system's frames) partitions always;
    else partitions only where netns works, and elsewhere ``--net none`` with the
    kill and restart alone, so the test still runs the adapter end to end.
    """
    partitions = net == "proxy" or netns_usable()
    if net is None:
        net = "netns" if partitions else "none"
    config = RunConfig(
        db=db,
        nodes=3,
        time_limit=6,
        rate=rate,
        concurrency=3,
        keys=3,
        nemesis_schedule=str(short_schedule(tmp_path, partitions)),
        net=net,
        seed=seed,
        store=str(tmp_path),
        quiet_period=1,
        op_timeout=2.0,
        render_report=False,
        workload_name=workload,
    )
    return run_test(config)
