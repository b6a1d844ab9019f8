"""Hypothesis strategies for simulated tests: public API for users' own properties.

A drawn nemesis schedule is a list of *faults*, each one interval: a start
entry at ``at`` and the entry that undoes it ``duration`` later (heal, start,
resume, p = 0, delay 0, clock reset). Shrinking removes whole faults and moves
times and values toward simple ones, so a failing case shrinks to the few
faults that matter. Times are multiples of 50 ms (integers underneath), which
shrink far better than floats. Every entry that makes random choices carries
its own seed, so removing one fault does not change what the others do.

Example, in a user's suite::

    from hypothesis import given, settings
    from harness.sim import simulate
    from harness.sim.strategies import sim_tests

    @settings(max_examples=50, deadline=None)
    @given(sim_tests(bugs=("commit-old-term",)))
    def test_raft_is_linearizable(tmp_path_factory, test):
        assert simulate(test, tmp_path_factory.mktemp("run")).valid is not False
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from harness.sim.config import READ_MODES, SimClusterConfig, SimTest, SimWorkload
from nemesis.faults import SHAPES

#: The granularity of drawn times, in seconds.
TICK = 0.05
#: Fault kinds a drawn schedule may use (the nemesis packages of a real run).
PACKAGES = ("partition", "kill", "pause", "loss", "delay", "duplicate", "reorder", "clock",
            "lose-unfsynced")
#: Entries that undo a fault rather than start one (not counted as faults).
_UNDO = ("heal", "start", "resume")


def count_faults(schedule: Sequence[dict[str, Any]]) -> int:
    """How many entries of a schedule start a fault (heals and resets are not faults)."""
    count = 0
    for entry in schedule:
        f, value = entry["f"], entry.get("value")
        if f in _UNDO:
            continue
        if f in ("loss", "duplicate", "reorder") and not value.get("p"):
            continue
        if f == "delay" and not (value.get("mean") or value.get("jitter")):
            continue
        if f == "clock" and value.get("reset"):
            continue
        count += 1
    return count


def targets(nodes: Sequence[str]) -> st.SearchStrategy[Any]:
    """A nemesis target: a word, or one named node."""
    return st.one_of(st.sampled_from(["one", "leader", "minority", "majority"]),
                     st.sampled_from(list(nodes)).map(lambda node: [node]))


def _links(nodes: Sequence[str]) -> st.SearchStrategy[list[list[str]] | None]:
    """Every link, or the links into and out of one node."""
    def around(node: str) -> list[list[str]]:
        others = [other for other in nodes if other != node]
        return [[node, o] for o in others] + [[o, node] for o in others]
    return st.one_of(st.none(), st.sampled_from(list(nodes)).map(around))


def _probability(low: float, high: float) -> st.SearchStrategy[float]:
    steps = round((high - low) * 100)
    return st.integers(0, steps).map(lambda k: round(high - k / 100, 2))


@st.composite
def faults(draw: st.DrawFn, nodes: Sequence[str], time_limit: float,
           packages: Sequence[str] = PACKAGES) -> list[dict[str, Any]]:
    """One fault: its start entry and the entry that undoes it."""
    slots = max(1, round(time_limit / TICK))
    at = draw(st.integers(0, slots - 1)) * TICK
    duration = draw(st.integers(1, slots)) * TICK
    end = round(min(at + duration, time_limit), 3)
    at = round(at, 3)
    kind = draw(st.sampled_from(list(packages)))
    seed = draw(st.integers(0, 2**16))
    if kind == "partition":
        shapes = [s for s in SHAPES if len(nodes) >= 3 or s not in ("majorities-ring", "bridge")]
        shape = draw(st.sampled_from(shapes))
        return [{"at": at, "f": "partition", "value": {"shape": shape}, "seed": seed},
                {"at": end, "f": "heal", "value": None}]
    if kind in ("kill", "lose-unfsynced"):
        return [{"at": at, "f": kind, "value": draw(targets(nodes)), "seed": seed},
                {"at": end, "f": "start", "value": "all"}]
    if kind == "pause":
        return [{"at": at, "f": "pause", "value": draw(targets(nodes)), "seed": seed},
                {"at": end, "f": "resume", "value": "all"}]
    if kind in ("loss", "duplicate", "reorder"):
        p = draw(_probability(0.05, 0.5))
        return [{"at": at, "f": kind, "value": {"p": p, "links": draw(_links(nodes))}},
                {"at": end, "f": kind, "value": {"p": 0.0, "links": None}}]
    if kind == "delay":
        mean = draw(st.integers(1, 20)) * 0.01
        return [{"at": at, "f": "delay",
                 "value": {"mean": mean, "jitter": round(mean / 2, 3),
                           "links": draw(_links(nodes))}},
                {"at": end, "f": "delay", "value": {"mean": 0.0, "jitter": 0.0, "links": None}}]
    assert kind == "clock"
    target = draw(targets(nodes))
    if draw(st.booleans()):
        value: dict[str, Any] = {"targets": target,
                                 "offset": draw(st.integers(-20, 20)) * 0.1,
                                 "rate": draw(st.sampled_from([1.0, 0.5, 2.0, 1.5, 0.8]))}
    else:
        value = {"targets": target, "strobe": {
            "delta": draw(st.integers(1, 20)) * 0.05,
            "period": draw(st.integers(1, 10)) * 0.01,
            "duration": round(max(end - at, TICK), 3)}}
    return [{"at": at, "f": "clock", "value": value, "seed": seed},
            {"at": end, "f": "clock", "value": {"reset": True}}]


@st.composite
def schedules(draw: st.DrawFn, nodes: Sequence[str], time_limit: float,
              packages: Sequence[str] = PACKAGES, max_faults: int = 8) -> list[dict[str, Any]]:
    """A schedule of up to ``max_faults`` overlapping faults, sorted by time.

    The final heal is not included: the simulator (like a real run) always
    makes the cluster whole at the time limit.
    """
    drawn = draw(st.lists(faults(nodes, time_limit, packages), max_size=max_faults))
    entries = [entry for pair in drawn for entry in pair]
    return sorted(entries, key=lambda entry: entry["at"])


def cluster_configs(nodes: int | st.SearchStrategy[int] = 3,
                    bugs: Sequence[str] = (),
                    read_modes: Sequence[str] | None = None) -> st.SearchStrategy[SimClusterConfig]:
    """Cluster configurations: size, read mode, snapshot threshold (small, to exercise
    InstallSnapshot), pre-vote and check-quorum; the given planted bugs are always on."""
    sizes = nodes if isinstance(nodes, st.SearchStrategy) else st.just(nodes)
    modes = st.sampled_from(list(read_modes)) if read_modes else st.sampled_from(
        [m for m in READ_MODES if m != "stale"])
    return st.builds(
        SimClusterConfig,
        nodes=sizes,
        read_mode=modes,
        bugs=st.just(tuple(bugs)),
        snapshot_threshold=st.sampled_from([10_000, 200, 50]),
        pre_vote=st.booleans().map(lambda b: not b),
        check_quorum=st.booleans().map(lambda b: not b),
    )


def workloads(time_limit: float | st.SearchStrategy[float] | None = None,
              retry_indefinite: bool | None = None) -> st.SearchStrategy[SimWorkload]:
    """Register workloads: keys, mix, rate, concurrency, time limit (3 to 8 s by default)."""
    limits = (time_limit if isinstance(time_limit, st.SearchStrategy)
              else st.just(float(time_limit)) if time_limit is not None
              else st.integers(3, 8).map(float))
    retries = st.just(retry_indefinite) if retry_indefinite is not None else st.booleans()
    return st.builds(
        SimWorkload,
        keys=st.integers(1, 4),
        rate=st.sampled_from([40.0, 20.0, 80.0]),
        concurrency=st.integers(2, 5),
        time_limit=limits,
        quiet=st.just(1.5),
        retry_indefinite=retries,
    )


@st.composite
def sim_tests(draw: st.DrawFn, nodes: int | st.SearchStrategy[int] = 3,
              bugs: Sequence[str] = (), read_modes: Sequence[str] | None = None,
              packages: Sequence[str] = PACKAGES, time_limit: float | None = None,
              max_faults: int = 8, name: str = "sim") -> SimTest:
    """A whole simulated test: cluster, workload, schedule and seed."""
    cluster = draw(cluster_configs(nodes, bugs, read_modes))
    workload = draw(workloads(time_limit))
    schedule = draw(schedules(cluster.node_ids, workload.time_limit, packages, max_faults))
    seed = draw(st.integers(0, 2**32 - 1))
    return SimTest(cluster=cluster, workload=workload, schedule=tuple(schedule), seed=seed,
                   name=name)
