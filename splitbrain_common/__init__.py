"""The leaf every layer may import; it imports nothing from the project.

splitbrain's packages form layers that only point down (docs/DESIGN.md §1,
checked by import-linter, ``[tool.importlinter]`` in pyproject.toml):
``harness`` (runs, CLI) → ``reports`` → ``checker`` | ``nemesis`` →
``raft_impl`` → ``splitbrain_common``. What more than one layer needs and no
layer owns lives here:

- ``errors``   UserError: a mistake the user can fix, one line, exit 2
- ``exits``    the exit codes (0 valid, 1 invalid, 2 unknown) and how a verdict maps to one
- ``files``    the names of the files of a store run directory
- ``wire``     the frame codec (length-prefixed msgpack) every connection speaks
- ``ports``    free loopback ports outside the ephemeral range
- ``streams``  a child process's output as lines
"""
