"""The ``splitbrain`` command line: ``main`` dispatches, one module per group of subcommands.

``main`` (entry point, shared errors and number checks), ``run`` (``run``),
``campaign`` (``campaign``), ``sim`` (``sim``, ``fuzz``, ``replay``) and
``display`` (the live table). ``check`` and ``report`` live in
``checker.cli`` and ``reports.cli``.
"""
