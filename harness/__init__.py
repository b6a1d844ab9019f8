"""harness: Trio orchestration of real clusters, clients, runs, the simulator and the CLI.

The top layer of splitbrain: it drives raft_impl (and other databases), the
nemesis, the checkers and the reports; nothing below it imports it, and only
db/raft_impl.py and sim/ import raft_impl (docs/DESIGN.md §1 has the layers;
import-linter checks them).

Module map (one line per module; a package's ``__init__`` says more)::

    db/                 the systems under test, behind one DB/Client protocol
      base.py           DB and Client protocols, DBOptions, the --db registry
      options.py        which read modes and --net backends fit which database
      process.py        ProcessDB: start/kill/pause/resume local node processes
      node_client.py    NodeClient: one connection per node, rotation on refusal
      wire_client.py    WireClient: one msgpack-frame request at a time
      wire.py           WireNodeDB: nodes speaking raft_impl's client protocol
      raft_impl.py      --db raft_impl (the only adapter that imports raft_impl)
      etcd.py, http.py  --db etcd (v3 JSON gateway over h11)
      pysyncobj.py      --db pysyncobj; pysyncobj_node.py is its node program
      maelstrom.py      --db maelstrom (Maelstrom-protocol binaries, routed)
    run/                one real test run, and campaigns of runs
      run.py            RunConfig, run_test: plan, start, nemesis, check, report
      cluster.py        open_cluster: nodes up, leader polls, teardown
      workload.py       operation generators (register, list-append, rw-register)
      clients.py        ProcessPool sends operations; HistoryRecorder writes history.jsonl
      collect.py        Collector polls node state into observations.jsonl
      store.py          run directory names and atomic writes (store/TEST/STAMP/)
      coverage.py       coverage.json: what a run exercised
      campaign.py       many runs over a matrix, campaign.json
      display.py        the live terminal table of a run (rich)
    net/                link faults: proxy (frame relays), netns (root), router (Maelstrom)
    sim/                deterministic simulation of raft_impl cores (imports raft_impl)
    cli/                the splitbrain command: main.py (entry point), run.py, campaign.py,
                        check.py, report.py (report, serve), sim.py (sim, fuzz, replay)
    pytest/             the pytest plugin (plugin.py) and its fixtures (fixtures.py)

Where a history line goes (docs/DESIGN.md §4): written by run/clients.py
(HistoryRecorder → checker.history.HistoryWriter) or sim/cluster.py, read
by checker.history, checked by checker.runner, drawn by reports.render.
"""
