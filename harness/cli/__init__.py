"""The ``splitbrain`` command line: ``main`` dispatches, one module per group of subcommands.

``main`` (entry point, number and output-path checks), ``run`` (``run``),
``campaign`` (``campaign``), ``check`` (``check``), ``report`` (``report``,
``serve``), ``sim`` (``sim``, ``fuzz``, ``replay``) and ``display`` (the live
table). The CLI is the top layer: it imports the harness, the reports, the
checkers and the nemesis, and nothing imports it.
"""
