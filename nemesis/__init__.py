"""nemesis: faults as data, and the executors that apply them.

* ``nemesis.api`` — the ``ClusterControl`` and ``Network`` protocols (and
  ``NodeAddress``) the executor drives; the harness implements them.
* ``nemesis.faults`` — the fault vocabulary, schedule validation
  (``validate_schedule``, ``ScheduleError``) and history names (``history_f``).
* ``nemesis.shapes`` — partition shapes as networkx graphs, turned into grudges.
* ``nemesis.schedule`` — ``generate(packages, nodes, time_limit, interval, rng)``,
  ``load(path, nodes)``, ``save(schedule, path)``.
* ``nemesis.executor`` — ``run_schedule(schedule, control, record, clock)`` and
  ``heal_all(control)``.
"""
