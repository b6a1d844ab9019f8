"""checker: linearizability, log-order agreement and Raft invariants."""
