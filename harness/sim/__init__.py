"""Deterministic simulation of raft_impl: N sans-IO Raft cores in one process.

A simulated run replaces processes, sockets, disks and clocks by a
discrete-event loop (virtual time, one seeded RNG per concern), and writes the
same store run directory as a real run, checked by the same checkers. The
same :class:`SimTest` (cluster, workload, nemesis schedule, seed) always gives
the byte-identical ``history.jsonl``.

Public API::

    from harness.sim import SimTest, SimClusterConfig, SimWorkload, simulate
    result = simulate(SimTest(cluster=SimClusterConfig(bugs=("commit-old-term",)),
                              schedule=(...), seed=7), "store/sim/run1")
    result.valid, result.run_dir, result.results
"""

from harness.sim.config import SimClusterConfig, SimTest, SimWorkload
from harness.sim.run import SimResult, simulate

__all__ = ["SimClusterConfig", "SimResult", "SimTest", "SimWorkload", "simulate"]
